"""The scoring operator's per-user state: its deadlines and how it pickles."""

import math
import pickle
import struct
from array import array
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore.features.engine import FeatureEngine
from streamscore.job.state import (
    TIMER_STEP_MS,
    DueSummary,
    ParkedLabel,
    PendingOutcome,
    ScoringState,
    closed_deadline,
    closed_entry,
    entry_deadline,
    fresh_pending_entry,
    is_due,
    new_scoring_state,
    next_deadline,
    pack,
    parked_entry,
    parked_label,
    pending_entry,
    pending_event_time,
    pending_outcome,
    summarise,
    sweep_phase,
    timer_time,
    unpack,
)
from tests.unit.fakes import ManualClock

HORIZON, RETENTION, PARK = 600_000, 86_520_000, 65_000


def pending(event_time: int) -> PendingOutcome:
    return PendingOutcome(event_time, 10.0, [1.0], 0.1, "APPROVE", "v1", "champion", 0, None,
                          None, None)  # fmt: skip


def test_the_earliest_deadline_wins() -> None:
    state = new_scoring_state(FeatureEngine().new_state())
    assert next_deadline(state, RETENTION) > 2**61  # nothing due, ever
    state.features.newest = 1_000
    assert next_deadline(state, RETENTION) == 1_000 + RETENTION
    entries: list[Any] = [pending_entry(pending(5_000))]
    state.due = summarise(entries, HORIZON, PARK, 0)
    assert next_deadline(state, RETENTION) == timer_time(5_000 + HORIZON)
    entries.append(closed_entry(2_000, "labelled"))
    state.due = summarise(entries, HORIZON, PARK, 0)
    assert next_deadline(state, RETENTION) == timer_time(5_000 + HORIZON)
    entries.append(closed_entry(-700_000, "expired"))
    state.due = summarise(entries, HORIZON, PARK, 0)
    assert next_deadline(state, RETENTION) == closed_deadline(-700_000, HORIZON)
    entries.append(parked_entry(ParkedLabel(True, -600_000, b"x", "labels", 0, 1)))
    state.due = summarise(entries, HORIZON, PARK, 0)
    assert next_deadline(state, RETENTION) == closed_deadline(-700_000, HORIZON)  # none parked
    state.parked, state.parked_ids = 1, None  # parked, as read back: which one is not known
    assert next_deadline(state, RETENTION) == -600_000 + PARK
    # Known, the parked labels' own deadlines count, not the summary's lower bound.
    state.parked_ids = {"e2": -500_000 + PARK}
    assert next_deadline(state, RETENTION) == -500_000 + PARK
    state.parked_ids = {}
    assert next_deadline(state, RETENTION) == closed_deadline(-700_000, HORIZON)


def test_closed_entries_are_forgotten_on_a_quarter_horizon_step_never_early() -> None:
    step = HORIZON // 4
    assert closed_deadline(0, HORIZON) == 2 * HORIZON
    assert closed_deadline(1, HORIZON) == 2 * HORIZON + step
    assert closed_deadline(-step - 1, HORIZON) == 2 * HORIZON - step
    assert closed_deadline(0, 20_000) == 40_000  # a short horizon: one timer step
    assert closed_deadline(1, 20_000) == 40_000 + TIMER_STEP_MS
    # Each user on a grid of its own, shifted by whole timer steps, never early either.
    phases = {sweep_phase(f"u-{i:06d}", HORIZON) for i in range(1_000)}
    assert phases == set(range(0, step, TIMER_STEP_MS))
    assert closed_deadline(0, HORIZON, 30_000) == 2 * HORIZON + 30_000
    assert closed_deadline(30_000 - 2 * HORIZON, HORIZON, 30_000) == 30_000
    assert closed_deadline(30_001 - 2 * HORIZON, HORIZON, 30_000) == 30_000 + step


