"""Load generation: the events the benchmark offers to the systems under test.

Two shapes of load: a backlog produced before a system starts (for the drain throughput), and
events sent at a fixed rate while it runs (for the latency steps). Rate steps encode all their
events up front so that sending costs no Python beyond the producer call, and pace them in small
slices so the offered rate is steady. Each backlog or step uses its own generator seed; the seed
is in the event ids, which is how the output collector tells a step's outputs from any other.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from confluent_kafka import Producer

from streamscore.config import Settings
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.kafka_io import send_record
from streamscore.produce import produce as produce_events
from streamscore.serde import Codec

if TYPE_CHECKING:
    from streamscore.produce import ProduceStats

SLICE_S = 0.01  # pacing granularity of the load generator


def event_id_prefix(seed: int) -> str:
    """What every event id of the generator seeded with ``seed`` starts with."""
    return f"e{seed:x}-"  # as TransactionGenerator numbers its events


def produce_backlog(
    s: Settings, topic: str, count: int, users: int, seed: int, events_per_second: float
) -> ProduceStats:
    """Produce ``count`` events into ``topic`` as fast as possible, before the system starts.

    Their event times are spaced as at ``events_per_second`` and end about a second before now:
    the backlog looks like recent traffic, not like events from the future.
    """
    span_ms = int(count / events_per_second * 1000)
    return produce_events(
        s.with_overrides({"topic_events": topic}),
        count=count,
        duration_s=None,
        rate=0,
        generator=GeneratorConfig(
            users=users,
            seed=seed,
            events_per_second=events_per_second,
            start_ms=int(time.time() * 1000) - span_ms - 1000,
        ),
        labels=False,
        realtime=False,
    )


def encode_events(
    count: int, rate: float, users: int, seed: int, start_ms: int
) -> list[tuple[bytes, bytes]]:
    """Generate and Avro-encode ``count`` events up front, so sending them costs no Python."""
    generator = TransactionGenerator(
        GeneratorConfig(users=users, seed=seed, start_ms=start_ms, events_per_second=max(rate, 1.0))
    )
    codec = Codec("event")
    records = []
    for _ in range(count):
        event = next(generator).event
        records.append((str(event["user_id"]).encode(), codec.encode(event)))
    return records


def send_paced(
    producer: Producer, topic: str, records: list[tuple[bytes, bytes]], rate: float, warmup_s: float
) -> dict[str, float]:
    """Send at ``rate``/s: each ~10 ms slice sends what is due by then, then sleeps."""
    n = len(records)
    t0 = time.monotonic()
    wall0 = time.time()
    warm_at = t0 + warmup_s
    sent, sent_at_warmup, t_warm = 0, 0, t0 + warmup_s
    warm_seen = False
    while sent < n:
        now = time.monotonic()
        if not warm_seen and now >= warm_at:
            warm_seen, sent_at_warmup, t_warm = True, sent, now
        due = min(n, int((now - t0) * rate) + 1)
        while sent < due:
            key, value = records[sent]
            send_record(producer, topic, key, value)
            sent += 1
        next_slice = t0 + (math.floor((now - t0) / SLICE_S) + 1) * SLICE_S
        pause = next_slice - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    t_end = time.monotonic()
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} events were not delivered")
    measured_s = t_end - t_warm
    return {
        "sent": n,
        "send_seconds": t_end - t0,
        "wall_start": wall0,
        "wall_warm": wall0 + (t_warm - t0),
        "wall_end": wall0 + (t_end - t0),
        "input_rate": (n - sent_at_warmup) / measured_s if measured_s > 0 else float("nan"),
    }
