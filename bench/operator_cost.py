#!/usr/bin/env python
"""The scoring operator's own Python per event and per label, outside Flink.

Runs ``ScoreEvents.process_element`` on batches of generated events and their labels, packed as
the JVM packs them (``--batch`` records each, as ``scoring_batch_max_records``), with Flink's
state, timer service, key switch and broadcast state replaced by in-process fakes that pickle
like Flink's (so the state's (un)pickling is counted, the JVM calls and RocksDB are not). It
writes to the running stack's Redis, as the job does (the feature store's background thread
shares the GIL):

    .venv/bin/python bench/operator_cost.py --events 20000

The job's per-event cost beyond these figures is PyFlink's per-batch wrapping, the JVM side
and the other processes (see the CPU table of ``run_bench.py``). It also times the
prediction's Avro encoding by fastavro and by the job's ``avro_encoders``.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import time
from typing import Any

from streamscore.config import Settings
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.job.batches import pack_records
from streamscore.job.functions import ScoreEvents
from streamscore.job.state_writes import PythonStateWrites
from streamscore.model.loading import load_for_job
from streamscore.resources import RECORD_TYPES, schema
from streamscore.serde import Codec


class _Key:
    current = ""


class _ValueState:
    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}

    def value(self) -> Any:
        found = self._values.get(_Key.current)
        return None if found is None else pickle.loads(found)

    def update(self, value: Any) -> None:
        # The operator's writes come pickled (state_writes.py), as StateWrites.java gets them.
        self._values[_Key.current] = value if isinstance(value, bytes) else pickle.dumps(value)

    def clear(self) -> None:
        self._values.pop(_Key.current, None)

    def keys(self) -> list[str]:
        """The users with a value (``StateWrites.userKeys`` lists them in Flink)."""
        return list(self._values)


class _MapState:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], bytes] = {}

    def get(self, key: str) -> Any:
        found = self._entries.get((_Key.current, key))
        return None if found is None else pickle.loads(found)

    def put(self, key: str, value: Any) -> None:
        self._entries[(_Key.current, key)] = (
            value if isinstance(value, bytes) else pickle.dumps(value)
        )

    def remove(self, key: str) -> None:
        self._entries.pop((_Key.current, key), None)

    def items(self) -> list[tuple[str, bytes]]:
        return [(k, v) for (user, k), v in self._entries.items() if user == _Key.current]


class _RuntimeContext:
    def get_state(self, descriptor: Any) -> _ValueState:
        return _ValueState()

    def get_map_state(self, descriptor: Any) -> _MapState:
        return _MapState()

    def get_index_of_this_subtask(self) -> int:
        return 0


class _Context:
    class _Timers:
        def current_watermark(self) -> int:
            return 0

        def register_event_time_timer(self, timestamp: int) -> None:
            pass

    class _Broadcast:
        def contains(self, key: str) -> bool:
            return False

    def timer_service(self) -> _Timers:
        return self._Timers()

    def get_broadcast_state(self, descriptor: Any) -> _Broadcast:
        return self._Broadcast()


class _KeySwitch:
    def to(self, user: str) -> None:
        _Key.current = user

    def forget_current(self) -> None:
        pass

    def assume(self, user: str) -> None:
        _Key.current = user


class _ScoreEvents(ScoreEvents):
    def _key_switch(self, runtime_context: Any) -> Any:
        return _KeySwitch()

    def _state_writes(self, runtime_context: Any, user_state: Any, join_state: Any) -> Any:
        return PythonStateWrites(_KeySwitch(), user_state, join_state, raw=True)

    def _load_reporter(self, runtime_context: Any) -> Any:
        return lambda share: None  # no batcher to tell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500, help="records per call")
    parser.add_argument(
        "--no-challenger",
        action="store_true",
        help="score without a challenger in shadow (by default one is loaded, as in the job "
        "once the learner has published)",
    )
    parser.add_argument(
        "--evict-kib",
        type=int,
        default=0,
        help="between two calls, overwrite this many KiB of memory (not timed), as the JVM's "
        "work between two Python calls does in a TaskManager: the operator then runs with cold "
        "CPU caches (the L2 cache of our machines is 1 MiB per core)",
    )
    parser.add_argument(
        "--checkpoint-records",
        type=int,
        default=30_000,
        help="announce a checkpoint barrier (an empty batch: the operator makes its waiting "
        "state writes, timed) after this many records, as 5 s checkpoints at 6,000 records/s",
    )
    parser.add_argument(
        "--events-per-second",
        type=float,
        default=5000.0,
        help="the events' spacing in event time: with a given number of events per user, "
        "a lower rate spreads each user's events over more of the windows' buckets",
    )
    parser.add_argument(
        "--label-lag",
        type=int,
        default=-1,
        help="each label this many events after its event, interleaved as in a drain, where "
        "most events are labelled before the next write-out (timed together, per record); by "
        "default (-1) every label after all the events, so that nearly every pending entry is "
        "written before its label comes",
    )
    parser.add_argument(
        "--write-through",
        action="store_true",
        help="state_write_behind_max=0: every state change written at once",
    )
    args = parser.parse_args()
    overrides: dict[str, Any] = {"metrics_port": 0}
    if args.write_through:
        overrides["state_write_behind_max"] = 0
    s = Settings().with_overrides(overrides)
    operator = _ScoreEvents(s, {name: schema(name) for name in RECORD_TYPES}, load_for_job(s))
    operator.open(_RuntimeContext())
    if not args.no_challenger:
        operator._scoring.apply("CHALLENGER", ("river-logistic-000002000", _challenger_snapshot()))
    ctx = _Context()
    events, labels = Codec("event"), Codec("label")
    # Event times end about now, whatever the spacing (the operator refuses events ahead of it).
    span_ms = int(2 * args.events / args.events_per_second * 1000)
    start = int(time.time() * 1000) - span_ms - 60_000
    generator = TransactionGenerator(
        GeneratorConfig(
            users=args.users, seed=5, events_per_second=args.events_per_second, start_ms=start
        )
    )
    event_rows, label_rows = [], []
    for i in range(2 * args.events):
        e = next(generator).event
        user, t = e["user_id"], e["event_time"]
        event_rows.append((user, events.encode(e), "events", 0, i, t))
        label = {"event_id": e["event_id"], "user_id": user, "is_fraud": False,
                 "label_time": t + 30_000}  # fmt: skip
        label_rows.append((user, labels.encode(label), s.topic_labels, 0, i, t + 30_000))

    scratch, filler = bytearray(args.evict_kib * 1024), bytes(args.evict_kib * 1024)

    def per_record_us(rows: list[tuple[Any, ...]]) -> float:
        batches = [pack_records(rows[i : i + args.batch]) for i in range(0, len(rows), args.batch)]
        spent = 0.0
        since_checkpoint = 0
        for batch in batches:
            if scratch:
                scratch[:] = filler
            started = time.perf_counter()
            list(operator.process_element(batch, ctx))  # a generator: its outputs, then writes
            since_checkpoint += args.batch
            if since_checkpoint >= args.checkpoint_records:
                list(operator.process_element(b"", ctx))
                since_checkpoint = 0
            spent += time.perf_counter() - started
        return spent / len(rows) * 1e6

    half = args.events  # the first half warms up the users' state and the caches
    setting = (f"{args.events} events, {args.users} users, {args.events_per_second:g} events/s "
               f"of event time, batches of {args.batch}")  # fmt: skip
    if args.label_lag >= 0:
        rows = _interleaved(event_rows, label_rows, args.label_lag)
        per_record_us(rows[: len(rows) // 2])
        with CollectorTimes() as collector:
            record_us = per_record_us(rows[len(rows) // 2 :])
        print(f"{setting}, each label {args.label_lag} events after its event: "
              f"{record_us:.1f} µs per record")  # fmt: skip
    else:
        per_record_us(event_rows[:half])
        per_record_us(label_rows[:half])
        with CollectorTimes() as collector:
            event_us, label_us = per_record_us(event_rows[half:]), per_record_us(label_rows[half:])
        print(f"{setting}: {event_us:.1f} µs per event, {label_us:.1f} µs per label")
    operator.close()
    print(f"garbage collector in the timed half: {collector}")
    fastavro_us, ours_us = encode_us()
    print(f"prediction encode: fastavro {fastavro_us:.1f} µs, avro_encoders {ours_us:.1f} µs")


class CollectorTimes:
    """The cyclic garbage collector's runs and time per generation while the block runs
    (``gc.callbacks``): the operator's cached state makes its full collections long."""

    def __init__(self) -> None:
        self.runs = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.runs[info["generation"]] += 1
            self.seconds[info["generation"]] += time.perf_counter() - self._started

    def __enter__(self) -> CollectorTimes:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def __str__(self) -> str:
        return ", ".join(
            f"generation {g}: {n} runs, {sec:.3f} s"
            for g, (n, sec) in enumerate(zip(self.runs, self.seconds))
        )


