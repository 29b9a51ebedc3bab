#!/usr/bin/env python
"""Per-event cost of the drift gauges (monitoring/drift.py), outside Flink.

Builds the references the way ``streamscore train`` does (quantile bins of every feature and
the score over a training run), then replays another seed's events through the feature engine
and times ``DriftMonitor.observe`` alone, per event, and one scrape (PSI and Jensen-Shannon of
every variable in every window). No servers needed:

    .venv/bin/python bench/drift_cost.py --events 200000 --users 10000 --rate 50
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np

from streamscore.features.engine import FeatureEngine
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.model.dataset import replay_features
from streamscore.monitoring.drift import DriftMonitor, reference_metadata, references_of


def vectors(users: int, events: int, rate: float, seed: int) -> tuple[list[int], list[list[float]]]:
    generator = TransactionGenerator(
        GeneratorConfig(users=users, events_per_second=rate, seed=seed)
    )
    times, rows = [], []
    for event, vector in replay_features(
        (t.event for t in generator.take(events)), FeatureEngine()
    ):
        times.append(event["event_time"])
        rows.append(vector)
    return times, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="events per second of event time (50: 200,000 events fill the 1 h window)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    _, train_rows = vectors(args.users, args.events, args.rate, seed=1)
    features = np.asarray(train_rows, dtype=np.float64)
    rng = np.random.default_rng(1)
    scores = rng.beta(1, 30, len(train_rows))
    references = references_of(
        {"drift_reference": reference_metadata(FeatureEngine().names, features, scores)}
    )
    assert references is not None
    times, rows = vectors(args.users, args.events, args.rate, seed=2)
    live_scores = rng.beta(1, 30, len(rows)).tolist()
    best_observe, best_scrape = float("inf"), float("inf")
    for _ in range(args.repeats):
        monitor = DriftMonitor(references, (300, 3600), 300)
        gc.collect()
        started = time.perf_counter()
        for event_time, vector, score in zip(times, rows, live_scores):
            monitor.observe(event_time, vector, score)
        best_observe = min(best_observe, (time.perf_counter() - started) / len(rows) * 1e6)
        started = time.perf_counter()
        samples = sum(len(family.samples) for family in monitor.samples())
        best_scrape = min(best_scrape, (time.perf_counter() - started) * 1e3)
    span_s = (times[-1] - times[0]) / 1000
    print(f"variables                    {len(references):8d}")
    print(f"event time replayed          {span_s:8.0f} s")
    print(f"observe                      {best_observe:8.2f} µs/event")
    print(f"scrape (PSI + JS, 2 windows) {best_scrape:8.2f} ms ({samples} samples)")


if __name__ == "__main__":
    main()
