#!/usr/bin/env python
"""Per-event cost of the scoring operator's pure-Python steps, outside Flink.

Replays generated events through the feature engine the way ``ScoreEvents`` does (state
unpickled, updated, pickled again, as RocksDB's value state does per event) and reports µs per
event for each step. It needs no servers, so it compares two commits quickly and repeatably:

    .venv/bin/python bench/engine_cost.py --events 200000 --users 10000

Run each commit in its own checkout (``git worktree add``) with ``PYTHONPATH`` pointing at it.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import statistics
import time

from streamscore.features.engine import FeatureEngine
from streamscore.generator import GeneratorConfig, TransactionGenerator


def measure(events: list[dict], repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` µs per event of: update alone, and pickle round trip + update."""
    results: dict[str, list[float]] = {"update": [], "state_round_trip+update": []}
    for _ in range(repeats):
        engine = FeatureEngine()
        states: dict[str, object] = {}
        gc.collect()
        started = time.perf_counter()
        for event in events:
            state = states.get(event["user_id"])
            if state is None:
                state = states[event["user_id"]] = engine.new_state()
            engine.update(state, event)
        results["update"].append((time.perf_counter() - started) / len(events) * 1e6)

        engine = FeatureEngine()
        blobs: dict[str, bytes] = {}
        gc.collect()
        started = time.perf_counter()
        for event in events:
            blob = blobs.get(event["user_id"])
            state = engine.new_state() if blob is None else pickle.loads(blob)
            engine.update(state, event)
            blobs[event["user_id"]] = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        results["state_round_trip+update"].append(
            (time.perf_counter() - started) / len(events) * 1e6
        )
        results.setdefault("state_bytes_mean", []).append(
            statistics.fmean(len(b) for b in blobs.values())
        )
    return {name: min(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--events-per-second",
        type=float,
        default=2000.0,
        help="the events' rate in event time, which sets how many buckets each user's windows "
        "hold (run_bench.py's backlog uses the highest --rates step, or 1,000)",
    )
    args = parser.parse_args()
    generator = TransactionGenerator(
        GeneratorConfig(users=args.users, events_per_second=args.events_per_second)
    )
    events = [t.event for t in generator.take(args.events)]
    for name, value in measure(events, args.repeats).items():
        unit = "bytes" if name.endswith("bytes_mean") else "µs/event"
        print(f"{name:<28} {value:8.2f} {unit}")


if __name__ == "__main__":
    main()
