"""Load generation: the events the benchmark offers to the systems under test.

Two shapes of load: a backlog produced before a system starts (for the drain throughput), and
events sent at a fixed rate while it runs (for the latency steps). Rate steps encode all their
events up front so that sending costs no Python beyond the producer call, and pace them in small
slices so the offered rate is steady. Each backlog or step uses its own generator seed; the seed
is in the event ids, which is how the output collector tells a step's outputs from any other.

Labels, as production sends them, unless the bench runs with ``--no-labels``: the backlog gets
one per event from ``streamscore.produce.produce`` (its own log-normal delays; labels not yet
due when the events are all sent follow them at once). A rate step sends each event's label a
fixed delay after the event, paced like the events; its ``label_time`` is the wall clock when it
is sent. Labels are encoded up front too, all but ``label_time`` (the schema's last field), whose
bytes are appended at send time.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from confluent_kafka import Producer

from streamscore.config import Settings
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.job.avro_encoders import avro_long
from streamscore.kafka_io import send_record
from streamscore.produce import FRAUD_LABEL_DELAY_FACTOR
from streamscore.produce import produce as produce_events
from streamscore.resources import schema
from streamscore.serde import Codec

log = logging.getLogger("bench")

if TYPE_CHECKING:
    from streamscore.produce import ProduceStats

SLICE_S = 0.01  # pacing granularity of the load generator


def event_id_prefix(seed: int) -> str:
    """What every event id of the generator seeded with ``seed`` starts with."""
    return f"e{seed:x}-"  # as TransactionGenerator numbers its events


def backlog_label_delays() -> dict[str, Any]:
    """The label delays of the backlog: ``produce``'s defaults, which the bench does not change
    (recorded in the report)."""
    params = inspect.signature(produce_events).parameters
    return {
        "median_ms": params["label_delay_ms"].default,
        "sigma": params["label_delay_sigma"].default,
        "fraud_factor": FRAUD_LABEL_DELAY_FACTOR,
    }


def produce_backlog(
    s: Settings,
    topic: str,
    count: int,
    users: int,
    seed: int,
    events_per_second: float,
    labels_topic: str | None = None,
) -> ProduceStats:
    """Produce ``count`` events into ``topic`` as fast as possible, before the system starts;
    with ``labels_topic``, a label for every event into that topic too.

    Their event times are spaced as at ``events_per_second`` and end about a second before now:
    the backlog looks like recent traffic, not like events from the future. The labels' delays
    (``label_time`` − event time) are ``produce``'s; as the events go out faster than the wall
    clock, most labels are not due yet when the last event is sent, and follow in due order.
    """
    span_ms = int(count / events_per_second * 1000)
    overrides = {"topic_events": topic}
    if labels_topic is not None:
        overrides["topic_labels"] = labels_topic
    return produce_events(
        s.with_overrides(overrides),
        count=count,
        duration_s=None,
        rate=0,
        generator=GeneratorConfig(
            users=users,
            seed=seed,
            events_per_second=events_per_second,
            start_ms=int(time.time() * 1000) - span_ms - 1000,
        ),
        labels=labels_topic is not None,
        realtime=False,
    )


def label_head(codec: Codec, event_id: str, user_id: str, is_fraud: bool) -> bytes:
    """A label encoded without its ``label_time``: ``head + avro_long(label_time)`` is the label
    as ``codec.encode`` writes it (``label_time`` is the schema's last field, and a zero long is
    the one byte 0)."""
    encoded = codec.encode(
        {"event_id": event_id, "user_id": user_id, "is_fraud": is_fraud, "label_time": 0}
    )
    return encoded[:-1]


def _check_label_head(codec: Codec, head: bytes, expected: dict[str, Any]) -> None:
    """Fail early if ``label_head`` no longer matches the label schema."""
    if schema("label")["fields"][-1]["name"] != "label_time":
        raise RuntimeError("label_time is no longer the label schema's last field")
    now_ms = int(time.time() * 1000)
    if codec.decode(head + avro_long(now_ms)) != {**expected, "label_time": now_ms}:
        raise RuntimeError("a pre-encoded label does not decode to itself")


def encode_events(
    count: int, rate: float, users: int, seed: int, start_ms: int, labels: bool = False
) -> tuple[list[tuple[bytes, bytes, int]], list[tuple[bytes, bytes]]]:
    """Generate and Avro-encode ``count`` events up front, so sending them costs no Python;
    with ``labels``, also each event's label without its ``label_time`` (``label_head``).

    Returns (events, labels): events as (key, value, event time), labels as (key, head); labels
    is empty without ``labels``."""
    generator = TransactionGenerator(
        GeneratorConfig(users=users, seed=seed, start_ms=start_ms, events_per_second=max(rate, 1.0))
    )
    codec, label_codec = Codec("event"), Codec("label")
    records, label_heads = [], []
    for _ in range(count):
        transaction = next(generator)
        event = transaction.event
        key = str(event["user_id"]).encode()
        records.append((key, codec.encode(event), int(event["event_time"])))
        if labels:
            ids = (str(event["event_id"]), str(event["user_id"]), bool(transaction.is_fraud))
            label_heads.append((key, label_head(label_codec, *ids)))
            if len(label_heads) == 1:
                fields = dict(zip(("event_id", "user_id", "is_fraud"), ids, strict=True))
                _check_label_head(label_codec, label_heads[0][1], fields)
    return records, label_heads


def send_paced(
    producer: Producer,
    topic: str,
    records: list[tuple[bytes, bytes, int]],
    rate: float,
    warmup_s: float,
    labels_topic: str | None = None,
    labels: list[tuple[bytes, bytes]] | None = None,
    label_delay_s: float = 0.0,
) -> dict[str, float]:
    """Send each event when the wall clock reaches its event time, stamped with that time (the
    contract for the events topic: timestamp = event time); each ~10 ms slice sends what is due
    by then, then sleeps. The events' times were generated at ``rate``/s from a start ahead of
    the clock (see ``Bench.step``), so the load is a Poisson stream at ``rate``/s.

    ``labels`` (from ``encode_events``, one per event and in the same order) go to
    ``labels_topic``, each ``label_delay_s`` after its event's time, after the slice's events;
    their ``label_time`` (and timestamp) is the slice's wall clock in ms. The load
    (``wall_end``, ``input_rate``) ends with the last event; the labels still due after it are
    sent after that, before the producer is flushed."""
    labels = labels or []
    if labels and not labels_topic:
        raise ValueError("labels need a labels_topic")
    label_topic = labels_topic or ""
    label_delay_ms = int(label_delay_s * 1000)
    n, n_labels = len(records), len(labels)
    if n:
        ahead_ms = records[0][2] - time.time() * 1000
        if ahead_ms < 0:
            log.warning("the load starts %.0f ms behind its first event time", -ahead_ms)
        else:
            time.sleep(ahead_ms / 1000)
    t0 = time.monotonic()
    wall0 = time.time()
    warm_at = t0 + warmup_s
    sent, sent_at_warmup, t_warm = 0, 0, t0 + warmup_s
    labels_sent = 0
    warm_seen = False
    t_end: float | None = None
    while sent < n or labels_sent < n_labels:
        now = time.monotonic()
        now_ms = int(time.time() * 1000)
        if not warm_seen and now >= warm_at:
            warm_seen, sent_at_warmup, t_warm = True, sent, now
        while sent < n and records[sent][2] <= now_ms:
            key, value, event_time = records[sent]
            send_record(producer, topic, key, value, event_time)
            sent += 1
        if labels_sent < n_labels and labels_sent < sent:
            label_time = None
            while (
                labels_sent < min(n_labels, sent)
                and records[labels_sent][2] + label_delay_ms <= now_ms
            ):
                if label_time is None:
                    label_time = avro_long(now_ms)
                key, head = labels[labels_sent]
                send_record(producer, label_topic, key, head + label_time, now_ms)
                labels_sent += 1
        next_slice = t0 + (math.floor((now - t0) / SLICE_S) + 1) * SLICE_S
        pause = next_slice - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if t_end is None and sent >= n:
            t_end = time.monotonic()  # the events' load ends here; labels may still follow
    t_labels_end = time.monotonic()
    if t_end is None:  # no events at all
        t_end = t_labels_end
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} events or labels were not delivered")
    measured_s = t_end - t_warm
    return {
        "sent": n,
        "labels_sent": labels_sent,
        "send_seconds": t_end - t0,
        "wall_start": wall0,
        "wall_warm": wall0 + (t_warm - t0),
        "wall_end": wall0 + (t_end - t0),
        "wall_labels_end": wall0 + (t_labels_end - t0),
        "input_rate": (n - sent_at_warmup) / measured_s if measured_s > 0 else float("nan"),
    }
