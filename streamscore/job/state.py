"""What the scoring operator keeps per user in RocksDB, and the rules of the label join.

One value per user (one state read and one write per record, the measured rule for PyFlink's
thread mode) holds:

* ``features``: the feature engine's ``UserState``;
* ``pending``: what learning and quality need of each scored event whose label has not come yet
  (``PendingOutcome``), until the label arrives or ``label_horizon_ms`` of event time passes;
* ``closed``: event ids already labelled or expired, with their event time, remembered for one
  more horizon so a second label is told apart (``label:duplicate`` / ``label:expired``) from a
  label of an event never seen (``label:unknown_event``);
* ``parked``: labels that arrived before their event (topics are read at uneven speeds, e.g.
  draining a backlog). A parked label waits until the watermark passes its label time plus the
  allowed lateness: by then its event can no longer be scored, so it is a dead letter;
* ``timer_at``: the one event-time timer registered for the user (the earliest deadline), so a
  timer is registered about once per horizon per user, not per record.

Everything here is plain data in checkpointed state, so after a failure each label is joined,
learned from and counted exactly once. The pickled layout is a tuple; ``STATE_VERSION`` names it
for savepoint upgrades.
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any, NamedTuple

from streamscore.features.engine import UserState

STATE_VERSION = 2  # 1: the features' UserState alone (before the label join)


class PendingOutcome(NamedTuple):
    """What was decided on a scored event, kept until its label comes."""

    event_time: int
    amount: float
    vector: list[float]
    score: float  # the score the decision used
    decision: str
    model_version: str
    arm: str
    canary_percent: int
    champion_score: float | None  # the champion's score of a candidate-arm event
    challenger_score: float | None
    challenger_version: str | None


# A pending outcome is kept packed: with a few unlabelled events per user, NamedTuples of
# floats made the per-event state pickle round trip 56 µs at 30 pending (measured), packed
# bytes far less (bench/ml_loop_cost.py). Layout: event_time, amount, score, champion_score
# and challenger_score (NaN for none), decision, arm, canary_percent, then the vector.
_HEAD = struct.Struct("<qddddBBB")
_DECISIONS = ("APPROVE", "REVIEW", "DECLINE")
_ARMS = ("champion", "candidate")
# (packed numbers and vector, model_version, challenger_version)
PackedOutcome = tuple[bytes, str, str | None]


def pack(outcome: PendingOutcome) -> PackedOutcome:
    nan = math.nan
    head = _HEAD.pack(
        outcome.event_time,
        outcome.amount,
        outcome.score,
        nan if outcome.champion_score is None else outcome.champion_score,
        nan if outcome.challenger_score is None else outcome.challenger_score,
        _DECISIONS.index(outcome.decision),
        _ARMS.index(outcome.arm),
        outcome.canary_percent,
    )
    return (
        head + array("d", outcome.vector).tobytes(),
        outcome.model_version,
        (outcome.challenger_version),
    )


def unpack(packed: PackedOutcome) -> PendingOutcome:
    data, model_version, challenger_version = packed
    t, amount, score, champion, challenger, decision, arm, percent = _HEAD.unpack_from(data)
    vector = array("d")
    vector.frombytes(data[_HEAD.size :])
    return PendingOutcome(
        t,
        amount,
        vector.tolist(),
        score,
        _DECISIONS[decision],
        model_version,
        _ARMS[arm],
        percent,
        None if math.isnan(champion) else champion,
        None if math.isnan(challenger) else challenger,
        challenger_version,
    )


def packed_event_time(packed: PackedOutcome) -> int:
    return int(_HEAD.unpack_from(packed[0])[0])


class ParkedLabel(NamedTuple):
    """A label that arrived before its event, with what a dead letter needs."""

    is_fraud: bool
    label_time: int
    payload: bytes
    topic: str
    partition: int
    offset: int


class ScoringState:
    __slots__ = ("closed", "features", "parked", "pending", "timer_at")

    def __init__(
        self,
        features: UserState,
        pending: dict[str, PackedOutcome] | None = None,
        closed: dict[str, tuple[int, str]] | None = None,
        parked: dict[str, ParkedLabel] | None = None,
        timer_at: int = -1,
    ) -> None:
        self.features = features
        self.pending = pending if pending is not None else {}
        self.closed = closed if closed is not None else {}
        self.parked = parked if parked is not None else {}
        self.timer_at = timer_at

    def __reduce__(self) -> tuple[Any, ...]:
        return ScoringState, (self.features, self.pending, self.closed, self.parked, self.timer_at)


def next_deadline(
    state: ScoringState, retention_ms: int, horizon_ms: int, park_wait_ms: int
) -> int:
    """The earliest event time at which something of the user's state is due:
    a pending outcome expires, a closed id is forgotten, a parked label gives up, or the whole
    user expires (no event for the longest window plus the slack)."""
    deadline = state.features.newest + retention_ms if state.features.newest >= 0 else 2**62
    for packed in state.pending.values():
        deadline = min(deadline, packed_event_time(packed) + horizon_ms)
    for event_time, _ in state.closed.values():
        deadline = min(deadline, event_time + 2 * horizon_ms)
    for parked in state.parked.values():
        deadline = min(deadline, parked.label_time + park_wait_ms)
    return deadline