def _interleaved(events: list[Any], labels: list[Any], lag: int) -> list[Any]:
    """The events in order, each label ``lag`` events after its own."""
    rows: list[Any] = []
    for i, event in enumerate(events):
        rows.append(event)
        if i >= lag:
            rows.append(labels[i - lag])
    rows.extend(labels[max(0, len(events) - lag) :])
    return rows


def _challenger_snapshot(labels: int = 2_000) -> bytes:
    """A challenger snapshot that has learned from generated events (every column has a
    weight, as in the job after its first labels)."""
    import random

    from streamscore.features.engine import FeatureEngine
    from streamscore.model.challenger import dump_snapshot, new_learner

    engine, model, rng = FeatureEngine(), new_learner(), random.Random(3)
    states: dict[str, Any] = {}
    generator = TransactionGenerator(GeneratorConfig(users=500, seed=9))
    for _ in range(labels):
        event = next(generator).event
        state = states.setdefault(event["user_id"], engine.new_state())
        vector = engine.update(state, event)
        model.learn_one(dict(zip(engine.names, vector)), rng.random() < 0.1)
    return dump_snapshot(model)


def encode_us(n: int = 100_000) -> tuple[float, float]:
    """One prediction encoded ``n`` times by fastavro and by the job's hand-written encoder."""
    from streamscore.job.avro_encoders import PredictionEncoder

    prediction = {
        "event_id": "e1a2b-000000012345", "user_id": "u-004567", "event_time": 1767225600123,
        "score": 0.0123, "decision": "APPROVE", "model_version": "fraud-lgbm-20261130114332",
        "feature_set_version": "fs-v1", "degraded": [], "ingest_time": 1767225600123,
        "scored_time": 1767225600223, "amount": 42.5, "arm": "champion",
        "challenger_score": 0.02, "challenger_version": "river-logistic-000001000",
    }  # fmt: skip
    codec, encoder = Codec("prediction"), PredictionEncoder(schema("prediction"))
    assert encoder.encode(**prediction) == codec.encode(prediction)
    started = time.perf_counter()
    for _ in range(n):
        codec.encode(prediction)
    middle = time.perf_counter()
    for _ in range(n):
        encoder.encode(**prediction)
    ended = time.perf_counter()
    return (middle - started) / n * 1e6, (ended - middle) / n * 1e6


if __name__ == "__main__":
    main()
