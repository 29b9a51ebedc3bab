"""What the scoring operator keeps per user in RocksDB, and the rules of the label join.

Two pieces of keyed state per user, so that what an event costs does not grow with what the
user has pending (measured: with ~30 unlabelled and ~200 recently labelled events per user, one
value holding all of it pickled to 16 KB, written on every event):

* a value, ``ScoringState``, read once (then cached, ``UserStateCache``) and written once per
  checkpoint whatever number of records changed it:
  the feature engine's ``UserState``, the one event-time timer registered for the user
  (``timer_at``, so a timer is registered about once per horizon, not per record), the
  number of parked labels and when the map's entries come due (``DueSummary``);
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

The timer walks the user's map when it fires with something due, which the value's summary of
the map's deadlines tells without reading the map (``DueSummary``); its deadlines are rounded up
to ``TIMER_STEP_MS`` so that a busy user's timer fires at most that often, and closed entries'
to a quarter horizon (``closed_sweep_step``) so that one walk forgets many. Everything here is
plain data in checkpointed state, so after a failure each label is joined, learned from and
counted exactly once. ``STATE_VERSION`` names the layout for savepoint upgrades.
"""

from __future__ import annotations

import math
import pickle
import struct
import time
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol
from zlib import crc32

from streamscore.features.engine import UserState
from streamscore.features.rings import pack as pack_cells
from streamscore.features.rings import unpack as unpack_cells
from streamscore.job.entry_records import OUTCOME_HEAD, packed_outcome
from streamscore.job.state_writes import JoinEntry, StateWriter, entry_record
from streamscore.job.user_state_codec import decoded, encoded, pickled
from streamscore.metric_values import CounterChild, LabelledCounter

# 1: the features' UserState alone (before the label join); 2: one value with the join's dicts;
# 3: the value and the join map (state names "scoring-user-v3", "label-join-v3"). The value's
# summary of the map's deadlines (DueSummary) came later, within 3: a value pickled without it
# reads back with it unknown, and the user's next timer walks the map and makes it. 4: the
# features' numeric windows as rings of cells in one array (features/rings.py), pickled packed;
# the state names stay, and a value of 3 does not read back (``streamscore upgrade`` refuses it).
# 5: the value pickled as one blob (job/user_state_codec.py); a value of 4 still reads back, so
# ``streamscore upgrade`` takes a savepoint of 4 (``READABLE_STATE_VERSIONS``).
STATE_VERSION: Final = 5
READABLE_STATE_VERSIONS: Final = (4, 5)
# The operator's keyed states (job/functions.py): the users' values and the label-join map.
USER_STATE_NAME: Final = "scoring-user-v3"
JOIN_STATE_NAME: Final = "label-join-v3"
# Timer deadlines are rounded up to this step of event time (see the module's docstring).
TIMER_STEP_MS: Final = 10_000
# A deadline that never comes.
NEVER: Final = 2**62


class PendingOutcome:
    """What was decided on a scored event, kept until its label comes.

    A plain class, not a named tuple: compiled, making one (once per event) is a native
    allocation, where a named tuple's ``__new__`` runs as Python."""

    def __init__(
        self,
        event_time: int,
        amount: float,
        vector: list[float],
        score: float,  # the score the decision used
        decision: str,
        model_version: str,
        arm: str,
        canary_percent: int,
        champion_score: float | None,  # the champion's score of a candidate-arm event
        challenger_score: float | None,
        challenger_version: str | None,
    ) -> None:
        self.event_time = event_time
        self.amount = amount
        self.vector = vector
        self.score = score
        self.decision = decision
        self.model_version = model_version
        self.arm = arm
        self.canary_percent = canary_percent
        self.champion_score = champion_score
        self.challenger_score = challenger_score
        self.challenger_version = challenger_version

    def fields(self) -> tuple[Any, ...]:
        return (
            self.event_time, self.amount, self.vector, self.score, self.decision,
            self.model_version, self.arm, self.canary_percent, self.champion_score,
            self.challenger_score, self.challenger_version,
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PendingOutcome) and self.fields() == other.fields()

    def __repr__(self) -> str:
        return f"PendingOutcome{self.fields()!r}"


# A pending outcome is kept packed (``pending_entry``; until it is written, ``JoinMap`` also
# keeps it as it is: ``fresh_pending_entry``): with a few unlabelled events per user, NamedTuples of
# floats made the per-event state pickle round trip 56 µs at 30 pending (measured), packed
# bytes far less (bench/ml_loop_cost.py). Layout (``entry_records.OUTCOME_HEAD``, then the
# vector's doubles): event_time, amount, score, champion_score and challenger_score (NaN for
# none), decision, arm, canary_percent. Packed in C (``entry_records.packed_outcome``).
_HEAD: Final = struct.Struct(OUTCOME_HEAD)
DECISIONS: Final = ("APPROVE", "REVIEW", "DECLINE")
ARMS: Final = ("champion", "candidate")
# (packed numbers and vector, model_version, challenger_version)
PackedOutcome = tuple[bytes, str, str | None]


