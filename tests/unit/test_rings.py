"""A numeric window's ring of cells (features/rings.py) against the window's definition, computed
from the raw list of earlier events: the same count, sum and max, exactly, for any order of
arrival, including events late by more than the ring holds and gaps longer than it."""

from __future__ import annotations

import pickle
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore.features.definitions import FeatureSet, NumericAggregate, Window
from streamscore.features.engine import FeatureEngine
from streamscore.features.rings import (
    AGGREGATIONS,
    merge_add_and_emit,
    new_cells,
    pack,
    ring_size,
    unpack,
    window_width,
)

# Doubles per cell and per window's header (C constants in the compiled module).
CELL = window_width(1) - window_width(0)
HEADER = window_width(0)
# A small window so that the ring wraps often: 3 buckets of 10 ms, 20 ms of slack.
BUCKET_MS, LENGTH_MS, SLACK_MS = 10, 30, 20
TINY = FeatureSet(
    version="t",
    windows=(Window("w", LENGTH_MS, BUCKET_MS), Window("v", 40, 20)),
    numeric=(NumericAggregate("amount", ("count", "sum", "max"), ("w", "v")),),
    distinct=(),
    categorical=(),
    ratios=(),
    time_since_previous=False,
    hour_of_day=False,
    retention_slack_ms=SLACK_MS,
)


def by_definition(window: Window, prior: list[tuple[int, float]], t: int) -> tuple[float, ...]:
    """Count, sum and max of the earlier values in the window ending with ``t``'s bucket whose
    bucket has not expired (its end + length + slack after the newest earlier event), each
    bucket's values summed in arrival order and the buckets in bucket order."""
    newest = max((time for time, _ in prior), default=-1)
    k_event = t // window.bucket_ms
    buckets: dict[int, list[float]] = {}
    for time, value in prior:
        k = time // window.bucket_ms
        expired = newest >= 0 and (k + 1) * window.bucket_ms + window.length_ms + SLACK_MS <= newest
        if k_event - window.buckets < k <= k_event and not expired:
            buckets.setdefault(k, []).append(value)
    events, total, top = 0.0, 0.0, 0.0
    for k in sorted(buckets):
        values = buckets[k]
        bucket_sum = values[0]
        for value in values[1:]:
            bucket_sum += value
        events += len(values)
        total += bucket_sum
        top = max(top, max(values))
    return events, total, top