def test_a_firing_is_due_only_when_the_summary_says_something_is() -> None:
    state = new_scoring_state(FeatureEngine().new_state())
    now = state.features.newest = 10**12
    due = state.due
    assert due is not None and not is_due(state, now + RETENTION - 1, RETENTION, 2)
    assert is_due(state, now + RETENTION, RETENTION, 2)  # idle: the user expires
    due.add_pending(now + 1)
    assert not is_due(state, now + 1, RETENTION, 2)  # rounded up to the timer step
    assert is_due(state, timer_time(now + 1), RETENTION, 2)
    due.add_pending(now + 2)
    due.add_pending(now + 3_000_000)
    assert is_due(state, 0, RETENTION, 2)  # three pending, more than the cap of two
    assert due.remove_pending(now + 3_000_000)
    assert due.remove_pending(now + 2) and due.remove_pending(now + 1)
    assert not due.remove_pending(now + 1)  # never counted: the summary is wrong
    assert due.pending == {} and not is_due(state, now + 10**6, RETENTION, 2)
    due.add_parked(now + 500)
    assert not is_due(state, now + 10**6, RETENTION, 2)  # no label parked any more
    state.parked, state.parked_ids = 1, None  # as read back: which one is not known
    assert is_due(state, now + 500, RETENTION, 2) and not is_due(state, now + 499, RETENTION, 2)
    state.parked_ids = {"e1": now + 700}  # known: the one parked label's own deadline
    assert is_due(state, now + 700, RETENTION, 2) and not is_due(state, now + 699, RETENTION, 2)
    due.add_closed(now + 450)
    due.add_closed(now + 400)
    assert is_due(state, now + 400, RETENTION, 2) and not is_due(state, now + 399, RETENTION, 2)
    state.due = None
    assert is_due(state, 0, RETENTION, 2)  # unknown: walk


def test_timers_fire_on_whole_steps_never_before_the_deadline() -> None:
    assert timer_time(TIMER_STEP_MS) == TIMER_STEP_MS
    assert timer_time(TIMER_STEP_MS + 1) == 2 * TIMER_STEP_MS
    assert timer_time(-TIMER_STEP_MS - 1) == -TIMER_STEP_MS * 1


def test_state_and_join_entries_survive_a_pickle_round_trip() -> None:
    engine = FeatureEngine()
    state = ScoringState(engine.new_state(), timer_at=42, parked=1)
    copy = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    assert (copy.features, copy.timer_at, copy.parked) == (state.features, 42, 1)
    assert copy.due is None  # as a value pickled before the summary existed reads back
    known = new_scoring_state(engine.new_state())
    assert known.due is not None
    known.due.add_pending(HORIZON)
    known.due.add_closed(7)
    known.due.add_parked(9)
    copy = pickle.loads(pickle.dumps(known, protocol=pickle.HIGHEST_PROTOCOL))
    assert copy.due == DueSummary({HORIZON: 1}, 7, 9)
    label = ParkedLabel(True, 7, b"x", "labels", 0, 1)
    full = pending(5_000)
    for entry in (pending_entry(full), closed_entry(2_000, "labelled"), parked_entry(label)):
        assert pickle.loads(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)) == entry
    assert pending_outcome(pending_entry(full)) == full
    assert parked_label(parked_entry(label)) == label


def test_a_pending_outcome_packs_and_unpacks_exactly() -> None:
    full = PendingOutcome(1_767_225_600_123, 12.5, [0.1 * i for i in range(21)], 0.25,
                          "DECLINE", "fraud-lgbm-2", "candidate", 10, 0.75, 0.5,
                          "river-logistic-000000100")  # fmt: skip
    assert unpack(pack(full)) == full
    assert unpack(pack(pending(7))) == pending(7)  # the Nones survive too


@settings(max_examples=200, deadline=None)
@given(
    vector=st.lists(st.floats(allow_nan=False), max_size=40),
    event_time=st.integers(0, 2**62),
    scores=st.tuples(st.floats(0, 1), st.none() | st.floats(0, 1), st.none() | st.floats(0, 1)),
)
def test_a_packed_outcome_keeps_the_stored_layout(
    vector: list[float], event_time: int, scores: tuple[float, float | None, float | None]
) -> None:
    """The bytes checkpoints and savepoints already hold: the head, then the vector as
    ``array("d")`` writes it (little-endian here), whatever the vector's length."""
    score, champion, challenger = scores
    version = None if challenger is None else "c-1"
    outcome = PendingOutcome(event_time, 3.5, vector, score, "REVIEW", "m-1", "champion", 0,
                             champion, challenger, version)  # fmt: skip
    head = struct.pack(
        "<qddddBBB", event_time, 3.5, score,
        math.nan if champion is None else champion,
        math.nan if challenger is None else challenger, 1, 0, 0,
    )  # fmt: skip
    data, model_version, challenger_version = pack(outcome)
    assert data == head + array("d", vector).tobytes()
    assert (model_version, challenger_version) == (
        outcome.model_version, outcome.challenger_version,
    )  # fmt: skip
    assert unpack(pack(outcome)) == outcome