def pack(outcome: PendingOutcome) -> PackedOutcome:
    nan = math.nan
    data = packed_outcome(
        outcome.event_time,
        outcome.amount,
        outcome.score,
        nan if outcome.champion_score is None else outcome.champion_score,
        nan if outcome.challenger_score is None else outcome.challenger_score,
        DECISIONS.index(outcome.decision),
        ARMS.index(outcome.arm),
        outcome.canary_percent,
        outcome.vector,
    )
    return (data, outcome.model_version, outcome.challenger_version)


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
        DECISIONS[decision],
        model_version,
        ARMS[arm],
        percent,
        None if math.isnan(champion) else champion,
        None if math.isnan(challenger) else challenger,
        challenger_version,
    )


def packed_event_time(packed: PackedOutcome) -> int:
    return int(_HEAD.unpack_from(packed[0])[0])


class ParkedLabel:
    """A label that arrived before its event, with what a dead letter needs. A plain class for
    the reason ``PendingOutcome`` is one (one is made per label)."""

    def __init__(
        self,
        is_fraud: bool,
        label_time: int,
        payload: bytes,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        self.is_fraud = is_fraud
        self.label_time = label_time
        self.payload = payload
        self.topic = topic
        self.partition = partition
        self.offset = offset

    def fields(self) -> tuple[bool, int, bytes, str, int, int]:
        return (
            self.is_fraud, self.label_time, self.payload, self.topic, self.partition, self.offset,
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParkedLabel) and self.fields() == other.fields()

    def __repr__(self) -> str:
        return f"ParkedLabel{self.fields()!r}"


class ScoringState:
    """A user's features and what the operator needs to know of the user's join map without
    reading it.

    ``due`` summarises the map's deadlines (``DueSummary``) so that a timer firing with
    nothing due, which is most of them, does not walk the map. ``None`` where it is not known:
    a value pickled before the summary existed (three fields), or one whose summary was found
    inconsistent; the next firing walks the map and rebuilds it.

    ``parked_ids``: the user's parked labels (``parked`` of them), event id -> the deadline at
    which each gives up, where this run knows them: a new user's (none) and, after a walk of the
    map, whoever's was walked. Not pickled: a value read back from Flink's state with parked
    labels has ``None`` (not known) until its next walk. Why: while a user has a parked label,
    each of its events would otherwise look itself up in the map, and nearly every lookup is a
    miss that costs a call into the JVM and a RocksDB read (2.7 % of the scoring thread in a
    drain, where 14 % of the labels came before their events; bench/HISTORY.md, forty-second
    session). Known, they also give the parked labels' earliest deadline exactly
    (``earliest_due``), where the summary's is a lower bound that a label meeting its event
    leaves behind, and a later parked label brought back due: a walk that found nothing."""

    __slots__ = ("due", "features", "parked", "parked_ids", "timer_at")

    def __init__(
        self,
        features: UserState,
        timer_at: int = -1,
        parked: int = 0,
        pending_due: dict[int, int] | None = None,
        closed_due: int = NEVER,
        parked_due: int = NEVER,
    ) -> None:
        self.features = features
        self.timer_at = timer_at
        self.parked = parked  # labels of this user parked in the join map
        self.parked_ids: dict[str, int] | None = {} if parked == 0 else None
        self.due: DueSummary | None = (
            DueSummary(pending_due, closed_due, parked_due) if pending_due is not None else None
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # One blob (user_state_codec): one global to name and no nested reduce, where the
        # nested form below (what STATE_VERSION 4 wrote) named two; it remains for a state the
        # blob cannot hold, and reads back as before.
        blob = encoded(self._parts())
        if blob is not None:
            return restore_scoring_state, (blob,)
        due = self.due
        if due is None:
            return ScoringState, (self.features, self.timer_at, self.parked)
        # The summary's fields inline, not as an object: no class to name in every pickle.
        return ScoringState, (
            self.features,
            self.timer_at,
            self.parked,
            due.pending,
            due.closed,
            due.parked,
        )

    def _parts(
        self,
    ) -> tuple[int, bytes, list[Any], int, int, dict[int, int] | None, int, int]:
        """What ``user_state_codec`` writes: see ``encoded``."""
        features = self.features
        due = self.due
        if due is None:
            return (features.newest, pack_cells(features.cells), features.slots, self.timer_at,
                    self.parked, None, NEVER, NEVER)  # fmt: skip
        return (features.newest, pack_cells(features.cells), features.slots, self.timer_at,
                self.parked, due.pending, due.closed, due.parked)  # fmt: skip


def restore_scoring_state(blob: bytes) -> ScoringState:
    """A ``ScoringState`` pickled as its blob (``ScoringState.__reduce__``) read back."""
    newest, cells, slots, timer_at, parked, pending, closed, parked_due = decoded(blob)
    return ScoringState(
        UserState(newest, unpack_cells(cells), slots), timer_at, parked, pending, closed, parked_due
    )


def pickled_scoring_state(state: ScoringState) -> bytes:
    """``pickle.dumps(state)``: the same bytes, written in C where the blob can hold the state
    (``user_state_codec.pickled``), for about half the pickler's cost, the cells' packing
    included (bench/HISTORY.md, forty-seventh session)."""
    written = pickled(state._parts())
    return written if written is not None else pickle.dumps(state)


def new_scoring_state(features: UserState) -> ScoringState:
    """A new user's state: an empty join map, so its summary is known (and empty)."""
    return ScoringState(features, pending_due={})


class DueSummary:
    """When a user's join entries come due, kept beside the map so that a timer need not walk
    the map to find out.

    Why: every scored event arms the user's timer at its pending deadline (event time plus the
    label horizon), but in most cases its label comes first, and the firing finds nothing due;
    walking the map (one call into the JVM, every entry unpickled) at each of them took 9-22 %
    of the scoring thread in a 1,000,000-event drain (``bench/HISTORY.md``, fourteenth
    session). So:

    * pending entries are counted per timer step of their deadline (``pending``), one added per
      scored event and one taken away when its label closes it while the user's state is
      cached: a pending entry only ever changes through those two and the walk, so the count is
      exact or too high (a label whose user had left the cache leaves its entry counted rather
      than read the state back: ``ScoringOperator._join``), and the walk at that deadline makes
      it exact again;
    * closed entries only ever leave the map in a walk, so the earliest of their deadlines
      (``closed``, ``NEVER`` if none) stays exact; their deadlines are rounded up to a sweep step
      (``closed_sweep_step``) so that a walk forgets many at once;
    * parked labels: the earliest deadline of those parked since the last walk (``parked``,
      ``NEVER`` if none), a lower bound (a parked label that meets its event leaves early): at
      worst one walk that finds nothing.

    A count that would go below zero (a deadline counted under another ``label_horizon_ms``
    before a restart) makes the summary unknown: the next firing walks and rebuilds it. Every
    error in it is towards walking too often, never too rarely."""

    __slots__ = ("closed", "parked", "pending")

    def __init__(
        self, pending: dict[int, int] | None = None, closed: int = NEVER, parked: int = NEVER
    ) -> None:
        self.pending: dict[int, int] = pending if pending is not None else {}
        self.closed = closed
        self.parked = parked

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DueSummary) and (self.pending, self.closed, self.parked) == (
            other.pending,
            other.closed,
            other.parked,
        )

    def __repr__(self) -> str:
        return f"DueSummary({self.pending!r}, {self.closed!r}, {self.parked!r})"

    def add_pending(self, deadline: int) -> None:
        step = timer_time(deadline)
        pending = self.pending
        pending[step] = pending.get(step, 0) + 1

    def remove_pending(self, deadline: int) -> bool:
        """False if no pending entry was counted at ``deadline``: the summary is wrong."""
        step = timer_time(deadline)
        pending = self.pending
        count = pending.get(step, 0)
        if count <= 0:
            return False
        if count == 1:
            del pending[step]
        else:
            pending[step] = count - 1
        return True

    def add_closed(self, deadline: int) -> None:
        if deadline < self.closed:
            self.closed = deadline

    def add_parked(self, deadline: int) -> None:
        if deadline < self.parked:
            self.parked = deadline

    def pending_count(self) -> int:
        return sum(self.pending.values())

    def earliest(self, parked_labels: int) -> int:
        """The earliest deadline of an entry, ``NEVER`` if none."""
        earliest = min(self.pending) if self.pending else NEVER
        if self.closed < earliest:
            earliest = self.closed
        if parked_labels > 0 and self.parked < earliest:
            earliest = self.parked
        return earliest


def summarise(entries: Any, horizon_ms: int, park_wait_ms: int, phase: int) -> DueSummary:
    """The summary of a user's join map (``entries``: its values), as a walk finds it
    (``phase``: the user's ``sweep_phase``)."""
    due = DueSummary()
    for entry in entries:
        kind = entry[0]
        deadline = entry_deadline(entry, horizon_ms, park_wait_ms, phase)
        if kind == PENDING:
            due.add_pending(deadline)
        elif kind == CLOSED:
            due.add_closed(deadline)
        else:
            due.add_parked(deadline)
    return due


def is_due(state: ScoringState, timestamp: int, retention_ms: int, max_pending: int) -> bool:
    """Whether a timer firing at ``timestamp`` has anything to do for the user: an entry due,
    more pending entries than ``max_pending`` to drop, the user idle, or the summary unknown."""
    due = state.due
    if due is None:
        return True
    newest = state.features.newest
    if newest < 0 or newest + retention_ms <= timestamp:
        return True
    return earliest_due(state, due) <= timestamp or due.pending_count() > max_pending


def earliest_due(state: ScoringState, due: DueSummary) -> int:
    """The earliest deadline of the user's join entries (``due``: its known summary), with its
    parked labels' own deadlines where they are known (``ScoringState.parked_ids``)."""
    parked_ids = state.parked_ids
    if parked_ids is None:
        return due.earliest(state.parked)
    earliest = due.earliest(0)
    for deadline in parked_ids.values():
        if deadline < earliest:
            earliest = deadline
    return earliest


# The join map's entries' kinds (state_writes.JoinEntry: tagged tuples).
PENDING: Final = 0
CLOSED: Final = 1
PARKED: Final = 2


def pending_entry(outcome: PendingOutcome) -> JoinEntry:
    """A pending entry as Flink's state keeps it: the outcome packed."""
    return (PENDING, *pack(outcome))


def fresh_pending_entry(outcome: PendingOutcome) -> JoinEntry:
    """A pending entry made in this run and not written yet: the outcome itself, unpacked.
    ``JoinMap`` packs it at once (``stored_entry``) for the writer and its pending cache, and
    answers reads with it until it is written, so that its label does not unpack it. Never
    pickled."""
    return (PENDING, outcome)


def _is_fresh(entry: JoinEntry) -> bool:
    return len(entry) == 2 and entry[0] == PENDING


def stored_entry(entry: JoinEntry) -> JoinEntry:
    """``entry`` in the form Flink's state keeps (a fresh pending entry packed)."""
    if _is_fresh(entry):
        outcome: PendingOutcome = entry[1]
        return pending_entry(outcome)
    return entry


def pending_outcome(entry: JoinEntry) -> PendingOutcome:
    """The outcome of a pending entry, fresh or as stored."""
    if _is_fresh(entry):
        outcome: PendingOutcome = entry[1]
        return outcome
    return unpack(entry[1:])  # type: ignore[arg-type]


def stored_outcome(entry: JoinEntry) -> PackedOutcome | None:
    """The packed outcome of a pending entry as stored, or None for a fresh one."""
    if _is_fresh(entry):
        return None
    return entry[1:]  # type: ignore[return-value]


def pending_event_time(entry: JoinEntry) -> int:
    """The event time of a pending entry, fresh or as stored."""
    if _is_fresh(entry):
        outcome: PendingOutcome = entry[1]
        return outcome.event_time
    return packed_event_time(entry[1:])  # type: ignore[arg-type]


def closed_entry(event_time: int, why: str) -> JoinEntry:
    return (CLOSED, event_time, why)


def parked_entry(label: ParkedLabel) -> JoinEntry:
    return (PARKED, *label.fields())


def parked_label(entry: JoinEntry) -> ParkedLabel:
    return ParkedLabel(entry[1], entry[2], entry[3], entry[4], entry[5], entry[6])


def closed_sweep_step(horizon_ms: int) -> int:
    """The step closed entries' deadlines are rounded up to: a quarter of the horizon, at least
    one timer step, so that a walk forgets the closed entries of a quarter horizon at once (they
    live up to a quarter horizon longer: about 6 % more of them)."""
    return timer_time(max(horizon_ms // 4, TIMER_STEP_MS))


def sweep_phase(user: str, horizon_ms: int) -> int:
    """Where ``user``'s sweep steps start, a whole number of timer steps into the sweep step.

    Why: on one grid for all users, every user's sweep would come due at the same event time,
    and the watermark advance that crosses it would fire all their timers at once, each walking
    its map, while records and the checkpoint barrier wait. Spread by a hash of the user, a
    crossing fires one in ``closed_sweep_step / TIMER_STEP_MS`` of them. (The 13-16 s
    checkpoint after the end of the 1,000,000-event drains stayed with the spread grids: it is
    not this, ``bench/HISTORY.md``, fifteenth session.)"""
    steps = closed_sweep_step(horizon_ms) // TIMER_STEP_MS
    return (crc32(user.encode()) % steps) * TIMER_STEP_MS


def entry_deadline(entry: JoinEntry, horizon_ms: int, park_wait_ms: int, phase: int = 0) -> int:
    """The event time at which an entry is due: a pending outcome expires, a closed id is
    forgotten (on the user's sweep steps, ``closed_deadline``), a parked label gives up."""
    kind = entry[0]
    if kind == PENDING:
        return pending_event_time(entry) + horizon_ms
    if kind == CLOSED:
        return closed_deadline(int(entry[1]), horizon_ms, phase)
    return int(entry[2]) + park_wait_ms  # PARKED: (kind, is_fraud, label_time, ...)


def closed_deadline(event_time: int, horizon_ms: int, phase: int = 0) -> int:
    """When a closed entry of an event at ``event_time`` is forgotten: after one more horizon
    than a pending one, rounded up to the user's next sweep step (``closed_sweep_step``, shifted
    by the user's ``sweep_phase``)."""
    step = closed_sweep_step(horizon_ms)
    return -(-(event_time + 2 * horizon_ms - phase) // step) * step + phase


def next_deadline(state: ScoringState, retention_ms: int) -> int:
    """The earliest event time at which something of the user's state is due: an entry of the
    join map (from its summary, which must be known), or the whole user expires (no event for
    the longest window plus the slack)."""
    newest = state.features.newest
    deadline = newest + retention_ms if newest >= 0 else NEVER
    due = state.due
    if due is not None:
        deadline = min(deadline, earliest_due(state, due))
    return deadline


def timer_time(deadline: int) -> int:
    """``deadline`` rounded up to ``TIMER_STEP_MS``."""
    return -(-deadline // TIMER_STEP_MS) * TIMER_STEP_MS


class KeyScope(Protocol):
    """What the caches below need of ``batches.KeySwitch``: make ``user`` Flink's current key
    (no call into the JVM when it already is)."""

    def to(self, user: str) -> None: ...


class ChangeOrder:
    """Users with changes waiting to be written, in the order of their last change.

    ``touch`` records a change, ``forget`` a write, and ``oldest`` takes the users whose last
    change is oldest: a queue of (change number, user) read from its head, where an item
    superseded by a later change of its user, or by a write, is skipped. Each step is O(1),
    where taking the head of an ordered dict that keeps losing its head is not."""

    def __init__(self) -> None:
        self._changes = 0
        self._last: dict[str, int] = {}
        self._order: deque[tuple[int, str]] = deque()

    def touch(self, user: str) -> None:
        self._changes += 1
        self._last[user] = self._changes
        self._order.append((self._changes, user))

    def forget(self, user: str) -> None:
        """``user`` was written. Once none waits, the queue is emptied: without ``oldest``
        (draining a backlog, or writing ahead turned off) it is bounded by the changes between
        two write-outs."""
        last = self._last
        if last.pop(user, None) is not None and not last:
            self._order.clear()

    def oldest(self, most: int) -> list[str]:
        """At most ``most`` users, those whose last change is oldest first; they are forgotten
        (the caller writes them)."""
        order, last = self._order, self._last
        found: list[str] = []
        while order and len(found) < most:
            change, user = order.popleft()
            if last.get(user) == change:
                del last[user]
                found.append(user)
        if not last:
            order.clear()
        return found

    def __len__(self) -> int:
        return len(self._last)


class WriteAheadWindow:
    """When the scoring operator writes waiting state ahead of the next checkpoint barrier:
    from ``window_s`` before it is due, i.e. the last barrier (or the start) plus the checkpoint
    interval. Written earlier, more users would change again before the barrier and be written
    twice; close to it few do, and the write-out at the barrier is left with little."""

    def __init__(
        self, interval_s: float, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lead_s = interval_s - window_s
        self._window_s = window_s
        self._clock = clock
        self._opens_at = clock() + self._lead_s

    def barrier(self) -> None:
        """A barrier came: the next is due one interval from now."""
        self._opens_at = self._clock() + self._lead_s

    def is_open(self) -> bool:
        return self._clock() >= self._opens_at

    def due_in(self) -> float:
        """Seconds until the next barrier is due (negative once it is late)."""
        return self._opens_at + self._window_s - self._clock()


class KnownUsers:
    """The users that may have state in this subtask: those in Flink's keyed state when the
    operator opened (``StateWrites.userKeys``), and every user the operator has kept since.

    A user not among them has neither a value nor label-join entries in Flink's state: a join
    entry is only ever written along with its user's value, and a value is cleared only when the
    user has no entry left (``ScoringOperator._on_timer``). So ``UserStateCache`` and
    ``JoinMap`` answer "none" for such a user without a call into the JVM and a RocksDB read:
    with 1,000,000 users nearly every event is its user's first, and those reads were 13 % of
    the scoring thread (bench/HISTORY.md, forty-fourth session).

    Bloom filters (``rbloom``): of the users never seen, about ``error`` per filter are taken for
    seen ones and read, as they all were before. A filter holds as many users as it was made
    for; then a new one twice its size takes the next users, so the memory follows the users
    (1.2 MB per million at 1 %) and the error stays near ``error`` per filter. ``users=None``
    (the state's users could not be listed) or ``error=0``: it knows nothing, and every user
    not cached is read."""

    def __init__(self, users: list[str] | None, error: float, first_capacity: int = 65_536) -> None:
        self.enabled = users is not None and error > 0
        self._error = error
        self._filters: list[Any] = []
        # Users the newest filter can still take at its error.
        self._room = 0
        self._next_capacity = first_capacity
        if users is not None and self.enabled:
            self._grow(max(first_capacity, 2 * len(users)))
            self._filters[-1].update(users)
            self._room -= len(users)

    def may_have_state(self, user: str) -> bool:
        """False only for a user that certainly has no state."""
        if not self.enabled:
            return True
        for seen in self._filters:
            if user in seen:
                return True
        return False

    def add(self, user: str) -> None:
        """``user`` may have state from now on."""
        if not self.enabled or self.may_have_state(user):
            return
        if self._room <= 0:
            self._grow(self._next_capacity)
        self._filters[-1].add(user)
        self._room -= 1

    def _grow(self, capacity: int) -> None:
        from rbloom import Bloom

        self._filters.append(Bloom(capacity, self._error))
        self._room = capacity
        self._next_capacity = 2 * capacity

    @property
    def filters(self) -> int:
        return len(self._filters)


def unpack_users(packed: bytes) -> list[str]:
    """The users ``StateWrites.userKeys`` packed: per user, its length (big-endian int) and
    UTF-8 bytes."""
    users: list[str] = []
    at, end = 0, len(packed)
    while at < end:
        length = int.from_bytes(packed[at : at + 4], "big")
        users.append(packed[at + 4 : at + 4 + length].decode())
        at += 4 + length
    return users


class UserStateCache:
    """A cache of users' ``ScoringState`` in front of Flink's keyed value state, written behind.

    In thread mode each ``value()`` is a call into the JVM (after a call that switches Flink's
    current key to the user), a RocksDB access and an unpickle. PyFlink keeps no cache of its
    own there. The state is only ever changed by this subtask's function, so a copy kept here
    stays exact: a hit skips the read. With ``deferred`` a change is not written at once either:
    the user is marked changed and staged by ``stage`` (the operator stages every changed user
    before each checkpoint barrier and writes them in one call, so each checkpoint holds the
    same state as if every change had been written through; see
    ``ScoringOperator.write_deferred``), or written when the least recently used user leaves the
    cache. Without ``deferred`` every ``put`` is written at once. Writes go through ``writer``
    (``state_writes.StateWriter``).

    In the last stretch before a barrier is due, while the operator keeps up, it writes changed
    users ahead of the barrier (``oldest_changed`` gives them, those changed longest ago first;
    ``stage`` stages them), so that the write-out before the barrier, which holds up every
    record behind it, has few left; a user changed again after it was written is written
    again (``ScoringOperator.write_ahead``). Changes are put in that order only while
    ``ordered``: the operator turns it off for full batches (a backlog drains, and nothing is
    written ahead), where the order cost a dictionary write and a queue item per record; a
    user changed only then is written at the barrier, or when ahead after a later change.

    The cache lives in the function object: a restored, restarted or rescaled job builds new
    function objects, which start empty and read from Flink's state again. A read first switches
    the current key to ``user`` (``keys``). At most ``capacity`` users are kept; with 0 nothing
    is kept and every change is written at once.
    """

    def __init__(
        self,
        state: Any,
        keys: KeyScope,
        capacity: int,
        deferred: bool,
        writer: StateWriter,
        known: KnownUsers | None = None,
        reads_skipped: CounterChild | None = None,
    ) -> None:
        """``known``: the users that may have state (``KnownUsers``; by default none is known
        and every user not cached is read); ``reads_skipped`` counts the reads it spared."""
        from collections import OrderedDict

        self._state = state
        self._keys = keys
        self._known = known if known is not None else KnownUsers(None, 0.0)
        self._reads_skipped = reads_skipped if reads_skipped is not None else CounterChild()
        self._capacity = capacity
        # The least recently used user leaves a full cache; until it is half full none can, so
        # the order of use is kept from then on only (moving the user to the end on every read
        # and write cost two dictionary operations per record; the first to leave are then
        # those not used since it was half full, in the order they came).
        self._recent_from = capacity // 2
        self._deferred = deferred and capacity > 0
        self._writer = writer
        self._entries: OrderedDict[str, ScoringState] = OrderedDict()
        self._changed: set[str] = set()
        self._order = ChangeOrder()
        # Whether changes are put in order for ``oldest_changed`` (see ``ordered``).
        self.ordered = True
        self.hits = 0
        self.misses = 0

    def get(self, user: str) -> ScoringState | None:
        found = self.cached(user)
        if found is not None:
            return found
        self.misses += 1
        if not self._known.may_have_state(user):
            self._reads_skipped.inc()
            return None
        self._keys.to(user)
        found = self._state.value()
        if found is not None:
            self._remember(user, found)
        return found

    def cached(self, user: str) -> ScoringState | None:
        """``user``'s state if this cache holds it, else None, without reading Flink's state:
        for a caller that can do without a state it would have to read (the label join's
        summary, ``ScoringOperator._join``)."""
        entries = self._entries
        found = entries.get(user)
        if found is not None:
            if len(entries) > self._recent_from:
                entries.move_to_end(user)
            self.hits += 1
        return found

    def put(self, user: str, value: ScoringState) -> None:
        if self._deferred:
            self._changed.add(user)
            if self.ordered:
                self._order.touch(user)
        else:
            self._writer.stage_pickled(user, pickled_scoring_state(value))
            self._writer.flush()
        self._remember(user, value)

    def clear(self, user: str) -> None:
        self._writer.stage_clear(user)
        self._writer.flush()
        self._entries.pop(user, None)
        self._changed.discard(user)
        self._order.forget(user)

    def oldest_changed(self, most: int) -> list[str]:
        """At most ``most`` changed users, those changed longest ago first
        (``ChangeOrder.oldest``), for the caller to stage."""
        return self._order.oldest(most)

    def changed(self) -> set[str]:
        """The users changed since they were last written."""
        return self._changed

    def stage(self, user: str) -> None:
        """Stage ``user``'s state for the writer's next flush if it changed since it was last
        written."""
        if user in self._changed:
            self._changed.discard(user)
            self._order.forget(user)
            self._writer.stage_pickled(user, pickled_scoring_state(self._entries[user]))

    def _remember(self, user: str, value: ScoringState) -> None:
        entries = self._entries
        before = len(entries)
        entries[user] = value
        if len(entries) > before:  # not held until now: perhaps never seen
            self._known.add(user)
        if len(entries) <= self._recent_from:
            return
        entries.move_to_end(user)
        if len(entries) > self._capacity:
            oldest = next(iter(entries))
            if oldest in self._changed:  # a changed user is written before it is forgotten
                self.stage(oldest)
                self._writer.flush()
            del entries[oldest]

    def __len__(self) -> int:
        return len(self._entries)


class JoinMap:
    """The label-join map state, with its *pending* entries also kept in Python, written behind.

    Most labels find their event pending; without this each would cost a call into the JVM, a
    RocksDB read and an unpickle to get back an entry this subtask wrote itself. Keyed by
    (user, event id), as the map state is. At most ``capacity`` pending entries are kept, the
    oldest go first (pending entries are mostly closed in the order they were written); a miss
    reads the map state. An entry enters this cache when it is written: until then its waiting
    change answers reads (below), so most of a drain's entries, made and closed between two
    write-outs, never do.

    With ``deferred``, changes wait in Python, per user, until ``stage`` hands them to the
    writer (as in ``UserStateCache``): an event labelled before they are written costs one write
    of its closed entry instead of a pending entry and then a closed one. Reads see the waiting
    changes first. Each change is packed for the writer when it is made
    (``state_writes.entry_record``), so that the write-out before a barrier, which holds up
    every record, only copies it; a change replaced before the barrier was packed in vain. A
    fresh pending entry (``fresh_pending_entry``, the outcome itself) is packed for the writer
    and the pending cache when made too, but until it is written, reads answer with the fresh
    one, so that its label does not unpack it. (Packing it only when written spared the pack of
    every entry labelled before the barrier, but put the others' packing into the write-out,
    which holds up every record: draining, the write-outs took 456-499 ms instead of 313-337;
    ``bench/HISTORY.md``, fourteenth session.) The pending cache keeps the packed form: a fifth
    of the memory, for up to ``capacity`` outcomes.
    """

    def __init__(
        self,
        state: Any,
        keys: KeyScope,
        capacity: int,
        deferred: bool,
        writer: StateWriter,
        state_reads: LabelledCounter | None = None,
        known: KnownUsers | None = None,
        reads_skipped: CounterChild | None = None,
    ) -> None:
        """``state_reads`` (by ``found``: true, false) counts the reads that went to Flink's
        state: an entry written before (found: a parked label that its event came for, or a
        pending entry that left the pending cache), or none at all (a label before its event,
        or an event of a user whose parked labels are not known by id). ``known``: the users
        that may have state (``KnownUsers``, shared with the ``UserStateCache``): a user never
        seen has no entry to read, which ``reads_skipped`` counts."""
        self._state = state
        self._known = known if known is not None else KnownUsers(None, 0.0)
        self._reads_skipped = reads_skipped if reads_skipped is not None else CounterChild()
        self._keys = keys
        self._capacity = capacity
        counter = state_reads if state_reads is not None else LabelledCounter("", "", ("found",))
        self._reads_found: CounterChild = counter.labels("true")
        self._reads_absent: CounterChild = counter.labels("false")
        self._deferred = deferred
        self._writer = writer
        from collections import OrderedDict

        # Oldest first. An ordered dict, not a dict: a dict whose oldest entry is taken with
        # ``next(iter(...))`` and deleted, again and again, walks every slot deleted before it
        # until the dict is next resized: 17 us per entry at 200,000 against 0.7 for
        # ``popitem`` (bench/HISTORY.md, thirty-seventh session). A full cache evicts once per
        # pending entry written: every event whose label comes after the next barrier.
        self._pending: OrderedDict[tuple[str, str], JoinEntry] = OrderedDict()
        # user -> event id -> (its new entry, or None where it was removed; the same in the form
        # Flink's state keeps, stored_entry; that change packed for the writer,
        # state_writes.entry_record)
        self._changes: dict[str, dict[str, tuple[JoinEntry | None, JoinEntry | None, bytes]]] = {}
        self._order = ChangeOrder()
        # Whether changes are put in order for ``oldest_changed`` (as in ``UserStateCache``).
        self.ordered = True
        self.changed_entries = 0

    def get(self, user: str, event_id: str) -> JoinEntry | None:
        changes = self._changes.get(user)
        if changes is not None:
            change = changes.get(event_id)
            if change is not None:
                return change[0]
        found = self._pending.get((user, event_id))
        if found is not None:
            return found
        if not self._known.may_have_state(user):
            self._reads_skipped.inc()
            return None
        self._keys.to(user)
        read: JoinEntry | None = self._state.get(event_id)
        if read is None:
            self._reads_absent.inc()
        else:
            self._reads_found.inc()
        return read

    def put(self, user: str, event_id: str, entry: JoinEntry) -> None:
        stored = stored_entry(entry)
        if self._deferred:
            self._change(user, event_id, entry, stored)
            return
        self._write_now(user, event_id, stored)
        self._cache(user, event_id, stored)

    def remove(self, user: str, event_id: str) -> None:
        if self._deferred:
            self._change(user, event_id, None, None)
            return
        self._write_now(user, event_id, None)
        self._cache(user, event_id, None)

    def items(self, user: str) -> list[tuple[str, JoinEntry]]:
        """``user``'s entries: Flink's state (read in one call) with the waiting changes on top.
        Leaves the current key at ``user``."""
        entries = self._writer.entries_of(user)
        changes = self._changes.get(user)
        if changes:
            for event_id, (entry, _, _) in changes.items():
                if entry is None:
                    entries.pop(event_id, None)
                else:
                    entries[event_id] = entry
        return list(entries.items())

    def changed(self) -> Any:
        """The users with changes not yet written."""
        return self._changes.keys()

    def oldest_changed(self, most: int) -> list[str]:
        """At most ``most`` users with changed entries, those changed longest ago first
        (``ChangeOrder.oldest``), for the caller to stage."""
        return self._order.oldest(most)

    def stage(self, user: str) -> None:
        """Stage ``user``'s waiting changes for the writer's next flush; what they leave
        pending is kept in the pending cache from now on (until then the changes answer reads,
        so an entry made and closed between two write-outs never enters the cache)."""
        changes = self._changes.pop(user, None)
        self._order.forget(user)
        if changes:
            self.changed_entries -= len(changes)
            records: list[bytes] = []
            for event_id, (_, stored, record) in changes.items():
                self._cache(user, event_id, stored)
                records.append(record)
            self._writer.stage_records(user, records)

    def _cache(self, user: str, event_id: str, stored: JoinEntry | None) -> None:
        """The pending cache after ``stored`` (None: removed) was written."""
        key = (user, event_id)
        pending = self._pending
        if stored is None or stored[0] != PENDING:
            pending.pop(key, None)
            return
        pending[key] = stored
        if len(pending) > self._capacity:
            pending.popitem(last=False)

    def _write_now(self, user: str, event_id: str, stored: JoinEntry | None) -> None:
        self._writer.stage_entries(user, {event_id: stored})
        self._writer.flush()

    def _change(
        self, user: str, event_id: str, entry: JoinEntry | None, stored: JoinEntry | None
    ) -> None:
        """``entry`` (None: removed) is what reads answer until it is written; ``stored`` is the
        same entry in the form Flink's state keeps (``stored_entry``)."""
        changes = self._changes.get(user)
        if changes is None:
            changes = self._changes[user] = {}
        if event_id not in changes:
            self.changed_entries += 1
        changes[event_id] = (entry, stored, entry_record(event_id, stored))
        if self.ordered:
            self._order.touch(user)
