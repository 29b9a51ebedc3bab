"""The scoring operator's filter of users that may have state (``state.KnownUsers``): a user it
has not seen is new without a read of Flink's state, and nothing else changes.

The filter may take an unseen user for a seen one (then it is read, as without the filter),
never the other way round: that would hand a user with state a new one. The operator runs
outside Flink on the fakes of ``bench/operator_cost.py``, through the harness of
``test_timer_summary.py``."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore.config import Settings
from streamscore.job.state import KnownUsers, unpack_users
from streamscore.job.state_writes import PythonStateWrites
from streamscore.resources import RECORD_TYPES, schema

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import operator_cost  # noqa: E402 (bench/ is a folder of scripts, not a package)

from tests.unit.test_timer_summary import EVENTS, _records, _run  # noqa: E402

_USERS = st.lists(st.text(min_size=0, max_size=12), max_size=300)


@given(listed=_USERS, added=_USERS, first=st.integers(1, 64))
@settings(max_examples=60, deadline=None)
def test_every_listed_or_added_user_may_have_state(
    listed: list[str], added: list[str], first: int
) -> None:
    """Whatever the filters' sizes (a first capacity of 1 grows a new filter often), no user
    it was given is ever said to have no state."""
    known = KnownUsers(listed, 0.01, first_capacity=first)
    for user in added:
        known.add(user)
    assert all(known.may_have_state(user) for user in listed + added)


def test_unseen_users_are_mostly_known_to_be_new_and_the_filters_grow() -> None:
    known = KnownUsers([f"u-{i}" for i in range(1_000)], 0.01, first_capacity=2_048)
    assert known.filters == 1
    unseen = [f"other-{i}" for i in range(10_000)]
    taken_for_seen = sum(known.may_have_state(user) for user in unseen)
    assert taken_for_seen < 300  # 1 % expected; 3 % is far beyond chance
    for i in range(1_000, 4_000):  # past the first filter's 2,048
        known.add(f"u-{i}")
    assert known.filters == 2
    assert all(known.may_have_state(f"u-{i}") for i in range(4_000))


def test_without_a_list_of_users_or_with_no_error_allowed_every_user_may_have_state() -> None:
    for known in (KnownUsers(None, 0.01), KnownUsers(["a"], 0.0)):
        known.add("b")
        assert not known.enabled
        assert all(known.may_have_state(user) for user in ("a", "b", "never seen"))


def test_the_listed_users_come_back_as_the_jvm_side_packs_them() -> None:
    """``PythonStateWrites.userKeys`` packs as ``StateWrites.userKeys`` does (length, UTF-8)."""
    state = operator_cost._ValueState()
    for user in ("u-1", "", "ü-ñ", "x" * 300):
        operator_cost._Key.current = user
        state.update({"any": user})
    writes = PythonStateWrites(None, state, None, raw=True)
    assert unpack_users(writes.userKeys("scoring-user-v3") or b"") == ["u-1", "", "ü-ñ", "x" * 300]
    assert PythonStateWrites(None, object(), None).userKeys("scoring-user-v3") is None


def test_a_restored_operator_reads_the_users_it_was_restored_with_and_no_others() -> None:
    """Opened over state that already holds users (restored from a checkpoint or savepoint),
    the operator reads those users' state, and a user not among them with no read at all."""
    s = Settings().with_overrides({"metrics_port": 0, "redis_port": 1})
    function = operator_cost._ScoreEvents(s, {name: schema(name) for name in RECORD_TYPES}, None)
    runtime = operator_cost._RuntimeContext()
    restored = operator_cost._ValueState()
    operator_cost._Key.current = "u-restored"
    from streamscore.features.engine import FeatureEngine
    from streamscore.job.state import new_scoring_state

    stored = new_scoring_state(FeatureEngine().new_state())
    stored.parked = 3
    restored.update(pickle.dumps(stored))
    runtime.get_state = lambda descriptor: restored  # type: ignore[method-assign]
    function.open(runtime)
    try:
        cache = function._scoring._state
        found = cache.get("u-restored")
        assert found is not None and found.parked == 3
        reads = []
        restored.value = lambda: reads.append(operator_cost._Key.current)  # type: ignore[method-assign]
        assert cache.get("u-new") is None
        assert reads == []
    finally:
        function.close()


@pytest.mark.parametrize("cached_users", [50_000, 4])
def test_the_filter_spares_reads_and_changes_no_output(cached_users: int) -> None:
    """The same records with the filter and without (``state_known_users_error=0``): the same
    outputs, label counts and final state; each read it spared is one the run without it made
    and found nothing (every user's first record, and labels before the first event of their
    user). With a cache of four users for the stream's hundred, users leave the cache and are
    read back again and again: the filter must know each of them from its first record on."""
    records = _records(seed=11, events=EVENTS)
    cache = {"state_cache_users": cached_users}
    on = _run(records, walk_always=False, overrides=cache)
    off = _run(records, walk_always=False, overrides={**cache, "state_known_users_error": 0})
    assert on["outputs"] == off["outputs"]
    assert on["labels"] == off["labels"]
    assert on["map"] == off["map"]
    assert on["values"] == off["values"]
    assert off["reads_skipped"].get("user", 0) == off["reads_skipped"].get("join", 0) == 0
    spared_values, spared_entries = on["reads_skipped"]["user"], on["reads_skipped"].get("join", 0)
    assert spared_values >= 100  # the test stream's hundred users, each new once
    assert on["value_reads"] + spared_values == off["value_reads"]
    assert on["reads"] + spared_entries == off["reads"]