class _Keys:
    """Flink's current key, as ``batches.KeySwitch`` sets it, counting the switches."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.switches = 0

    def to(self, user: str) -> None:
        if user != self.current:
            self.current = user
            self.switches += 1

    def forget_current(self) -> None:
        self.current = None

    def assume(self, user: str) -> None:
        self.current = user


class _FakeValueState:
    """Flink's keyed value state: one value per current key, counting the calls into the JVM."""

    def __init__(self, keys: _Keys, stored: dict[str, Any] | None = None) -> None:
        self.keys = keys
        self.stored: dict[str, Any] = dict(stored or {})
        self.reads = self.writes = 0

    def value(self) -> Any:
        self.reads += 1
        return self.stored.get(self.keys.current)  # type: ignore[arg-type]

    def update(self, value: Any) -> None:
        self.writes += 1
        self.stored[self.keys.current] = value  # type: ignore[index]

    def clear(self) -> None:
        self.stored.pop(self.keys.current, None)  # type: ignore[arg-type]


def _writer(keys: _Keys, users: Any = None, join: Any = None) -> Any:
    """The operator's state writer, over the fakes, through the Python twin of the JVM side."""
    from streamscore.job.state_writes import PythonStateWrites, StateWriter

    return StateWriter(PythonStateWrites(keys, users, join), keys)


