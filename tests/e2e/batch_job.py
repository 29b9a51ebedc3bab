"""A small job on a local Flink (thread mode, RocksDB) through the job's JVM batch operators.

Run by ``test_batches.py`` in a subprocess: ``python -m tests.e2e.batch_job OUT.json``. Records
of many users go through the key shuffle, ``RecordBatcher``, a keyed Python function that
switches the key per record and writes its state as the scoring operator does, and
``OutputUnpacker``; what comes out
is written to OUT.json for the test to check."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pyflink.common import Configuration, Row, WatermarkStrategy
from pyflink.common.typeinfo import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import KeyedProcessFunction, StreamExecutionEnvironment
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from streamscore.config import Settings
from streamscore.job.batches import (
    KeySwitch,
    OutputPacker,
    java_keyed_state_backend,
    unpack_records,
)
from streamscore.job.functions import BYTES, KEYED_INPUT, java_state_writes
from streamscore.job.jvm_jar import operators_jar
from streamscore.job.pipeline import _batched, _unpacked_outputs
from streamscore.job.state_writes import StateWriter

USERS = 37
RECORDS = 3_000
BATCH_RECORDS = 50


class _Stamp(TimestampAssigner):
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[1][5])


class _CountPerUser(KeyedProcessFunction):
    """Counts each user's records in a value state and keeps one join-map entry per record,
    written as the scoring operator writes, through ``StateWriter`` and the JVM's
    ``StateWrites``, once per batch; read back through PyFlink's state API and the JVM."""

    def open(self, runtime_context: Any) -> None:
        self._keys = KeySwitch(java_keyed_state_backend(runtime_context))
        self._count = runtime_context.get_state(
            ValueStateDescriptor("n", Types.PICKLED_BYTE_ARRAY())
        )
        self._entries = runtime_context.get_map_state(
            MapStateDescriptor("entries", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        )
        self._writer = StateWriter(
            java_state_writes(runtime_context, self._count, self._entries), self._keys
        )
        self._counts: dict[str, int] = {}
        self._packer = OutputPacker()

    def process_element(self, value: bytes, ctx: Any) -> list[bytes]:
        self._keys.forget_current()
        if not value:  # the batcher announces a checkpoint barrier or the end of input
            user = ctx.get_current_key()
            return [self._packer.pack([("announced", str(user).encode(), b"")])]
        watermark = ctx.timer_service().current_watermark()
        out = []
        records = unpack_records(value)
        out.append(("batch", b"", str(len(records)).encode()))
        for key, _payload, topic, _partition, offset, timestamp in records:
            n = self._counts.get(key)
            if n is None:  # the first record of the run: its count is read from the state
                self._keys.to(key)
                n = self._count.value() or 0
            n = self._counts[key] = n + 1
            self._writer.stage_value(key, n)
            self._writer.stage_entries(key, {f"o{offset}": (n, offset)})
            if n == 1:
                self._keys.to(key)
                ctx.timer_service().register_event_time_timer(2**62)
            out.append(
                (topic, key.encode(), json.dumps([n, timestamp, watermark, offset]).encode())
            )
        self._writer.flush()
        return [self._packer.pack(out)]

    def on_timer(self, timestamp: int, ctx: Any) -> list[bytes]:
        self._keys.forget_current()
        user = ctx.get_current_key()
        user = user[0] if isinstance(user, (tuple, list, Row)) else user
        count = self._count.value()
        entries = self._writer.entries_of(user)
        self._writer.stage_clear(user)
        self._writer.flush()
        self._keys.to(user)
        cleared = self._count.value()
        return [
            self._packer.pack(
                [
                    ("timer", user.encode(), str(count).encode()),
                    ("entries", user.encode(), json.dumps(sorted(entries.values())).encode()),
                    ("cleared", user.encode(), str(cleared).encode()),
                ]
            )
        ]


def main(out_path: Path, jar_dir: Path) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    conf = Configuration()
    conf.set_string("python.execution-mode", "thread")
    conf.set_string("python.executable", sys.executable)
    conf.set_string("state.backend.type", "rocksdb")
    conf.set_string("pipeline.auto-watermark-interval", "1 ms")
    env.configure(conf)
    env.set_parallelism(2)
    env.add_jars(operators_jar(jar_dir).as_uri())
    users = [f"user-{i}" for i in range(USERS)]
    rows = [
        Row(users[i % USERS], Row(users[i % USERS], b"x", "events", 0, i, 1_000 + i))
        for i in range(RECORDS)
    ]
    source = env.from_collection(rows, type_info=KEYED_INPUT).set_parallelism(1)
    stamped = source.assign_timestamps_and_watermarks(
        WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(_Stamp())
    ).set_parallelism(1)
    # The job's own wiring (pipeline._batched, pipeline._unpacked_outputs), two subtasks.
    settings = Settings().with_overrides(
        {
            "scoring_batch_max_records": BATCH_RECORDS,
            "scoring_batch_max_wait_ms": 20,
            "scoring_parallelism": 2,
        }
    )
    batches = _batched(stamped._j_data_stream, settings, "batch-records", 2, announce_barriers=True)
    counted = batches.process(_CountPerUser(), output_type=BYTES)
    unpacked = _unpacked_outputs(counted, settings)
    results = []
    with unpacked.execute_and_collect() as rows_out:
        for topic, key, value in rows_out:
            results.append(
                [topic, bytes(key).decode() if key is not None else None, bytes(value).decode()]
            )
    out_path.write_text(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
