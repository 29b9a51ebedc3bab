#!/usr/bin/env python
"""The Python side of the scoring operator's write-out before a checkpoint barrier, outside Flink.

The write-out holds up every record behind it (bench/HISTORY.md, tenth session). This
replays generated events through the feature engine for ``--users`` users, takes the users an
interval changes and one join-map change per event of it (a share ``--pending`` of them
pending outcomes, the rest closed entries), and times what ``StateWriter`` does with them in
Python, with a JVM side that does nothing:

* the users' state pickled at the barrier (what ``ScoringOperator.write_ahead`` moves ahead
  of it while the operator keeps up);
* the join entries pickled and packed at the barrier (as before ``9cbfe1e``) against packed
  when made (``state_writes.entry_record``) and only copied at the barrier.

    .venv/bin/python bench/write_out_cost.py --users 10000 --interval-events 60000
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from streamscore.features.engine import FeatureEngine
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.job.state import (
    PendingOutcome,
    ScoringState,
    closed_entry,
    pending_entry,
    pickled_scoring_state,
)
from streamscore.job.state_writes import JoinEntry, StateWriter, entry_record


class _NoJvm:
    """The JVM side, doing nothing: only Python's part is timed."""

    def write(self, packed: bytes) -> int:
        return 0

    def joinEntriesOf(self, user: str) -> bytes:  # noqa: N802 (the Java method's name)
        return b""


class _NoKeys:
    def forget_current(self) -> None:
        pass

    def assume(self, user: str) -> None:
        pass


def _replay(
    users: int, warm_events: int, interval_events: int, pending: float
) -> tuple[dict[str, ScoringState], dict[str, dict[str, JoinEntry | None]]]:
    """Users' state after ``warm_events`` + ``interval_events`` events, and one join change per
    event of the last ``interval_events`` (the users those change are the interval's)."""
    engine = FeatureEngine()
    rng = random.Random(1)
    generator = TransactionGenerator(GeneratorConfig(users=users, seed=3, events_per_second=5000))
    states: dict[str, ScoringState] = {}
    changes: dict[str, dict[str, JoinEntry | None]] = {}
    for i in range(warm_events + interval_events):
        event: dict[str, Any] = next(generator).event
        user = str(event["user_id"])
        state = states.get(user)
        if state is None:
            state = states[user] = ScoringState(engine.new_state())
        vector = engine.update(state.features, event)
        if i < warm_events:
            continue
        entry = (
            pending_entry(
                PendingOutcome(
                    event["event_time"],
                    event["amount"],
                    vector,
                    0.1,
                    "APPROVE",
                    "fraud-lgbm-20261201133641",
                    "champion",
                    0,
                    None,
                    0.2,
                    "river-000123",
                )  # fmt: skip
            )
            if rng.random() < pending
            else closed_entry(event["event_time"], "labelled")
        )
        changes.setdefault(user, {})[str(event["event_id"])] = entry
    return {user: states[user] for user in changes}, changes


def _best_ms(step: Any, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--warm-events", type=int, default=100_000)
    parser.add_argument(
        "--interval-events", type=int, default=60_000, help="events of one checkpoint interval"
    )
    parser.add_argument("--pending", type=float, default=0.6, help="share of pending entries")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    states, changes = _replay(args.users, args.warm_events, args.interval_events, args.pending)
    writer = StateWriter(_NoJvm(), _NoKeys())  # type: ignore[arg-type]
    entries = sum(len(c) for c in changes.values())

    def users_at_barrier() -> None:
        for user, state in states.items():  # as state.UserStateCache.stage stages them
            writer.stage_pickled(user, pickled_scoring_state(state))
        writer.flush()

    def entries_at_barrier() -> None:
        for user, changed in changes.items():
            writer.stage_entries(user, changed)
        writer.flush()

    made = {u: [entry_record(k, e) for k, e in c.items()] for u, c in changes.items()}

    def entries_when_made() -> None:
        for changed in changes.values():
            [entry_record(k, e) for k, e in changed.items()]

    def entries_copied() -> None:
        for user, records in made.items():
            writer.stage_records(user, list(records))
        writer.flush()

    rows = [
        (f"{len(states):,} users' state pickled and packed", users_at_barrier),
        (f"{entries:,} join entries pickled and packed at the barrier", entries_at_barrier),
        ("the same entries packed when made (not at the barrier)", entries_when_made),
        ("the same entries, packed when made, copied at the barrier", entries_copied),
    ]
    print(f"| Python's part of a write-out (no JVM) | best of {args.repeats}, ms |")
    print("|---|---:|")
    for label, step in rows:
        print(f"| {label} | {_best_ms(step, args.repeats):.1f} |")


if __name__ == "__main__":
    main()
