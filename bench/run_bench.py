#!/usr/bin/env python
"""Benchmark of a running streamscore stack (see bench/README.md).

Measures, for the scoring job in exactly-once and at-least-once mode and for a plain Python
pass-through (consumer → producer copying raw bytes, the baseline):

* drain throughput: N events are produced into a fresh input topic first, then the system is
  started from the earliest offset; throughput = outputs between the first and the last output a
  consumer sees (read_committed for exactly-once) / the time between them;
* latency at fixed offered rates: events are sent at each rate for a fixed time; latency = wall
  clock when a consumer on the same host receives the output − the input's Kafka timestamp
  (producer send time; predictions carry it as ``ingest_time``, the pass-through preserves it).

Isolation: every system gets its own fresh topics (``bench-<run>-<system>-…``), deleted at the
end; each step's events come from a distinct generator seed (event ids ``e<seed hex>-…``) and the
output consumer starts at the end offsets noted just before the step and keeps only that prefix.
The stack's ports and paths come from ``Settings()`` (STREAMSCORE_* variables, ``--set``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamscore.config import PROJECT_ROOT, DeliveryGuarantee, Settings, parse_overrides
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.produce import produce as produce_events
from streamscore.produce import send_record
from streamscore.serde import Codec

# What the output collector reports for every run, copied into each result.
COLLECTOR_FIGURES = ("duplicates", "foreign", "undecodable", "errors", "degraded", "model_versions")

log = logging.getLogger("bench")
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PASSTHROUGH = "pass-through"
PASSTHROUGH_PARTITIONS = 4
SLICE_S = 0.01  # pacing granularity of the load generator

# One producer configuration for the load generator and the pass-through: the one
# streamscore.produce uses (idempotent, acks=all, linger 5 ms, as the job's Kafka sink).
PRODUCER_CONFIG = {
    "linger.ms": 5,
    "enable.idempotence": True,
    "acks": "all",
    "queue.buffering.max.messages": 1_000_000,
}


# --- child processes (spawned: top-level functions only) ---------------------------------------
def collector_main(cfg: dict[str, Any], count: Any, ready: Any, stop: Any, out: Any) -> None:
    """Read the output topic from the given offsets; note receive time and ingest time of every
    output whose event id has the step's prefix. Sends the arrays through ``out`` when stopped."""
    consumer = Consumer(
        {
            "bootstrap.servers": cfg["bootstrap"],
            "group.id": f"bench-collector-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            "isolation.level": "read_committed" if cfg["read_committed"] else "read_uncommitted",
        }
    )
    codec = Codec(cfg["record_type"])
    prediction = cfg["record_type"] == "prediction"
    prefix = cfg["prefix"]
    recv, ingest = array("d"), array("q")
    seen: set[str] = set()
    duplicates = foreign = undecodable = errors = 0
    degraded: Counter[str] = Counter()
    models: Counter[str] = Counter()
    consumer.assign([TopicPartition(cfg["topic"], p, o) for p, o in cfg["start"].items()])
    first = True
    try:
        while not stop.is_set():
            msg = consumer.poll(0.1)
            now = time.time()
            if first:
                ready.set()
                first = False
            if msg is None:
                continue
            # Everything already fetched, without waiting: the batch shares one receive time.
            for m in [msg, *consumer.consume(num_messages=10_000, timeout=0)]:
                if m.error():
                    errors += 1
                    continue
                try:
                    record = codec.decode(m.value())
                except Exception:
                    undecodable += 1
                    continue
                event_id = record["event_id"]
                if not event_id.startswith(prefix):
                    foreign += 1
                    continue
                if event_id in seen:
                    duplicates += 1
                    continue
                seen.add(event_id)
                recv.append(now)
                if prediction:
                    ingest.append(record["ingest_time"])
                    models[record["model_version"]] += 1
                    for what in record["degraded"]:
                        degraded[what] += 1
                else:
                    ingest.append(m.timestamp()[1])
            count.value = len(recv)
    finally:
        consumer.close()
        out.put(
            {
                "recv": np.frombuffer(recv, dtype=np.float64).copy(),
                "ingest_ms": np.frombuffer(ingest, dtype=np.int64).copy(),
                "duplicates": duplicates,
                "foreign": foreign,
                "undecodable": undecodable,
                "errors": errors,
                "degraded": dict(degraded),
                "model_versions": dict(models),
            }
        )


