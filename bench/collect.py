"""Output collection: which outputs of one measurement arrived, and when.

Receive times are the latency measurement, so the output consumer runs in a process of its own
where the load generator in the main process cannot delay it. It starts at the end offsets noted
just before the measurement and keeps only outputs whose event id has the measurement's prefix.

``collector_main`` is the child's entry point. The child is spawned, so it finds that function
by module and name (``collect.collector_main``): it must stay a top-level function of this
module, and this module must not depend on anything that exists only in the parent.
"""

from __future__ import annotations

import logging
import time
import uuid
from array import array
from collections import Counter
from typing import Any

import numpy as np
from confluent_kafka import Consumer, TopicPartition

from streamscore.serde import Codec

# The record type of a collector of the labels a system refused: its dead letters whose reason
# starts with "label:", each known by the event id of the label it carries.
LABEL_DEAD_LETTER = "label_dead_letter"

# What the output collector reports for every run, copied into each result.
COLLECTOR_FIGURES = ("duplicates", "foreign", "undecodable", "errors", "degraded", "model_versions")

# One logger for the whole benchmark, as before the split (its name is in every log line).
log = logging.getLogger("bench")


# --- child process (spawned: top-level function only) -----------------------------------------
def leading_string(value: bytes) -> bytes | None:
    """The bytes of the Avro string at the start of ``value`` (a zig-zag varint length, then the
    bytes), or None if ``value`` does not start with a whole one.

    A prediction's, an outcome's and an event's first field is the event id: the collector reads
    it alone while outputs arrive and decodes the rest after the measurement (``OutputLog``)."""
    shift = length = 0
    for position, byte in enumerate(value[:10]):
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            length = (length >> 1) ^ -(length & 1)
            start = position + 1
            if length < 0 or start + length > len(value):
                return None
            return value[start : start + length]
        shift += 7
    return None


class OutputLog:
    """What one collector saw: each output of the measurement once, with its receive time.

    Predictions, outcomes and the pass-through's events are kept as bytes while they arrive,
    known by their event id (their first field) alone, and decoded in ``figures()`` once the
    measurement is over. Decoding each as it came cost the collector about 7 µs a prediction
    and more an outcome: the two collectors of a drain took a quarter to a third of a core, from
    the two cores the measured system runs on (bench/HISTORY.md, thirty-fifth session). The
    label dead letters, few, are decoded as they come: their event id is inside."""

    def __init__(self, record_type: str, prefix: str) -> None:
        self._label_dead_letters = record_type == LABEL_DEAD_LETTER
        self._codec = Codec("dead_letter" if self._label_dead_letters else record_type)
        self._label_codec = Codec("label")
        self._prediction = record_type == "prediction"
        # Predictions, outcomes and the pass-through's events all start with the event id.
        self._deferred = not self._label_dead_letters
        self._prefix = prefix.encode()
        self.recv = array("d")
        self._kafka_ms = array("q")  # each output's Kafka timestamp (not kept for predictions)
        self._values: list[bytes] = []
        self._seen: set[bytes] = set()
        self.duplicates = self.foreign = self.undecodable = self.errors = 0

    def __len__(self) -> int:
        return len(self.recv)

    def take(self, message: Any, now: float) -> None:
        """One consumed message, received at ``now``."""
        if message.error():
            self.errors += 1
            return
        value = message.value()
        if self._deferred:
            event_id = leading_string(value)
        else:
            event_id = self._label_event_id(value)
        if event_id is None:
            self.undecodable += 1
            return
        if not event_id.startswith(self._prefix):
            self.foreign += 1
            return
        if event_id in self._seen:
            self.duplicates += 1
            return
        self._seen.add(event_id)
        self.recv.append(now)
        if self._prediction:
            self._values.append(value)
        else:
            self._kafka_ms.append(message.timestamp()[1])
            if self._deferred:
                self._values.append(value)

    def _label_event_id(self, value: bytes) -> bytes | None:
        """The event id of the label a label dead letter carries; b"" for another dead letter
        (foreign: no measurement's prefix is empty), None for undecodable bytes."""
        try:
            record = self._codec.decode(value)
            if not record["reason"].startswith("label:"):
                return b""
            return self._label_codec.decode(record["original"])["event_id"].encode()
        except Exception:
            return None

    def figures(self) -> dict[str, Any]:
        """Receive times, ingest times (a prediction's own, or the output's Kafka timestamp),
        scored times (predictions) and the counts, with the kept outputs decoded now: one
        that does not decode is dropped from the times and counted as undecodable."""
        keep = array("d")
        ingest, scored = array("q"), array("q")
        degraded: Counter[str] = Counter()
        models: Counter[str] = Counter()
        undecodable = self.undecodable
        if not self._deferred:
            keep, ingest = self.recv, self._kafka_ms
        for index, value in enumerate(self._values):
            try:
                record = self._codec.decode(value)
            except Exception:
                undecodable += 1
                continue
            keep.append(self.recv[index])
            if self._prediction:
                ingest.append(record["ingest_time"])
                scored.append(record["scored_time"])
                models[record["model_version"]] += 1
                for what in record["degraded"]:
                    degraded[what] += 1
            else:
                ingest.append(self._kafka_ms[index])
        return {
            "recv": np.frombuffer(keep, dtype=np.float64).copy(),
            "ingest_ms": np.frombuffer(ingest, dtype=np.int64).copy(),
            # When the job scored each prediction (none for other outputs).
            "scored_ms": np.frombuffer(scored, dtype=np.int64).copy(),
            "duplicates": self.duplicates,
            "foreign": self.foreign,
            "undecodable": undecodable,
            "errors": self.errors,
            "degraded": dict(degraded),
            "model_versions": dict(models),
        }


