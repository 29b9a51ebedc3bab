"""The scoring operator's per-user state: its deadlines and how it pickles."""

import pickle
from typing import Any

from streamscore.features.engine import FeatureEngine
from streamscore.job.state import (
    TIMER_STEP_MS,
    ParkedLabel,
    PendingOutcome,
    ScoringState,
    closed_entry,
    next_deadline,
    pack,
    parked_entry,
    parked_label,
    pending_entry,
    pending_outcome,
    timer_time,
    unpack,
)

HORIZON, RETENTION, PARK = 600_000, 86_520_000, 65_000


def pending(event_time: int) -> PendingOutcome:
    return PendingOutcome(event_time, 10.0, [1.0], 0.1, "APPROVE", "v1", "champion", 0, None,
                          None, None)  # fmt: skip


def test_the_earliest_deadline_wins() -> None:
    state = ScoringState(FeatureEngine().new_state())
    entries: list[Any] = []
    assert next_deadline(state, entries, RETENTION, HORIZON, PARK) > 2**61  # nothing due, ever
    state.features.newest = 1_000
    assert next_deadline(state, entries, RETENTION, HORIZON, PARK) == 1_000 + RETENTION
    entries.append(pending_entry(pending(5_000)))
    assert next_deadline(state, entries, RETENTION, HORIZON, PARK) == 5_000 + HORIZON
    entries.append(closed_entry(2_000, "labelled"))
    assert next_deadline(state, entries, RETENTION, HORIZON, PARK) == 5_000 + HORIZON
    entries.append(closed_entry(-700_000, "expired"))
    assert next_deadline(state, entries, RETENTION, HORIZON, PARK) == -700_000 + 2 * HORIZON
    entries.append(parked_entry(ParkedLabel(True, -600_000, b"x", "labels", 0, 1)))
    assert next_deadline(state, entries, RETENTION, HORIZON, PARK) == -600_000 + PARK


def test_timers_fire_on_whole_steps_never_before_the_deadline() -> None:
    assert timer_time(TIMER_STEP_MS) == TIMER_STEP_MS
    assert timer_time(TIMER_STEP_MS + 1) == 2 * TIMER_STEP_MS
    assert timer_time(-TIMER_STEP_MS - 1) == -TIMER_STEP_MS * 1


def test_state_and_join_entries_survive_a_pickle_round_trip() -> None:
    engine = FeatureEngine()
    state = ScoringState(engine.new_state(), timer_at=42, parked=1)
    copy = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    assert (copy.features, copy.timer_at, copy.parked) == (state.features, 42, 1)
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


class _FakeValueState:
    """Flink's keyed value state for one current key, counting the calls into the JVM."""

    def __init__(self, stored: Any = None) -> None:
        self.stored, self.reads, self.writes = stored, 0, 0

    def value(self) -> Any:
        self.reads += 1
        return self.stored

    def update(self, value: Any) -> None:
        self.writes += 1
        self.stored = value

    def clear(self) -> None:
        self.stored = None


def test_the_state_cache_reads_once_and_writes_every_change_through() -> None:
    from streamscore.features.engine import FeatureEngine
    from streamscore.job.state import ScoringState, UserStateCache

    backing = _FakeValueState()
    cache = UserStateCache(backing, capacity=2)
    assert cache.get("a") is None and backing.reads == 1  # an unknown user is not remembered
    state = ScoringState(FeatureEngine().new_state())
    cache.put("a", state)
    assert cache.get("a") is state and cache.get("a") is state
    assert backing.reads == 1 and backing.writes == 1 and backing.stored is state
    cache.put("b", state)
    cache.put("c", state)  # over capacity: "a", the least recently used, goes
    assert len(cache) == 2 and cache.get("a") is state and backing.reads == 2
    cache.clear("a")
    assert backing.stored is None and cache.get("a") is None


def test_a_new_cache_reads_what_flink_restored() -> None:
    from streamscore.features.engine import FeatureEngine
    from streamscore.job.state import ScoringState, UserStateCache

    restored = ScoringState(FeatureEngine().new_state(), timer_at=42)
    cache = UserStateCache(_FakeValueState(restored), capacity=10)
    assert cache.get("a") is restored and cache.misses == 1 and cache.hits == 0


class _FakeMapState:
    """Flink's keyed map state for one current key, counting reads."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}
        self.reads = 0

    def get(self, key: str) -> Any:
        self.reads += 1
        return self.entries.get(key)

    def put(self, key: str, value: Any) -> None:
        self.entries[key] = value

    def remove(self, key: str) -> None:
        self.entries.pop(key, None)

    def items(self) -> Any:
        return list(self.entries.items())


def test_the_join_map_answers_pending_entries_itself_and_writes_everything_through() -> None:
    from streamscore.job.state import JoinMap

    backing = _FakeMapState()
    join = JoinMap(backing, capacity=2)
    entry = pending_entry(pending(5_000))
    join.put("u1", "e1", entry)
    assert join.get("u1", "e1") == entry and backing.reads == 0
    assert backing.entries["e1"] == entry  # written through
    join.put("u1", "e1", closed_entry(5_000, "labelled"))  # closed: no longer cached
    assert join.get("u1", "e1") == closed_entry(5_000, "labelled") and backing.reads == 1
    for i in range(3):  # over capacity: the oldest pending entry is read back from the map
        join.put("u1", f"p{i}", pending_entry(pending(i)))
    assert join.get("u1", "p0") == pending_entry(pending(0)) and backing.reads == 2
    assert join.get("u1", "p2") == pending_entry(pending(2)) and backing.reads == 2
    join.remove("u1", "p2")
    assert "p2" not in backing.entries and join.get("u1", "p2") is None