def passthrough_main(
    bootstrap: str, source: str, sink: str, batch: int, ready: Any, stop: Any, copied: Any
) -> None:
    """The baseline: copy raw bytes (key, value, timestamp) from ``source`` to ``sink``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-passthrough-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
    partitions = consumer.list_topics(source, timeout=10).topics[source].partitions
    consumer.assign([TopicPartition(source, p, OFFSET_BEGINNING) for p in partitions])
    n = 0
    first = True
    try:
        while not stop.is_set():
            msg = consumer.poll(0.1)
            if first:
                ready.set()
                first = False
            if msg is None:
                producer.poll(0)
                continue
            for m in [msg, *consumer.consume(num_messages=batch - 1, timeout=0)]:
                if m.error():
                    continue
                while True:
                    try:
                        producer.produce(
                            sink, value=m.value(), key=m.key(), timestamp=m.timestamp()[1]
                        )
                        break
                    except BufferError:
                        producer.poll(0.01)
                n += 1
            producer.poll(0)
            copied.value = n
    finally:
        producer.flush(30)
        consumer.close()


# --- Kafka helpers -----------------------------------------------------------------------------
class Kafka:
    def __init__(self, s: Settings) -> None:
        self.bootstrap = s.kafka_bootstrap
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        self.meta = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": f"bench-meta-{uuid.uuid4().hex}"}
        )
        self.created: list[str] = []

    def create(self, topic: str, partitions: int, config: dict[str, str] | None = None) -> None:
        for _, future in self.admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
            request_timeout=15,
        ).items():
            future.result()
        self.created.append(topic)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # until the metadata shows every partition
            t = self.meta.list_topics(topic, timeout=5).topics.get(topic)
            if t is not None and t.error is None and len(t.partitions) == partitions:
                return
            time.sleep(0.2)
        raise RuntimeError(f"topic {topic} did not appear")

    def end_offsets(self, topic: str) -> dict[int, int]:
        partitions = self.meta.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: self.meta.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }

    def size(self, topic: str) -> int:
        partitions = self.meta.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            hi - lo
            for lo, hi in (
                self.meta.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in partitions
            )
        )

    def delete_created(self) -> None:
        if not self.created:
            return
        for topic, future in self.admin.delete_topics(self.created, operation_timeout=30).items():
            try:
                future.result()
            except Exception as exc:  # best effort
                log.warning("could not delete topic %s: %s", topic, exc)
        self.created = []

    def close(self) -> None:
        self.meta.close()


class Collector:
    """The output consumer, in its own process so the load generator cannot delay it."""

    def __init__(
        self,
        ctx: Any,
        bootstrap: str,
        topic: str,
        start: dict[int, int],
        record_type: str,
        read_committed: bool,
        prefix: str,
    ) -> None:
        self.count = ctx.Value("q", 0, lock=False)
        self._ready, self._stop, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        cfg = {
            "bootstrap": bootstrap,
            "topic": topic,
            "start": start,
            "prefix": prefix,
            "record_type": record_type,
            "read_committed": read_committed,
        }
        self._proc = ctx.Process(
            target=collector_main,
            name="bench-collector",
            daemon=True,
            args=(cfg, self.count, self._ready, self._stop, self._out),
        )
        self._proc.start()
        if not self._ready.wait(60):
            self.close()
            raise RuntimeError("the output consumer did not start")

    def wait(
        self,
        expected: int,
        *,
        deadline_s: float,
        idle_s: float,
        first_s: float | None = None,
        what: str = "",
    ) -> bool:
        """Until ``expected`` outputs arrived; False on a timeout or a stall."""
        start = last_change = last_report = time.monotonic()
        last = -1
        while True:
            n = self.count.value
            now = time.monotonic()
            if n >= expected:
                return True
            if n != last:
                last, last_change = n, now
            if now - start > deadline_s:
                log.warning(
                    "%s: %d of %d outputs after %.0f s; giving up", what, n, expected, deadline_s
                )
                return False
            limit = idle_s if n > 0 else (first_s or idle_s)
            if now - last_change > limit:
                log.warning(
                    "%s: no new output for %.0f s (%d of %d); giving up", what, limit, n, expected
                )
                return False
            if now - last_report >= 10:
                last_report = now
                log.info("%s: %d of %d outputs", what, n, expected)
            if not self._proc.is_alive():
                raise RuntimeError("the output consumer died")
            time.sleep(0.1)

    def result(self) -> dict[str, Any]:
        self._stop.set()
        try:
            data = self._out.get(timeout=60)
        finally:
            self.close()
        return data

    def close(self) -> None:
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)


# --- systems under test ------------------------------------------------------------------------
@dataclass
class System:
    name: str
    input_topic: str
    output_topic: str
    record_type: str  # what the output topic carries
    read_committed: bool
    info: dict[str, Any] = field(default_factory=dict)

    def setup(self, kafka: Kafka) -> None:
        """Create the system's topics."""

    def start(self) -> None:
        """Start consuming its input topic from the earliest offset."""

    def check(self) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        """Stop; a no-op when not running."""


