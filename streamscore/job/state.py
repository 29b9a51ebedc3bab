"""What the scoring operator keeps per user in RocksDB, and the rules of the label join.

Two pieces of keyed state per user, so that what an event costs does not grow with what the
user has pending (measured: with ~30 unlabelled and ~200 recently labelled events per user, one
value holding all of it pickled to 16 KB, written on every event):

* a value, ``ScoringState``, read once (then cached, ``UserStateCache``) and written per record:
  the feature engine's ``UserState``, the one event-time timer registered for the user
  (``timer_at``, so a timer is registered about once per horizon, not per record) and the
  number of parked labels;
* a map from event id to its entry in the label join, of which a record reads or writes one:
  - *pending* (``PendingOutcome``, packed): what learning and quality need of a scored event
    whose label has not come yet, until the label arrives or ``label_horizon_ms`` of event time
    passes;
  - *closed*: an event already labelled, expired or dropped at the per-user cap of pending
    outcomes, with its event time, remembered for one more horizon so a later label is told
    apart (``label:duplicate`` / ``label:expired`` / ``label:pending_dropped``) from a label of
    an event never seen (``label:unknown_event``);
  - *parked*: a label that arrived before its event (topics are read at uneven speeds, e.g.
    draining a backlog). It waits until the watermark passes its label time plus the allowed
    lateness: by then its event can no longer be scored, so it is a dead letter.

The timer walks the user's map when it fires; its deadlines are rounded up to ``TIMER_STEP_MS``
so that a busy user's timer fires at most that often. Everything here is plain data in
checkpointed state, so after a failure each label is joined, learned from and counted exactly
once. ``STATE_VERSION`` names the layout for savepoint upgrades.
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any, NamedTuple

from streamscore.features.engine import UserState

# 1: the features' UserState alone (before the label join); 2: one value with the join's dicts;
# 3: the value and the join map (state names "scoring-user-v3", "label-join-v3").
STATE_VERSION = 3
# Timer deadlines are rounded up to this step of event time (see the module's docstring).
TIMER_STEP_MS = 10_000


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
    __slots__ = ("features", "parked", "timer_at")

    def __init__(self, features: UserState, timer_at: int = -1, parked: int = 0) -> None:
        self.features = features
        self.timer_at = timer_at
        self.parked = parked  # labels of this user parked in the join map

    def __reduce__(self) -> tuple[Any, ...]:
        return ScoringState, (self.features, self.timer_at, self.parked)


# The join map's entries (event id → entry), tagged tuples that pickle small.
PENDING, CLOSED, PARKED = 0, 1, 2
JoinEntry = tuple[Any, ...]


def pending_entry(outcome: PendingOutcome) -> JoinEntry:
    return (PENDING, *pack(outcome))


def pending_outcome(entry: JoinEntry) -> PendingOutcome:
    return unpack(entry[1:])  # type: ignore[arg-type]


def closed_entry(event_time: int, why: str) -> JoinEntry:
    return (CLOSED, event_time, why)


def parked_entry(label: ParkedLabel) -> JoinEntry:
    return (PARKED, *label)


def parked_label(entry: JoinEntry) -> ParkedLabel:
    return ParkedLabel(*entry[1:])


def entry_deadline(entry: JoinEntry, horizon_ms: int, park_wait_ms: int) -> int:
    """The event time at which an entry is due: a pending outcome expires, a closed id is
    forgotten, a parked label gives up."""
    kind = entry[0]
    if kind == PENDING:
        return packed_event_time(entry[1:]) + horizon_ms  # type: ignore[arg-type]
    if kind == CLOSED:
        return int(entry[1]) + 2 * horizon_ms
    return int(entry[2]) + park_wait_ms  # PARKED: (kind, is_fraud, label_time, ...)


def next_deadline(
    state: ScoringState,
    entries: Any,
    retention_ms: int,
    horizon_ms: int,
    park_wait_ms: int,
) -> int:
    """The earliest event time at which something of the user's state is due: an entry of the
    join map (``entries``: its values), or the whole user expires (no event for the longest
    window plus the slack)."""
    deadline = state.features.newest + retention_ms if state.features.newest >= 0 else 2**62
    for entry in entries:
        deadline = min(deadline, entry_deadline(entry, horizon_ms, park_wait_ms))
    return deadline


def timer_time(deadline: int) -> int:
    """``deadline`` rounded up to ``TIMER_STEP_MS``."""
    return -(-deadline // TIMER_STEP_MS) * TIMER_STEP_MS


class UserStateCache:
    """A write-through cache of users' ``ScoringState`` in front of Flink's keyed value state.

    In thread mode each ``value()`` is a call into the JVM, a RocksDB read and an unpickle, and
    PyFlink keeps no cache of its own there. The state is only ever changed by this subtask's
    function, so a copy kept here stays exact: a hit skips the read. Every change is still
    written through (``put``), so each checkpoint holds the same state as without the cache.
    The cache lives in the function object: a restored, restarted or rescaled job builds new
    function objects, which start empty and read from Flink's state again.

    ``get``/``put``/``clear`` act on the current key of the keyed state, which must be ``user``
    (the operator passes the record's key). At most ``capacity`` users are kept, the least
    recently used go first.
    """

    def __init__(self, state: Any, capacity: int) -> None:
        from collections import OrderedDict

        self._state = state
        self._capacity = capacity
        self._entries: OrderedDict[str, ScoringState] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, user: str) -> ScoringState | None:
        entries = self._entries
        found = entries.get(user)
        if found is not None:
            entries.move_to_end(user)
            self.hits += 1
            return found
        self.misses += 1
        found = self._state.value()
        if found is not None:
            self._remember(user, found)
        return found

    def put(self, user: str, value: ScoringState) -> None:
        self._state.update(value)
        self._remember(user, value)

    def clear(self, user: str) -> None:
        self._state.clear()
        self._entries.pop(user, None)

    def _remember(self, user: str, value: ScoringState) -> None:
        entries = self._entries
        entries[user] = value
        entries.move_to_end(user)
        if len(entries) > self._capacity:
            entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class JoinMap:
    """The label-join map state, with its *pending* entries also kept in Python.

    Most labels find their event pending; without this each would cost a call into the JVM, a
    RocksDB read and an unpickle to get back an entry this subtask wrote itself. Written
    through like ``UserStateCache`` (the map state stays the truth, so checkpoints are exact) and
    keyed by (user, event id), as the map state is. At most ``capacity`` entries, the oldest go
    first (pending entries are mostly closed in the order they were written); a miss reads the
    map state.
    """

    def __init__(self, state: Any, capacity: int) -> None:
        self._state = state
        self._capacity = capacity
        self._pending: dict[tuple[str, str], JoinEntry] = {}

    def get(self, user: str, event_id: str) -> JoinEntry | None:
        found = self._pending.get((user, event_id))
        return found if found is not None else self._state.get(event_id)

    def put(self, user: str, event_id: str, entry: JoinEntry) -> None:
        self._state.put(event_id, entry)
        key = (user, event_id)
        if entry[0] != PENDING:
            self._pending.pop(key, None)
            return
        pending = self._pending
        pending[key] = entry
        if len(pending) > self._capacity:
            del pending[next(iter(pending))]

    def remove(self, user: str, event_id: str) -> None:
        self._state.remove(event_id)
        self._pending.pop((user, event_id), None)

    def items(self) -> Any:
        """The current user's entries, from the map state."""
        return self._state.items()
