"""A window's merged cell is the same whether its buckets are looked up one by one (the window
spans fewer buckets than the map holds) or found by walking the map."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamscore.features.aggregations import Cell, merge_live

cells = st.tuples(
    st.integers(1, 50), st.floats(0, 1e6, allow_nan=False), st.floats(0, 1e4, allow_nan=False)
).map(lambda c: [float(c[0]), c[1], c[2]])
bucket_maps = st.dictionaries(st.integers(100, 160), cells, max_size=40)


def _by_definition(buckets: dict[int, list[float]], k_first: int, k_last: int) -> Cell:
    live = [cell for k, cell in buckets.items() if k_first < k <= k_last]
    return Cell(
        sum(c[0] for c in live), sum(c[1] for c in live), max((c[2] for c in live), default=0.0)
    )


@given(bucket_maps, st.integers(90, 170), st.integers(0, 70))
def test_the_merged_cell_is_the_live_buckets(
    buckets: dict[int, list[float]], k_last: int, span: int
) -> None:
    k_first = k_last - span
    merged = merge_live(buckets, k_first, k_last)
    expected = _by_definition(buckets, k_first, k_last)
    assert merged.events == expected.events
    assert merged.total == pytest.approx(expected.total, rel=1e-12, abs=1e-9)
    assert merged.top == expected.top


def test_both_ways_are_taken() -> None:
    """The 1-minute window's case (6 live buckets, 17 held) and the day's (24 spanned, 1 held)."""
    held = {k: [1.0, float(k), float(k)] for k in range(100, 117)}
    assert merge_live(held, 110, 116) == Cell(6.0, sum(range(111, 117)), 116.0)
    assert merge_live({105: [2.0, 3.0, 2.5]}, 90, 114) == Cell(2.0, 3.0, 2.5)
    assert merge_live({}, 90, 114) == Cell(0.0, 0.0, 0.0)