class PassthroughSystem(System):
    def __init__(self, s: Settings, run: str, ctx: Any, batch: int) -> None:
        super().__init__(
            PASSTHROUGH,
            f"bench-{run}-pt-events",
            f"bench-{run}-passthrough",
            "event",
            read_committed=False,
        )
        self._s, self._ctx, self._batch = s, ctx, batch
        self._proc: Any = None
        self.info = {
            "batch": batch,
            "producer": PRODUCER_CONFIG,
            "partitions": PASSTHROUGH_PARTITIONS,
            "input_topic": self.input_topic,
            "output_topic": self.output_topic,
        }

    def setup(self, kafka: Kafka) -> None:
        kafka.create(self.input_topic, self._s.events_partitions)
        kafka.create(self.output_topic, PASSTHROUGH_PARTITIONS)

    def start(self) -> None:
        self._ready, self._stop = self._ctx.Event(), self._ctx.Event()
        self._copied = self._ctx.Value("q", 0, lock=False)
        self._proc = self._ctx.Process(
            target=passthrough_main,
            name="bench-passthrough",
            daemon=True,
            args=(
                self._s.kafka_bootstrap,
                self.input_topic,
                self.output_topic,
                self._batch,
                self._ready,
                self._stop,
                self._copied,
            ),
        )
        self._proc.start()
        if not self._ready.wait(60):
            raise RuntimeError("the pass-through did not start")

    def check(self) -> dict[str, Any]:
        alive = self._proc is not None and self._proc.is_alive()
        return {"running": alive, "copied": self._copied.value if self._proc else 0}

    def stop(self) -> None:
        if self._proc is None:
            return
        self._stop.set()
        self._proc.join(40)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._proc = None


class FlinkSystem(System):
    def __init__(
        self, s: Settings, run: str, mode: DeliveryGuarantee, user_overrides: list[str]
    ) -> None:
        tag = "eo" if mode is DeliveryGuarantee.EXACTLY_ONCE else "alo"
        prefix = f"bench-{run}-{tag}"
        super().__init__(
            mode.value,
            f"{prefix}-events",
            f"{prefix}-predictions",
            "prediction",
            read_committed=mode is DeliveryGuarantee.EXACTLY_ONCE,
        )
        self.dead_letters = f"{prefix}-dead-letters"
        # The user's --set first, the bench's own after them (later wins).
        self.overrides = [
            *user_overrides,
            f"delivery_guarantee={mode.value}",
            f"job_name={prefix}",
            f"consumer_group={prefix}-{uuid.uuid4().hex[:8]}",
            "start_from=earliest",
            f"topic_events={self.input_topic}",
            f"topic_predictions={self.output_topic}",
            f"topic_dead_letters={self.dead_letters}",
        ]
        self.settings = s.with_overrides(parse_overrides(self.overrides))
        self.job_id: str | None = None
        self._kafka: Kafka | None = None
        self.info = {
            "overrides": self.overrides,
            "checkpoint_interval_ms": self.settings.checkpoint_interval_ms,
            "parallelism": self.settings.parallelism,
            "python_execution_mode": self.settings.python_execution_mode,
        }

    def setup(self, kafka: Kafka) -> None:
        s = self.settings
        self._kafka = kafka
        kafka.create(self.input_topic, s.events_partitions)
        # Like the stack's own output topics (stack/kafka.py topic_config).
        append_time = {"message.timestamp.type": "LogAppendTime"}
        kafka.create(self.output_topic, s.predictions_partitions, append_time)
        kafka.create(self.dead_letters, s.dead_letters_partitions, append_time)

    def start(self) -> None:
        from streamscore.jobcontrol import submit

        started = time.monotonic()
        self.job_id = submit(self.settings, self.overrides)
        self.info["job_id"] = self.job_id
        self.info["submit_seconds"] = round(time.monotonic() - started, 1)
        log.info(
            "%s: job %s RUNNING after %.0f s", self.name, self.job_id, self.info["submit_seconds"]
        )

    def check(self) -> dict[str, Any]:
        from streamscore.jobcontrol import checkpoints
        from streamscore.stack import flink

        if self.job_id is None:
            return {"running": False}
        job = flink.rest(self.settings, f"/jobs/{self.job_id}")
        exceptions = flink.rest(self.settings, f"/jobs/{self.job_id}/exceptions")
        counts = checkpoints(self.settings, self.job_id).get("counts", {})
        return {
            "running": job["state"] == "RUNNING",
            "state": job["state"],
            "exceptions": len(exceptions.get("exceptionHistory", {}).get("entries", [])),
            "checkpoints": counts,
            "dead_letters": self._kafka.size(self.dead_letters) if self._kafka else None,
        }

    def stop(self) -> None:
        from streamscore.jobcontrol import cancel

        if self.job_id is not None:
            try:
                self.info["final"] = self.check()
            except Exception as exc:
                log.warning("%s: could not read the job's state: %s", self.name, exc)
            cancel(self.settings, self.job_id)
            log.info("%s: job %s cancelled", self.name, self.job_id)
            self.job_id = None


