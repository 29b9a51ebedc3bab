"""Sends synthetic (or a user's own) transactions to Kafka at a target rate.

Events are paced by their own event time: each is sent when the wall clock reaches it, so event
time tracks real time and the generator's bursts keep their shape. ``rate=0`` sends as fast as
possible (a backlog, for benchmarks). Optional noise the job must cope with: out-of-order events,
late events, malformed records. Drift (``GeneratorConfig.drifts``, ``--drift KIND@SECONDS``) is
applied by the generator at event-time offsets from the first event, so it lands at the same
point of the stream in paced and backlog runs.

**Labels** follow each valid event on the labels topic after a delay drawn from a seeded
log-normal distribution: legitimate confirmations have median ``label_delay_ms`` (default 30 s)
and shape ``label_delay_sigma`` (default 0.6: half of them within 20-45 s, 95 % within
9-97 s); fraud labels are chargebacks, slower by ``FRAUD_LABEL_DELAY_FACTOR`` (median 4 x 30 s
= 2 min, same sigma). A label's ``label_time`` is its event's time plus the delay. In a paced
run it is sent once the wall clock has advanced by the delay since its event was sent (the two
clocks agree). In a backlog (``rate=0``) it is sent once the stream's event time has passed its
``label_time``: the labels topic is then in label-time order, interleaved with the events as a
topic written live would be (sending by the wall clock there ordered the labels by their delay,
a label of the backlog's last event before one of its first). Labels still pending when the run
ends are sent then, in due order. The job treats labels later than 10 minutes after their
event as expired: with the defaults that is 3e-7 of legitimate labels and 0.37 % of fraud
labels, about 0.004 % of all labels at 1 % fraud
(``LabelDelay.fraction_beyond``; measured on 1,000,000 draws in ``tests/unit``).
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from streamscore.config import Settings
from streamscore.errors import KafkaUnavailable
from streamscore.eventlog import LabelledEvent, read_jsonl
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.kafka_io import new_producer, partitions_of, send_record
from streamscore.serde import Codec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NoiseConfig:
    out_of_order_fraction: float = 0.0
    out_of_order_max_ms: int = 3_000
    late_fraction: float = 0.0
    late_by_ms: int = 600_000
    malformed_fraction: float = 0.0
    seed: int = 1


FRAUD_LABEL_DELAY_FACTOR = 4.0  # chargebacks take longer than confirmations


@dataclass(frozen=True)
class LabelDelay:
    """How long after its event a label is known: log-normal, median ``median_ms`` for
    legitimate events and ``fraud_factor`` times that for fraud, shape ``sigma`` for both."""

    median_ms: float = 30_000.0
    sigma: float = 0.6
    fraud_factor: float = FRAUD_LABEL_DELAY_FACTOR

    def median_for(self, is_fraud: bool) -> float:
        return self.median_ms * (self.fraud_factor if is_fraud else 1.0)

    def sample_ms(self, rng: random.Random, is_fraud: bool) -> int:
        median = self.median_for(is_fraud)
        if median <= 0:
            return 0
        return int(median * math.exp(rng.gauss(0.0, self.sigma)))

    def fraction_beyond(self, limit_ms: float, is_fraud: bool) -> float:
        """The share of labels whose delay exceeds ``limit_ms`` (the log-normal's tail)."""
        median = self.median_for(is_fraud)
        if median <= 0 or self.sigma <= 0:
            return float(median > limit_ms)
        return 0.5 * math.erfc(math.log(limit_ms / median) / (self.sigma * math.sqrt(2.0)))


def label_delay_rng(seed: int) -> random.Random:
    """The label delays' own seeded stream, so adding them leaves the noise draws unchanged."""
    return random.Random(f"label-delay:{seed}")


@dataclass
class ProduceStats:
    events: int = 0
    out_of_order: int = 0
    late: int = 0
    malformed: int = 0
    labels: int = 0
    # Of ``labels``: those not due by the last event, sent after it. In a backlog they are the
    # labels whose label time is past the last event's time: a job reads them after its last
    # event, so their work comes after its last prediction.
    labels_after_events: int = 0
    seconds: float = 0.0


MALFORMED_KINDS = ("garbage", "truncated", "negative_amount", "bad_currency", "empty_user")


def malform(codec: Codec, event: dict[str, Any], kind: str, rng: random.Random) -> bytes:
    """A record the job must reject, of a known kind (used by tests to predict the reason)."""
    if kind == "garbage":
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
    if kind == "truncated":
        return codec.encode(event)[: rng.randint(1, 8)]
    broken = dict(event)
    if kind == "negative_amount":
        broken["amount"] = -abs(event["amount"]) - 1.0
    elif kind == "bad_currency":
        broken["currency"] = "euro"
    elif kind == "empty_user":
        broken["user_id"] = ""
    return codec.encode(broken)


def _report(stats: ProduceStats, started: float) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    log.info(
        "sent %d events (%.0f/s), %d labels, %d malformed, %d late, %d out of order",
        stats.events,
        stats.events / elapsed,
        stats.labels,
        stats.malformed,
        stats.late,
        stats.out_of_order,
    )


def produce(
    settings: Settings,
    *,
    count: int | None,
    duration_s: float | None,
    rate: float,
    generator: GeneratorConfig | None = None,
    noise: NoiseConfig = NoiseConfig(),
    labels: bool = True,
    label_delay_ms: int = 30_000,
    from_file: Path | None = None,
    realtime: bool = True,
    label_delay_sigma: float = 0.6,
) -> ProduceStats:
    """Send events until ``count`` or ``duration_s`` is reached (whichever first).

    Each label is delayed as ``LabelDelay(label_delay_ms, label_delay_sigma)`` draws it."""
    events_codec, labels_codec = Codec("event"), Codec("label")
    partitions_of(settings, settings.topic_events)
    if labels:
        partitions_of(settings, settings.topic_labels)
    producer = new_producer(settings)
    rng = random.Random(noise.seed)
    delays, delay_rng = LabelDelay(label_delay_ms, label_delay_sigma), label_delay_rng(noise.seed)
    now_ms = int(time.time() * 1000)
    if from_file is not None:
        source: Iterator[LabelledEvent] = read_jsonl(from_file)
    else:
        config = generator or GeneratorConfig(events_per_second=max(rate, 1.0))
        start_ms = now_ms
        if rate <= 0 and count is not None:
            # A backlog: its event times end about now instead of running ahead of the clock.
            start_ms = now_ms - int(count / config.events_per_second * 1000)
        if realtime:
            config = replace(config, start_ms=start_ms)
        for drift in config.drifts:
            log.info(
                "%s drift from %g s of event time after the first event", drift.kind, drift.at_s
            )
        source = ((t.event, t.is_fraud) for t in TransactionGenerator(config))
    # heap: (due, seq, key, value, label_time); due is wall-clock ms in a paced run, event
    # time in a backlog (see the module's docstring)
    pending_labels: list[tuple[int, int, bytes, bytes, int]] = []
    backlog = rate <= 0
    stream_time = -(2**62)  # the newest event time sent
    stats = ProduceStats()
    started = time.monotonic()
    first_event_ms: int | None = None
    last_report = started
    interval = 1.0 / rate if rate > 0 else 0.0
    for event, is_fraud in source:
        if count is not None and stats.events >= count:
            break
        elapsed = time.monotonic() - started
        if duration_s is not None and elapsed >= duration_s:
            break
        if rate > 0:
            if from_file is None and realtime:
                first_event_ms = first_event_ms or event["event_time"]
                due = (event["event_time"] - first_event_ms) / 1000.0
            else:
                due = stats.events * interval
            if due > elapsed:
                time.sleep(due - elapsed)
        key = event["user_id"].encode()
        roll = rng.random()
        if roll < noise.malformed_fraction:
            value = malform(events_codec, event, rng.choice(MALFORMED_KINDS), rng)
            stats.malformed += 1
            is_fraud = None
        else:
            if roll < noise.malformed_fraction + noise.late_fraction:
                event = {**event, "event_time": event["event_time"] - noise.late_by_ms}
                stats.late += 1
            elif (
                roll < noise.malformed_fraction + noise.late_fraction + noise.out_of_order_fraction
            ):
                event = {
                    **event,
                    "event_time": event["event_time"] - rng.randint(1, noise.out_of_order_max_ms),
                }
                stats.out_of_order += 1
            value = events_codec.encode(event)
        # The contract for the events topic: key = user_id, timestamp = event_time (the job
        # computes its watermark from the timestamps). A record stamped ahead of the clock would
        # drag the watermark forward: it gets the send time, and the job refuses it.
        send_record(
            producer,
            settings.topic_events,
            key,
            value,
            min(event["event_time"], int(time.time() * 1000)),
        )
        stats.events += 1
        if labels and is_fraud is not None:
            delay = delays.sample_ms(delay_rng, bool(is_fraud))
            label = {
                "event_id": event["event_id"],
                "user_id": event["user_id"],
                "is_fraud": bool(is_fraud),
                "label_time": event["event_time"] + delay,
            }
            due = label["label_time"] if backlog else int(time.time() * 1000) + delay
            heapq.heappush(
                pending_labels,
                (due, stats.events, key, labels_codec.encode(label), label["label_time"]),
            )
        stream_time = max(stream_time, event["event_time"])
        stats.labels += _send_due_labels(
            producer,
            settings.topic_labels,
            pending_labels,
            stream_time if backlog else int(time.time() * 1000),
        )
        if time.monotonic() - last_report >= 5.0:
            last_report = time.monotonic()
            _report(stats, started)
    # Labels not yet due are sent now rather than lost when the producer stops.
    stats.labels_after_events = _send_due_labels(
        producer, settings.topic_labels, pending_labels, None
    )
    stats.labels += stats.labels_after_events
    remaining = producer.flush(30)
    if remaining:
        raise KafkaUnavailable(f"{remaining} records were not delivered to Kafka")
    stats.seconds = time.monotonic() - started
    _report(stats, started)
    return stats


def _send_due_labels(
    producer: Producer,
    topic: str,
    pending: list[tuple[int, int, bytes, bytes, int]],
    now_ms: int | None,
) -> int:
    """Send the labels due by ``now_ms`` (all of them with ``None``), earliest first, each
    stamped with its ``label_time`` (never ahead of the clock). ``now_ms`` is on the clock the
    labels were queued by: the wall clock's, or in a backlog the stream's event time."""
    sent = 0
    while pending and (now_ms is None or pending[0][0] <= now_ms):
        _, _, key, value, label_time = heapq.heappop(pending)
        send_record(producer, topic, key, value, min(label_time, int(time.time() * 1000)))
        sent += 1
    return sent