def collector_main(cfg: dict[str, Any], count: Any, ready: Any, stop: Any, out: Any) -> None:
    """Read the output topic from the given offsets; note the receive time of every output whose
    event id has the step's prefix (``OutputLog``). Sends its figures through ``out`` when
    stopped."""
    consumer = Consumer(
        {
            **cfg["kafka"],
            "group.id": f"bench-collector-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            "isolation.level": "read_committed" if cfg["read_committed"] else "read_uncommitted",
        }
    )
    outputs = OutputLog(cfg["record_type"], cfg["prefix"])
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
                outputs.take(m, now)
            count.value = len(outputs)
    finally:
        consumer.close()
        out.put(outputs.figures())


# --- parent side ------------------------------------------------------------------------------
class Collector:
    """The output consumer, in its own process so the load generator cannot delay it."""

    def __init__(
        self,
        ctx: Any,
        kafka: dict[str, Any],
        topic: str,
        start: dict[int, int],
        record_type: str,
        read_committed: bool,
        prefix: str,
    ) -> None:
        self.count = ctx.Value("q", 0, lock=False)
        self._ready, self._stop, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        cfg = {
            "kafka": kafka,  # kafka_io.client_config: the brokers and, if secured, the login
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

    @property
    def pid(self) -> int:
        """The collector's process, whose CPU the drain's cost reports apart (``ProcessCost``)."""
        return int(self._proc.pid)

    def wait(
        self,
        expected: int,
        *,
        deadline_s: float,
        idle_s: float,
        first_s: float | None = None,
        what: str = "",
        also: Collector | None = None,
    ) -> bool:
        """Until ``expected`` outputs arrived, those of ``also`` counted too; False on a timeout
        or a stall."""
        start = last_change = last_report = time.monotonic()
        last = -1
        while True:
            n = self.count.value + (also.count.value if also is not None else 0)
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
        """Stop the consumer and return what it saw (receive times, ingest times, figures)."""
        self._stop.set()
        try:
            data = self._out.get(timeout=60)
        finally:
            self.close()
        return data

    def close(self) -> None:
        """Stop the child; terminate it if it does not stop by itself."""
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