# --- load --------------------------------------------------------------------------------------
def event_id_prefix(seed: int) -> str:
    return f"e{seed:x}-"  # as TransactionGenerator numbers its events


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


# --- measurements ------------------------------------------------------------------------------
def percentiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(values.mean()),
        "max": float(values.max()),
    }


def window_rate(times: np.ndarray, start: float, end: float, min_span_s: float) -> float | None:
    """Outputs per second received in [start, end], measured between the first and the last
    arrival inside it, so bursty output (exactly-once commits once per checkpoint) is counted
    whole bursts over whole intervals; None if those arrivals are under ``min_span_s`` apart."""
    inside = np.sort(times[(times >= start) & (times <= end)])
    if inside.size < 2 or inside[-1] - inside[0] < min_span_s:
        return None
    return float((inside > inside[0]).sum() / (inside[-1] - inside[0]))


class Bench:
    def __init__(self, args: argparse.Namespace, s: Settings) -> None:
        self.args, self.s = args, s
        self.ctx = mp.get_context("spawn")
        self.kafka = Kafka(s)
        self.producer = Producer({"bootstrap.servers": s.kafka_bootstrap, **PRODUCER_CONFIG})
        self.seed = args.seed
        self.notes: list[str] = []

    def next_seed(self) -> int:
        self.seed += 1
        return self.seed

    def collector(self, system: System, prefix: str) -> Collector:
        return Collector(
            self.ctx,
            self.s.kafka_bootstrap,
            system.output_topic,
            self.kafka.end_offsets(system.output_topic),
            system.record_type,
            system.read_committed,
            prefix,
        )

    def _checkpoint_s(self, system: System) -> float:
        if isinstance(system, FlinkSystem):
            return system.settings.checkpoint_interval_ms / 1000
        return 0.0

    def drain(self, system: System) -> dict[str, Any]:
        """Produce the backlog, start the system, time its outputs first to last."""
        n, seed = self.args.events, self.next_seed()
        event_rate = max(self.args.rates or [1000.0])
        span_ms = int(n / event_rate * 1000)
        log.info("%s: producing a backlog of %d events into %s", system.name, n, system.input_topic)
        stats = produce_events(
            self.s.with_overrides({"topic_events": system.input_topic}),
            count=n,
            duration_s=None,
            rate=0,
            generator=GeneratorConfig(
                users=self.args.users,
                seed=seed,
                events_per_second=event_rate,
                start_ms=int(time.time() * 1000) - span_ms - 1000,
            ),
            labels=False,
            realtime=False,
        )
        collector = self.collector(system, event_id_prefix(seed))
        try:
            started = time.time()
            system.start()
            idle = max(30.0, 3 * self._checkpoint_s(system))
            complete = collector.wait(
                n,
                deadline_s=self.args.drain_timeout,
                idle_s=idle,
                first_s=max(120.0, idle),
                what=f"{system.name} drain",
            )
        finally:
            data = collector.result()
        recv = data["recv"]
        result: dict[str, Any] = {
            "events": n,
            "seed": seed,
            "backlog_produce_seconds": round(stats.seconds, 2),
            "received": int(recv.size),
            "complete": complete,
            **{k: data[k] for k in COLLECTOR_FIGURES},
        }
        if recv.size >= 2:
            span = float(recv.max() - recv.min())
            result.update(
                {
                    "first_to_last_seconds": round(span, 3),
                    "throughput": (recv.size - 1) / span if span > 0 else None,
                    "start_to_last_seconds": round(float(recv.max()) - started, 3),
                    "bursts": int(np.unique(np.round(recv, 2)).size),
                }
            )
            # Exactly-once outputs appear once per checkpoint: the span must cover several.
            minimum = max(2.0, 3 * self._checkpoint_s(system) if system.read_committed else 0)
            if span < minimum:
                note = (
                    f"{system.name} drain: first→last output only {span:.1f} s apart "
                    f"(< {minimum:g} s): too short to be a throughput figure, use more "
                    "--events"
                )
                result["warning"] = note
                self.notes.append(note)
        else:
            result["throughput"] = None
        result["system"] = system.check()
        return result

    def step(self, system: System, rate: float) -> dict[str, Any]:
        """Offer ``rate`` events/s for --seconds; latency of the post-warm-up events."""
        seconds, warmup = self.args.seconds, self.args.warmup
        seed = self.next_seed()
        count = int(round(rate * seconds))
        records = encode_events(count, rate, self.args.users, seed, int(time.time() * 1000))
        collector = self.collector(system, event_id_prefix(seed))
        try:
            log.info("%s: offering %g events/s for %g s", system.name, rate, seconds)
            load = send_paced(self.producer, system.input_topic, records, rate, warmup)
            complete = collector.wait(
                count,
                deadline_s=self.args.drain_timeout,
                idle_s=max(15.0, 3 * self._checkpoint_s(system)),
                what=f"{system.name} @ {rate:g}/s",
            )
        finally:
            data = collector.result()
        recv, ingest_ms = data["recv"], data["ingest_ms"]
        measured = ingest_ms >= load["wall_warm"] * 1000
        latency_ms = recv[measured] * 1000 - ingest_ms[measured]
        checkpoint_s = self._checkpoint_s(system)
        # Read-committed output comes once per checkpoint: a rate needs several intervals.
        min_span = max(1.0, 2 * checkpoint_s if system.read_committed else 0.0)
        output_rate = window_rate(recv, load["wall_warm"], load["wall_end"], min_span)
        if output_rate is None:
            self.notes.append(
                f"{system.name} @ {rate:g}/s: no output rate (arrivals after the warm-up span "
                f"< {min_span:g} s): make --seconds − --warmup longer"
            )
        result = {
            "offered_rate": rate,
            "seconds": seconds,
            "warmup_seconds": warmup,
            "seed": seed,
            "sent": count,
            "received": int(recv.size),
            "complete": complete,
            "measured_events": int(measured.sum()),
            "input_rate": load["input_rate"],
            "output_rate": output_rate,
            "kept_up": None
            if output_rate is None
            else bool(complete and output_rate >= 0.95 * rate),
            "send_seconds": round(load["send_seconds"], 3),
            "latency_ms": percentiles(latency_ms),
            **{k: data[k] for k in COLLECTOR_FIGURES},
        }
        result["system"] = system.check()
        lat = result["latency_ms"]
        log.info(
            "%s @ %g/s: in %.0f/s out %s/s p50 %s p99 %s ms",
            system.name,
            rate,
            load["input_rate"],
            f"{output_rate:.0f}" if output_rate else "-",
            _fmt(lat["p50"]),
            _fmt(lat["p99"]),
        )
        if rate > 0 and load["input_rate"] < 0.95 * rate:
            self.notes.append(
                f"{system.name} @ {rate:g}/s: the load generator only reached "
                f"{load['input_rate']:.0f}/s"
            )
        return result

    def run_system(self, system: System, result: dict[str, Any]) -> None:
        """Fill ``result`` as measurements finish (a failure keeps what was measured)."""
        result.update({"name": system.name, "drain": None, "steps": []})
        system.setup(self.kafka)
        try:
            if self.args.events > 0:
                result["drain"] = self.drain(system)
                if not result["drain"]["complete"]:
                    self.notes.append(
                        f"{system.name}: the backlog did not drain; rate steps skipped"
                    )
                    return
            else:
                system.start()
            for rate in self.args.rates:
                step = self.step(system, rate)
                result["steps"].append(step)
                if not step["complete"]:
                    self.notes.append(
                        f"{system.name} @ {rate:g}/s: outputs still missing; later steps skipped"
                    )
                    break
                if not step["system"].get("running", True):
                    self.notes.append(f"{system.name}: stopped running; later steps skipped")
                    break
        finally:
            system.stop()
            result["info"] = system.info
        for part in [result["drain"], *result["steps"]]:
            if not part:
                continue
            if part.get("duplicates"):
                self.notes.append(f"{system.name}: {part['duplicates']} duplicate outputs")
            if part.get("degraded"):
                self.notes.append(f"{system.name}: degraded predictions {part['degraded']}")
            if "fallback-rules" in part.get("model_versions", {}):
                self.notes.append(f"{system.name}: scored with the fallback rules")
            dead = part.get("system", {}).get("dead_letters")
            if dead:
                self.notes.append(f"{system.name}: {dead} dead letters")

    def close(self) -> None:
        self.producer.flush(10)
        if not self.args.keep_topics:
            self.kafka.delete_created()
        self.kafka.close()


