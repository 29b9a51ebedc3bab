#!/usr/bin/env python
"""What the scoring operator writes to RocksDB per event, before and after the state split.

Replays generated events (and their labels, with ``streamscore produce``'s delays) through the
feature engine and the label join's bookkeeping, outside Flink, at the per-user rate of the
benchmark's backlog (``--events-per-second`` / ``--users`` events per user and second), then
measures a busy user's state:

* layout 2 (until ``STATE_VERSION`` 2): one value per user holding the features, every pending
  outcome and every closed event id, pickled and written on every event;
* layout 3 (now): the features value (cached in Python, written per event) plus one join-map
  entry per event.

    .venv/bin/python bench/state_size.py --users 200 --events-per-second 100 --events 40000
"""

from __future__ import annotations

import argparse
import heapq
import pickle
import time

from streamscore.features.engine import FeatureEngine
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.job.state import PendingOutcome, ScoringState, pack, pending_entry
from streamscore.produce import LabelDelay, label_delay_rng

PROTOCOL = pickle.HIGHEST_PROTOCOL
HORIZON_MS = 600_000  # label_horizon_ms: closed ids are kept for two of them


def per_call_us(step, n: int = 2000) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--events-per-second", type=float, default=100.0)
    parser.add_argument("--events", type=int, default=40_000)
    args = parser.parse_args()
    engine = FeatureEngine()
    generator = TransactionGenerator(
        GeneratorConfig(users=args.users, seed=3, events_per_second=args.events_per_second)
    )
    delays, rng = LabelDelay(30_000, 0.6), label_delay_rng(1)
    features: dict[str, object] = {}
    pending: dict[str, dict[str, object]] = {}
    closed: dict[str, dict[str, tuple[int, str]]] = {}
    due: list[tuple[int, str, str]] = []
    entry = None
    for _ in range(args.events):
        tx = next(generator)
        event, t, user = tx.event, tx.event["event_time"], tx.event["user_id"]
        while due and due[0][0] <= t:
            _, labelled_user, event_id = heapq.heappop(due)
            if pending[labelled_user].pop(event_id, None) is not None:
                closed[labelled_user][event_id] = (t, "labelled")
        user_closed = closed.setdefault(user, {})
        for event_id in [e for e, (ct, _) in user_closed.items() if ct + 2 * HORIZON_MS <= t]:
            del user_closed[event_id]
        state = features.setdefault(user, engine.new_state())
        vector = engine.update(state, event)  # type: ignore[arg-type]
        outcome = PendingOutcome(t, event["amount"], vector, 0.1, "APPROVE",
                                 "fraud-lgbm-20261130144052", "champion", 0, None, 0.2,
                                 "river-logistic-000001000")  # fmt: skip
        pending.setdefault(user, {})[event["event_id"]] = pack(outcome)
        entry = pending_entry(outcome)
        heapq.heappush(due, (t + delays.sample_ms(rng, bool(tx.is_fraud)), user, event["event_id"]))
    busiest = max(pending, key=lambda u: len(pending[u]) + len(closed[u]))
    old = (features[busiest], pending[busiest], closed[busiest], -1)
    new_value = ScoringState(features[busiest])  # type: ignore[arg-type]
    old_blob, value_blob = pickle.dumps(old, PROTOCOL), pickle.dumps(new_value, PROTOCOL)
    entry_blob = pickle.dumps(entry, PROTOCOL)
    print(
        f"{args.events} events, {args.users} users, {args.events_per_second:g} events/s: "
        f"the busiest user has {len(pending[busiest])} pending and {len(closed[busiest])} "
        "closed events"
    )
    print(
        f"layout 2, written per event: {len(old_blob):,} bytes, pickle "
        f"{per_call_us(lambda: pickle.dumps(old, PROTOCOL)):.1f} µs, unpickle "
        f"{per_call_us(lambda: pickle.loads(old_blob)):.1f} µs"
    )
    print(
        f"layout 3, written per event: value {len(value_blob):,} + join entry "
        f"{len(entry_blob):,} bytes, pickle "
        f"{per_call_us(lambda: pickle.dumps(new_value, PROTOCOL)):.1f} + "
        f"{per_call_us(lambda: pickle.dumps(entry, PROTOCOL)):.1f} µs (reads: cached)"
    )


if __name__ == "__main__":
    main()