def _same(stored: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Flink's state holds copies (pickled and read back): equal when they pickle the same."""
    return {k: pickle.dumps(v) for k, v in stored.items()} == {
        k: pickle.dumps(v) for k, v in expected.items()
    }


def _new_state(timer_at: int = -1) -> Any:
    from streamscore.job.state import ScoringState

    return ScoringState(FeatureEngine().new_state(), timer_at=timer_at)


def test_the_state_cache_reads_once_and_writes_through_when_not_deferred() -> None:
    from streamscore.job.state import UserStateCache

    keys = _Keys()
    backing = _FakeValueState(keys)
    cache = UserStateCache(backing, keys, capacity=2, deferred=False, writer=_writer(keys, backing))
    assert cache.get("a") is None and backing.reads == 1  # an unknown user is not remembered
    state = _new_state()
    cache.put("a", state)
    assert cache.get("a") is state and cache.get("a") is state
    assert backing.reads == 1 and backing.writes == 1 and _same(backing.stored, {"a": state})
    assert backing.stored["a"] is not state  # written pickled, as Flink's state holds it
    cache.put("b", state)
    cache.put("c", state)  # over capacity: "a", the least recently used, goes
    assert len(cache) == 2 and _same({"a": cache.get("a")}, {"a": state}) and backing.reads == 2
    cache.clear("a")
    assert "a" not in backing.stored and cache.get("a") is None
    assert not cache.changed()


def test_deferred_state_is_written_once_per_user_under_that_users_key() -> None:
    from streamscore.job.state import UserStateCache

    keys = _Keys()
    backing = _FakeValueState(keys)
    writer = _writer(keys, backing)
    cache = UserStateCache(backing, keys, capacity=10, deferred=True, writer=writer)
    a, b = _new_state(1), _new_state(2)
    for _ in range(3):  # three records each: nothing reaches Flink's state yet
        cache.put("a", a)
        cache.put("b", b)
    assert backing.writes == 0 and cache.get("a") is a and cache.changed() == {"a", "b"}
    for user in sorted(cache.changed()):
        cache.stage(user)
    assert writer.flush() == 2 and writer.flushes == 1  # both users in one call
    assert backing.writes == 2 and _same(backing.stored, {"a": a, "b": b}) and not cache.changed()
    cache.stage("a")  # unchanged since: not written again
    assert writer.flush() == 0 and backing.writes == 2


def test_a_changed_user_leaving_the_cache_is_written_first() -> None:
    from streamscore.job.state import UserStateCache

    keys = _Keys()
    backing = _FakeValueState(keys)
    cache = UserStateCache(backing, keys, capacity=2, deferred=True, writer=_writer(keys, backing))
    a = _new_state(1)
    cache.put("a", a)
    cache.put("b", _new_state(2))
    cache.put("c", _new_state(3))  # "a" goes, and is written under its own key
    assert _same(backing.stored, {"a": a}) and cache.changed() == {"b", "c"}
    # read back from Flink's state
    assert _same({"a": cache.get("a")}, {"a": a}) and backing.reads == 1
    cache.clear("b")  # cleared: its waiting write is dropped, not made after
    assert "b" not in cache.changed() and "b" not in backing.stored


def test_without_a_cache_nothing_is_deferred() -> None:
    from streamscore.job.state import UserStateCache

    keys = _Keys()
    backing = _FakeValueState(keys)
    cache = UserStateCache(backing, keys, capacity=0, deferred=True, writer=_writer(keys, backing))
    state = _new_state()
    cache.put("a", state)
    assert _same(backing.stored, {"a": state}) and not cache.changed()


def test_a_new_cache_reads_what_flink_restored() -> None:
    from streamscore.job.state import UserStateCache

    keys = _Keys()
    restored = _new_state(42)
    backing = _FakeValueState(keys, {"a": restored})
    cache = UserStateCache(backing, keys, 10, deferred=True, writer=_writer(keys, backing))
    assert cache.get("a") is restored and cache.misses == 1 and cache.hits == 0
    assert cache.get("b") is None and keys.current == "b"  # read under the user's own key


def test_the_change_order_gives_users_by_their_last_change_oldest_first_and_once() -> None:
    from streamscore.job.state import ChangeOrder

    order = ChangeOrder()
    for user in ("a", "b", "c", "d"):
        order.touch(user)
    order.touch("a")  # changed again: now the newest
    order.forget("b")  # written meanwhile
    assert order.oldest(1) == ["c"] and len(order) == 2
    order.touch("e")
    assert order.oldest(5) == ["d", "a", "e"] and order.oldest(5) == [] and len(order) == 0
    order.touch("d")  # written, then changed again: it waits again
    assert order.oldest(5) == ["d"]
    for user in ("x", "y", "x"):
        order.touch(user)
    order.forget("x")
    order.forget("y")  # all written (a write-out at the barrier): nothing is left queued
    assert len(order) == 0 and not order._order


def test_users_written_ahead_are_written_as_they_are_and_again_when_changed_again() -> None:
    from streamscore.job.state import UserStateCache

    keys = _Keys()
    backing = _FakeValueState(keys)
    writer = _writer(keys, backing)
    cache = UserStateCache(backing, keys, 10, deferred=True, writer=writer)
    a, b = _new_state(1), _new_state(2)
    cache.put("a", a)
    cache.put("b", b)
    cache.put("a", a)  # "a" changed again: "b" now waits longest
    ahead = cache.oldest_changed(1)
    assert ahead == ["b"] and backing.writes == 0
    for user in ahead:
        cache.stage(user)
    assert writer.flush() == 1 and _same(backing.stored, {"b": b}) and cache.changed() == {"a"}
    b.timer_at = 20  # changed after it was written: written again, as it is now
    cache.put("b", b)
    assert cache.changed() == {"a", "b"} and cache.oldest_changed(10) == ["a", "b"]
    for user in sorted(cache.changed()):  # the barrier's write-out stages what is left
        cache.stage(user)
    assert writer.flush() == 2 and backing.stored["b"].timer_at == 20
    assert _same(backing.stored, {"a": a, "b": b}) and not cache.changed()
    cache.put("c", _new_state(3))
    cache.clear("c")  # cleared: nothing left to write ahead
    assert cache.oldest_changed(10) == []


def test_changes_made_while_unordered_wait_for_the_barrier_not_for_a_write_ahead() -> None:
    from streamscore.job.state import JoinMap, UserStateCache

    keys = _Keys()
    backing, join_backing = _FakeValueState(keys), _FakeMapState(keys)
    writer = _writer(keys, backing, join_backing)
    cache = UserStateCache(backing, keys, 10, deferred=True, writer=writer)
    join = JoinMap(join_backing, keys, 10, deferred=True, writer=writer)
    cache.put("a", _new_state(1))
    join.put("a", "e1", pending_entry(pending(1)))
    cache.ordered = join.ordered = False  # a full batch: a backlog drains
    cache.put("b", _new_state(2))
    join.put("b", "e2", pending_entry(pending(2)))
    assert cache.oldest_changed(10) == ["a"] and join.oldest_changed(10) == ["a"]
    assert cache.changed() == {"a", "b"} and set(join.changed()) == {"a", "b"}
    for user in ("a", "b"):  # the barrier's write-out still writes every change
        cache.stage(user)
        join.stage(user)
    assert writer.flush() == 2 and set(backing.stored) == {"a", "b"}
    assert set(join_backing.entries) == {("a", "e1"), ("b", "e2")}


def test_the_state_cache_keeps_the_order_of_use_once_half_full() -> None:
    from streamscore.job.state import UserStateCache

    keys = _Keys()
    backing = _FakeValueState(keys)
    cache = UserStateCache(backing, keys, capacity=4, deferred=False, writer=_writer(keys, backing))
    for user in ("a", "b", "c"):
        cache.put(user, _new_state())
    assert cache.get("a") is not None  # past half full: "a" is now the most recently used
    cache.put("d", _new_state())
    cache.put("e", _new_state())  # over capacity: "b", the least recently used, goes
    reads = backing.reads
    assert cache.get("a") is not None and cache.get("c") is not None and backing.reads == reads
    assert cache.get("b") is not None and backing.reads == reads + 1  # read back from Flink


def test_the_state_cache_ignores_use_until_half_full() -> None:
    """Below half full nothing can leave the cache, so use is not tracked there: the first to
    leave are those not used since, in the order they came."""
    from streamscore.job.state import UserStateCache

    keys = _Keys()
    backing = _FakeValueState(keys)
    cache = UserStateCache(backing, keys, capacity=4, deferred=False, writer=_writer(keys, backing))
    cache.put("a", _new_state())
    cache.put("b", _new_state())
    assert cache.get("a") is not None  # half full: not tracked
    for user in ("c", "d", "e"):
        cache.put(user, _new_state())
    reads = backing.reads
    assert cache.get("b") is not None and backing.reads == reads
    assert cache.get("a") is not None and backing.reads == reads + 1


def test_writing_ahead_starts_one_window_before_the_barrier_is_due() -> None:
    from streamscore.job.state import WriteAheadWindow

    clock = ManualClock()
    window = WriteAheadWindow(interval_s=5.0, window_s=1.0, clock=clock)
    clock.now += 3.9
    assert not window.is_open()
    clock.now += 0.1  # 1 s before the first barrier is due
    assert window.is_open()
    clock.now += 2.0  # the barrier comes late: still open until it comes
    assert window.is_open()
    window.barrier()
    assert not window.is_open()
    clock.now += 4.0
    assert window.is_open()
    assert WriteAheadWindow(5.0, 5.0, clock).is_open()  # a window of the whole interval
    assert not WriteAheadWindow(5.0, 0.0, clock).is_open()


def test_without_deferred_writes_nothing_waits_to_be_written_ahead() -> None:
    from streamscore.job.state import UserStateCache

    keys = _Keys()
    backing = _FakeValueState(keys)
    cache = UserStateCache(backing, keys, 10, deferred=False, writer=_writer(keys, backing))
    cache.put("a", _new_state())
    assert cache.oldest_changed(5) == [] and backing.writes == 1


class _FakeMapState:
    """Flink's keyed map state: entries per current key, counting reads and writes."""

    def __init__(self, keys: _Keys) -> None:
        self.keys = keys
        self.entries: dict[tuple[str, str], Any] = {}
        self.reads = self.writes = 0

    def get(self, key: str) -> Any:
        self.reads += 1
        return self.entries.get((self.keys.current, key))  # type: ignore[arg-type]

    def put(self, key: str, value: Any) -> None:
        self.writes += 1
        self.entries[(self.keys.current, key)] = value  # type: ignore[index]

    def remove(self, key: str) -> None:
        self.writes += 1
        self.entries.pop((self.keys.current, key), None)  # type: ignore[arg-type]

    def items(self) -> Any:
        return [(k, v) for (user, k), v in self.entries.items() if user == self.keys.current]


def test_the_join_map_answers_pending_entries_and_writes_through_when_not_deferred() -> None:
    from streamscore.job.state import JoinMap

    keys = _Keys()
    backing = _FakeMapState(keys)
    join = JoinMap(backing, keys, capacity=2, deferred=False, writer=_writer(keys, join=backing))
    entry = pending_entry(pending(5_000))
    join.put("u1", "e1", entry)
    assert join.get("u1", "e1") == entry and backing.reads == 0
    assert backing.entries[("u1", "e1")] == entry  # written through
    join.put("u1", "e1", closed_entry(5_000, "labelled"))  # closed: no longer cached
    assert join.get("u1", "e1") == closed_entry(5_000, "labelled") and backing.reads == 1
    for i in range(3):  # over capacity: the oldest pending entry is read back from the map
        join.put("u1", f"p{i}", pending_entry(pending(i)))
    assert join.get("u1", "p0") == pending_entry(pending(0)) and backing.reads == 2
    assert join.get("u1", "p2") == pending_entry(pending(2)) and backing.reads == 2
    join.remove("u1", "p2")
    assert ("u1", "p2") not in backing.entries and join.get("u1", "p2") is None


def test_the_join_map_counts_its_reads_of_flinks_state_found_or_not() -> None:
    """``streamscore_join_state_reads``: only reads that reach Flink's state count, by whether
    they found an entry; what waits to be written and the pending cache answer uncounted."""
    from streamscore.job.state import JoinMap
    from streamscore.metric_values import LabelledCounter

    keys = _Keys()
    backing = _FakeMapState(keys)
    reads = LabelledCounter("streamscore_join_state_reads", "", ("found",))
    writer = _writer(keys, join=backing)
    join = JoinMap(backing, keys, 1, deferred=True, writer=writer, state_reads=reads)
    assert join.get("u1", "e0") is None  # a label before its event
    join.put("u1", "e1", fresh_pending_entry(pending(1)))
    join.put("u1", "e2", fresh_pending_entry(pending(2)))
    assert join.get("u1", "e1") is not None  # waiting to be written
    join.stage("u1")
    writer.flush()
    assert join.get("u1", "e2") == pending_entry(pending(2))  # the pending cache (its last one)
    assert reads.labels("true").value == 0 and reads.labels("false").value == 1
    assert join.get("u1", "e1") == pending_entry(pending(1))  # left the cache: read
    assert join.get("u1", "e9") is None
    assert reads.labels("true").value == 1 and reads.labels("false").value == 2
    assert backing.reads == 3


def test_a_fresh_pending_entry_is_written_packed_when_not_deferred() -> None:
    from streamscore.job.state import JoinMap

    keys = _Keys()
    backing = _FakeMapState(keys)
    join = JoinMap(backing, keys, capacity=2, deferred=False, writer=_writer(keys, join=backing))
    join.put("u1", "e1", fresh_pending_entry(pending(5_000)))
    assert backing.entries[("u1", "e1")] == pending_entry(pending(5_000))


def _deferred_join_map(capacity: int) -> tuple[_Keys, _FakeMapState, Any, Any]:
    """A JoinMap whose changes wait, over a fake map state: (keys, map state, writer, map)."""
    from streamscore.job.state import JoinMap

    keys = _Keys()
    backing = _FakeMapState(keys)
    writer = _writer(keys, join=backing)
    return keys, backing, writer, JoinMap(backing, keys, capacity, deferred=True, writer=writer)


def test_deferred_join_changes_are_read_back_and_written_last_one_wins() -> None:
    keys, backing, writer, join = _deferred_join_map(capacity=1)
    join.put("u1", "e1", pending_entry(pending(1)))
    join.put("u1", "e2", pending_entry(pending(2)))  # over capacity, but still waiting
    join.put("u2", "e3", parked_entry(ParkedLabel(True, 3, b"p", "labels", 0, 7)))
    assert backing.writes == 0 and join.changed_entries == 3
    assert join.get("u1", "e1") == pending_entry(pending(1)) and backing.reads == 0
    join.put("u1", "e1", closed_entry(1, "labelled"))  # labelled before any write
    join.remove("u1", "e2")
    assert join.get("u1", "e2") is None and backing.reads == 0
    assert join.changed_entries == 3 and set(join.changed()) == {"u1", "u2"}
    switches = keys.switches
    join.stage("u1")
    assert writer.flush() == 1
    assert keys.switches == switches + 1 and backing.writes == 2  # one switch, one write each
    assert backing.entries == {("u1", "e1"): closed_entry(1, "labelled")}
    assert join.changed_entries == 1 and set(join.changed()) == {"u2"}
    # A timer walks its user's entries: Flink's state with what waits on top, nothing written.
    parked = parked_entry(ParkedLabel(True, 3, b"p", "labels", 0, 7))
    assert join.items("u2") == [("e3", parked)] and keys.current == "u2"
    assert join.changed_entries == 1 and backing.writes == 2
    join.remove("u1", "e1")  # waiting: the walk no longer shows it, Flink's state still has it
    assert join.items("u1") == [] and ("u1", "e1") in backing.entries
    join.stage("u1")
    join.stage("u2")
    assert writer.flush() == 2 and writer.flushes == 2
    assert backing.entries == {("u2", "e3"): parked} and not join.changed()


def test_join_entries_written_ahead_are_written_and_again_when_changed_again() -> None:
    _, backing, writer, join = _deferred_join_map(capacity=10)
    join.put("u1", "e1", pending_entry(pending(1)))
    join.put("u2", "e2", pending_entry(pending(2)))
    ahead = join.oldest_changed(1)
    assert ahead == ["u1"]
    for user in ahead:
        join.stage(user)
    assert writer.flush() == 1 and backing.entries == {("u1", "e1"): pending_entry(pending(1))}
    join.put("u1", "e1", closed_entry(1, "labelled"))  # its label: written again
    assert join.oldest_changed(10) == ["u2", "u1"]
    join.stage("u2")
    join.stage("u1")
    assert writer.flush() == 2 and not join.changed() and join.changed_entries == 0
    assert backing.entries == {
        ("u1", "e1"): closed_entry(1, "labelled"),
        ("u2", "e2"): pending_entry(pending(2)),
    }
    join.stage("u1")  # nothing waits: nothing written, and nothing left to write ahead
    assert writer.flush() == 0 and join.oldest_changed(10) == []


def test_the_pending_cache_holds_entries_once_written() -> None:
    _, backing, writer, join = _deferred_join_map(capacity=1)
    join.put("u1", "e1", fresh_pending_entry(pending(1)))
    join.put("u1", "e2", fresh_pending_entry(pending(2)))
    join.put("u1", "e1", closed_entry(1, "labelled"))  # made and closed between write-outs
    assert not join._pending  # the waiting changes answer reads: nothing cached yet
    join.stage("u1")
    writer.flush()
    assert join._pending == {("u1", "e2"): pending_entry(pending(2))}  # only what stays pending
    assert join.get("u1", "e2") == pending_entry(pending(2)) and backing.reads == 0
    assert join.get("u1", "e1") == closed_entry(1, "labelled") and backing.reads == 1
    join.put("u1", "e3", fresh_pending_entry(pending(3)))
    join.put("u1", "e2", closed_entry(2, "labelled"))  # closed: leaves the cache when written
    assert join.get("u1", "e2") == closed_entry(2, "labelled") and backing.reads == 1
    join.stage("u1")
    writer.flush()
    assert join._pending == {("u1", "e3"): pending_entry(pending(3))}
    join.put("u1", "e4", fresh_pending_entry(pending(4)))
    join.stage("u1")
    writer.flush()  # over capacity: the oldest written goes, and is read back when asked for
    assert join._pending == {("u1", "e4"): pending_entry(pending(4))}
    assert join.get("u1", "e3") == pending_entry(pending(3)) and backing.reads == 2


def test_a_fresh_pending_entry_answers_unpacked_until_written_then_packed() -> None:
    _, backing, writer, join = _deferred_join_map(capacity=10)
    fresh1, fresh2 = fresh_pending_entry(pending(1)), fresh_pending_entry(pending(2))
    join.put("u1", "e1", fresh1)
    join.put("u1", "e2", fresh2)
    assert join.get("u1", "e1") is fresh1 and pending_outcome(fresh1) == pending(1)
    assert pending_event_time(fresh1) == 1 == pending_event_time(pending_entry(pending(1)))
    assert entry_deadline(fresh2, 10, 0) == 12 == entry_deadline(pending_entry(pending(2)), 10, 0)
    join.put("u1", "e1", closed_entry(1, "labelled"))  # labelled before it was written
    join.stage("u1")
    assert writer.flush() == 1
    # Flink's state gets the forms it keeps: the closed entry, and the other one packed.
    assert backing.entries == {
        ("u1", "e1"): closed_entry(1, "labelled"),
        ("u1", "e2"): pending_entry(pending(2)),
    }
    # Once written, the pending cache answers with the packed form, without a read.
    assert join.get("u1", "e2") == pending_entry(pending(2)) and backing.reads == 0
    assert pending_outcome(join.get("u1", "e2")) == pending(2)