# --- context: machine, git, model --------------------------------------------------------------
def _run(*cmd: str) -> str:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, check=False, cwd=PROJECT_ROOT, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    java = subprocess.run(
        ["java", "-version"], capture_output=True, text=True, check=False
    ).stderr.splitlines()
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_bytes": int(mem.group(1)) * 1024 if mem else None,
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "java": java[0] if java else None,
        "load_average_at_start": os.getloadavg(),
    }


def versions() -> dict[str, Any]:
    import confluent_kafka

    found = {
        name: importlib.metadata.version(name)
        for name in ("apache-flink", "confluent-kafka", "lightgbm", "fastavro")
    }
    found["librdkafka"] = confluent_kafka.libversion()[0]
    return found


def git_info() -> dict[str, Any]:
    changed = [
        line[3:]
        for line in _run("git", "status", "--porcelain", "--untracked-files=no").splitlines()
    ]
    untracked = _run("git", "ls-files", "--others", "--exclude-standard").splitlines()
    return {
        "commit": _run("git", "rev-parse", "HEAD"),
        "dirty": bool(changed),
        "changed_files": changed,
        "untracked_files": untracked,
    }


def ensure_model(s: Settings, user_sets: list[str]) -> str:
    from streamscore.model.registry import list_versions, resolve

    if not list_versions(s.models_dir):
        cli = Path(sys.executable).parent / "streamscore"
        sets = [a for pair in user_sets for a in ("--set", pair)]
        subprocess.run([str(cli), *sets, "train", "--if-missing"], check=True)
    return resolve(s.models_dir, s.model_version).version


