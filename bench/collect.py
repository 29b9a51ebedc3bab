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
def collector_main(cfg: dict[str, Any], count: Any, ready: Any, stop: Any, out: Any) -> None:
    """Read the output topic from the given offsets; note receive time and ingest time of every
    output whose event id has the step's prefix. Sends the arrays through ``out`` when stopped."""
    consumer = Consumer(
        {
            **cfg["kafka"],
            "group.id": f"bench-collector-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            "isolation.level": "read_committed" if cfg["read_committed"] else "read_uncommitted",
        }
    )
    # A label dead letter is counted by the event id of the label it carries; other dead
    # letters are foreign.
    label_dead_letters = cfg["record_type"] == LABEL_DEAD_LETTER
    codec = Codec("dead_letter" if label_dead_letters else cfg["record_type"])
    label_codec = Codec("label")
    prediction = cfg["record_type"] == "prediction"
    prefix = cfg["prefix"]
    recv, ingest, scored = array("d"), array("q"), array("q")
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
                    if label_dead_letters:
                        if not record["reason"].startswith("label:"):
                            foreign += 1
                            continue
                        record = label_codec.decode(record["original"])
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
                    scored.append(record["scored_time"])
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
                # When the job scored each prediction (none for other outputs).
                "scored_ms": np.frombuffer(scored, dtype=np.int64).copy(),
                "duplicates": duplicates,
                "foreign": foreign,
                "undecodable": undecodable,
                "errors": errors,
                "degraded": dict(degraded),
                "model_versions": dict(models),
            }
        )


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