arrivals = st.lists(
    st.tuples(
        st.integers(0, 40),  # the clock moves on by this much
        st.sampled_from([0, 0, 0, 5, 25, 45, 300]),  # how late the event comes
        st.floats(-50, 500, allow_nan=False).map(lambda v: round(v, 2)),
        st.booleans(),  # a long gap before it (past every window and the ring)
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(arrivals)
def test_the_windows_are_their_definition(events: list[tuple[int, int, float, bool]]) -> None:
    engine = FeatureEngine(TINY)
    state = engine.new_state()
    prior: list[tuple[int, float]] = []
    clock = 1_000
    for step, late, value, gap in events:
        clock += step + (500 if gap else 0)
        t = max(0, clock - late)
        got = engine.update(state, {"amount": value, "event_time": t})
        want = [
            *by_definition(TINY.windows[0], prior, t),
            *by_definition(TINY.windows[1], prior, t),
        ]
        assert got[1:] == want, (t, prior)  # exactly: the same additions in the same order
        prior.append((t, value))


def test_a_window_keeps_its_size() -> None:
    engine = FeatureEngine(TINY)
    state = engine.new_state()
    size = len(state.cells)
    assert size == sum(window_width(ring_size(w.length_ms + SLACK_MS, w.bucket_ms))
                       for w in TINY.windows)  # fmt: skip
    for i in range(5_000):
        engine.update(state, {"amount": 1.0, "event_time": i * 7 - (i % 5) * 30})
    assert len(state.cells) == size


def test_a_ring_holds_every_readable_bucket() -> None:
    """The ring's size is the most buckets a read can still count: reach // bucket + 2."""
    assert ring_size(180_000, 10_000) == 20  # the 1-minute window with its 2 minutes of slack
    assert ring_size(50, 10) == 7


ALL = bytes(AGGREGATIONS[name] for name in ("count", "sum", "mean", "max"))


def merge_and_add(cells: array, base: int, k_first: int, k_event: int, value: float) -> list:
    """Count, sum, mean and max of the window's live buckets before ``value`` is folded in."""
    out: list[float] = []
    merge_add_and_emit(out, cells, base, k_first, k_event, value, ALL)
    return out


def test_an_event_older_than_the_ring_is_not_folded_in() -> None:
    ring = 7
    cells = new_cells((ring,))
    merge_and_add(cells, 0, -100, 100, 2.0)
    before = array("d", cells)
    # Bucket 93 lies a whole ring below the head (100): no read can count it again.
    assert merge_and_add(cells, 0, 90, 93, 5.0) == [0.0, 0.0, 0.0, 0.0]
    assert cells == before
    # Bucket 94 is still in the ring.
    assert merge_and_add(cells, 0, 90, 94, 5.0) == [0.0, 0.0, 0.0, 0.0]
    assert merge_and_add(cells, 0, 90, 100, 1.0) == [2.0, 7.0, 3.5, 5.0]


def test_the_aggregations_come_in_the_order_asked_and_an_unknown_code_is_refused() -> None:
    cells = new_cells((7,))
    merge_and_add(cells, 0, -100, 100, 2.0)
    merge_and_add(cells, 0, -100, 100, 6.0)
    out: list[float] = []
    codes = bytes(AGGREGATIONS[name] for name in ("max", "mean", "count", "sum", "max"))
    merge_add_and_emit(out, cells, 0, 90, 100, 1.0, codes)
    assert out == [6.0, 4.0, 2.0, 8.0, 6.0]
    with pytest.raises(ValueError, match="no aggregation has the code 9"):
        merge_add_and_emit([], cells, 0, 90, 100, 1.0, bytes([9]))


def test_cells_that_are_not_a_window_of_doubles_are_refused() -> None:
    cells = new_cells((7,))
    with pytest.raises(IndexError, match="no window at"):
        merge_add_and_emit([], cells, len(cells), 0, 1, 1.0, ALL)
    with pytest.raises(IndexError, match="has a ring of"):
        merge_add_and_emit([], cells[:-1], 0, 0, 1, 1.0, ALL)
    with pytest.raises(TypeError):
        merge_add_and_emit([], array("q", [0] * len(cells)), 0, 0, 1, 1.0, ALL)


@given(arrivals)
def test_packed_cells_read_back_the_same(events: list[tuple[int, int, float, bool]]) -> None:
    engine = FeatureEngine(TINY)
    state = engine.new_state()
    clock = 1_000
    for step, late, value, gap in events:
        clock += step + (500 if gap else 0)
        engine.update(state, {"amount": value, "event_time": max(0, clock - late)})
    packed = pack(state.cells)
    assert unpack(packed) == state.cells
    # Empty cells are left out: at most the kept cells, a count and a header per window.
    kept = sum(1 for i in range(0, len(state.cells)) if _is_count(state.cells, i))
    assert len(packed) == 8 * ((HEADER + 1) * len(engine.rings) + kept * (1 + CELL))
    assert pickle.loads(pickle.dumps(state)) == state


def _is_count(cells: array, i: int) -> bool:
    """Whether ``cells[i]`` is a kept cell's count (walking the windows' layout)."""
    base = 0
    while base < len(cells):
        ring = int(cells[base + 1])
        first = base + HEADER
        if first <= i < first + ring * CELL:
            return (i - first) % CELL == 0 and cells[i] > 0.0
        base = first + ring * CELL
    return False


def test_cut_short_cells_are_refused() -> None:
    cells = new_cells((7, 3))
    merge_and_add(cells, 0, 0, 10, 1.0)
    with pytest.raises(ValueError, match="cut short"):
        unpack(pack(cells)[:-8])


def test_a_cell_outside_its_ring_is_refused() -> None:
    cells = new_cells((7,))
    merge_and_add(cells, 0, 0, 10, 1.0)
    packed = array("d")
    packed.frombytes(pack(cells))
    packed[3] = 7.0  # the kept cell's place: one past the ring
    with pytest.raises(ValueError, match="a cell at 7 of a ring of 7"):
        unpack(packed.tobytes())