def stale_code(s: Settings) -> str | None:
    """A warning if the package changed after the TaskManager started: in thread mode its one
    Python interpreter keeps the modules it imported for the first job, for every later job."""
    from streamscore.stack import flink
    from streamscore.stack.process import read_pid
    from streamscore.stack.stack import layout_of

    pid = read_pid(layout_of(s).pid_file(flink.taskmanager_names(s)[0]))
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = re.search(r"^btime (\d+)", Path("/proc/stat").read_text(), re.M)
        started = int(boot.group(1)) + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # type: ignore[union-attr]
    except (OSError, IndexError, AttributeError, ValueError):
        return None
    sources = [*(PROJECT_ROOT / "streamscore").rglob("*.py"), *(PROJECT_ROOT / "jobs").glob("*.py")]
    newer = sorted(str(p.relative_to(PROJECT_ROOT)) for p in sources if p.stat().st_mtime > started)
    if not newer:
        return None
    return (
        f"{', '.join(newer[:5])}{' …' if len(newer) > 5 else ''} changed after the Flink "
        "TaskManager started: it may still run the older code (restart the stack)"
    )


def command_line() -> str:
    env = [
        f"{k}={shlex.quote(v)}"
        for k, v in sorted(os.environ.items())
        if k.startswith("STREAMSCORE_") and "PASSWORD" not in k
    ]
    return " ".join([*env, shlex.join([sys.executable, *sys.argv])])


# --- report ------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}×)"


def add_ratios(report: dict[str, Any]) -> None:
    base = report["systems"].get(PASSTHROUGH)
    if base is None:
        return
    base_drain = (base.get("drain") or {}).get("throughput")
    base_steps = {st["offered_rate"]: st for st in base.get("steps", [])}
    for name, system in report["systems"].items():
        if name == PASSTHROUGH:
            continue
        drain = system.get("drain")
        if drain and drain.get("throughput") and base_drain:
            drain["vs_baseline"] = {"throughput": drain["throughput"] / base_drain}
        for st in system.get("steps", []):
            b = base_steps.get(st["offered_rate"])
            if b is None:
                continue
            ratios: dict[str, float | None] = {}
            for key in ("input_rate", "output_rate"):
                ratios[key] = st[key] / b[key] if st[key] and b[key] else None
            for key in ("p50", "p95", "p99"):
                v, w = st["latency_ms"][key], b["latency_ms"][key]
                ratios[f"latency_{key}"] = v / w if v is not None and w else None
            st["vs_baseline"] = ratios


def markdown(report: dict[str, Any]) -> str:
    p = report["parameters"]
    m = report["machine"]
    systems = report["systems"]
    base = systems.get(PASSTHROUGH)
    git = report["git"]
    lines = [
        f"## streamscore benchmark {report['started_at']}",
        "",
        f"commit `{git['commit'][:12]}`{' (uncommitted changes)' if git['dirty'] else ''}, "
        f"{m['nproc']} CPUs, {m['memory_bytes'] / 2**30:.1f} GiB, load average at start "
        f"{m['load_average_at_start'][0]:.2f}, model {report['model_version']}, "
        f"checkpoint interval {report['settings']['checkpoint_interval_ms']} ms, "
        f"parallelism {report['settings']['parallelism']}",
        "",
    ]
    if any(system.get("drain") for system in systems.values()):
        lines += [
            f"### Backlog drain ({p['events']:,} events, first → last output)",
            "",
            "| system | outputs/s | first→last s | received | duplicates |",
            "|---|---:|---:|---:|---:|",
        ]
        base_tp = (base.get("drain") or {}).get("throughput") if base else None
        for name, system in systems.items():
            d = system.get("drain")
            if not d:
                continue
            ratio = "" if name == PASSTHROUGH else _ratio(d.get("throughput"), base_tp)
            lines.append(
                f"| {name} | {_fmt(d.get('throughput'))}{ratio} | "
                f"{_fmt(d.get('first_to_last_seconds'), 1)} | "
                f"{d['received']:,}/{d['events']:,} | {d['duplicates']} |"
            )
        lines.append("")
    if any(system.get("steps") for system in systems.values()):
        lines += [
            f"### Latency at fixed offered rates ({p['seconds']:g} s per step, first "
            f"{p['warmup']:g} s discarded)",
            "",
            "| system | offered/s | input/s | output/s | kept up | p50 ms | p95 ms | p99 ms |",
            "|---|---:|---:|---:|:---:|---:|---:|---:|",
        ]
        base_steps = {st["offered_rate"]: st for st in base.get("steps", [])} if base else {}
        for name, system in systems.items():
            for st in system.get("steps", []):
                b = base_steps.get(st["offered_rate"]) if name != PASSTHROUGH else None
                lat = st["latency_ms"]
                blat = b["latency_ms"] if b else {}
                cells = [
                    name,
                    f"{st['offered_rate']:,.0f}",
                    f"{_fmt(st['input_rate'])}",
                    f"{_fmt(st['output_rate'])}{_ratio(st['output_rate'], b and b['output_rate'])}",
                    {True: "yes", False: "**no**", None: "?"}[st["kept_up"]],
                    *(
                        f"{_fmt(lat[k])}{_ratio(lat[k], blat.get(k))}"
                        for k in ("p50", "p95", "p99")
                    ),
                ]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if base:
        lines.append("(×) = ratio to the pass-through baseline measured in the same session.")
    if report["notes"]:
        lines += ["", "Notes:", *(f"- {n}" for n in report["notes"])]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput and latency of a running streamscore stack, against a "
        "pass-through baseline. Stack settings come from STREAMSCORE_* / --set."
    )
    parser.add_argument(
        "--events",
        type=int,
        default=300_000,
        help="backlog size for the drain measurement (0: skip it)",
    )
    parser.add_argument(
        "--rates",
        default="1000,5000,10000",
        help="offered rates in events/s, comma-separated ('' : skip)",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each rate step")
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="seconds at the start of each step left out of the figures",
    )
    parser.add_argument(
        "--modes",
        default="exactly-once,at-least-once",
        help="delivery guarantees to measure, comma-separated",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the pass-through")
    parser.add_argument("--users", type=int, default=2000, help="distinct users in the load")
    parser.add_argument(
        "--seed",
        type=int,
        default=0x5EED00,
        help="first generator seed (each backlog/step uses the next one)",
    )
    parser.add_argument(
        "--passthrough-batch",
        type=int,
        default=1000,
        help="max records per consume() call of the pass-through",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=1800.0,
        help="max seconds to wait for all outputs of a backlog or a step",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a setting, also passed to the job (repeatable)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON result file (default bench/results/bench-<time>-<run>.json)",
    )
    parser.add_argument(
        "--keep-topics",
        action="store_true",
        help="keep the bench-<run>-* topics instead of deleting them",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    args.modes = [DeliveryGuarantee(m.strip()) for m in args.modes.split(",") if m.strip()]
    if args.seconds <= args.warmup and args.rates:
        parser.error("--seconds must be longer than --warmup")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (e.g. from `timeout`) cleans up like Ctrl-C: job cancelled, topics deleted.
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    s = Settings().with_overrides(parse_overrides(args.overrides))

    from streamscore.stack import stack as stack_module

    down = [c.name for c in stack_module.status(s) if not c.running]
    if down:
        log.error(
            "stack not running (%s down): run `streamscore stack up` with the same settings",
            ", ".join(down),
        )
        return 2
    model_version = ensure_model(s, args.overrides)
    stale = stale_code(s)
    if stale:
        log.warning("%s", stale)
    run = uuid.uuid4().hex[:6]
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "run_id": run,
        "started_at": started.isoformat(timespec="seconds"),
        "command": command_line(),
        "argv": sys.argv,
        "parameters": {
            "events": args.events,
            "rates": args.rates,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "modes": [m.value for m in args.modes],
            "baseline": not args.no_baseline,
            "users": args.users,
            "first_seed": args.seed,
            "passthrough_batch": args.passthrough_batch,
            "set": args.overrides,
        },
        "settings": s.as_dict(),
        "model_version": model_version,
        "git": git_info(),
        "machine": machine_info(),
        "versions": versions(),
        "systems": {},
        "notes": [],
    }
    bench = Bench(args, s)
    if stale:
        bench.notes.append(stale)
    systems: list[System] = []
    if not args.no_baseline:
        systems.append(PassthroughSystem(s, run, bench.ctx, args.passthrough_batch))
    systems += [FlinkSystem(s, run, mode, args.overrides) for mode in args.modes]
    failed = False
    try:
        for system in systems:
            log.info("=== %s", system.name)
            bench.run_system(system, report["systems"].setdefault(system.name, {}))
    except KeyboardInterrupt:
        failed = True
        bench.notes.append("interrupted")
    except Exception as exc:
        failed = True
        log.exception("benchmark failed")
        bench.notes.append(f"failed: {type(exc).__name__}: {exc}")
    finally:
        for system in systems:  # whatever still runs after a failure
            try:
                system.stop()
            except Exception as exc:
                log.warning("could not stop %s: %s", system.name, exc)
        bench.close()
    report["notes"] = bench.notes
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["machine"]["load_average_at_end"] = os.getloadavg()
    add_ratios(report)
    output = args.output or RESULTS_DIR / f"bench-{started:%Y%m%dT%H%M%SZ}-{run}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    print(markdown(report))
    print(f"\nresults: {output}")
    return 1 if failed else 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
