"""The drift monitor's per-event counting in C (``bin_counts``) against its definition
(``drift.bin_of``), on any edges and values: the counts must be the same bins."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore.monitoring.bin_counts import BinCounter, new_counts
from streamscore.monitoring.drift import bin_of

_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 5.0, math.nan, math.inf, -math.inf]),
)
_edges = st.lists(
    st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=0, max_size=12
).map(sorted)


def _expected(
    feature_edges: list[list[float]],
    score_edges: list[float] | None,
    values: list[float],
    score: float | None,
) -> list[int]:
    bins = [len(edges) + 2 for edges in feature_edges]
    width = sum(bins) + (len(score_edges) + 2 if score_edges is not None else 0)
    counts = [0] * width
    for i, (edges, value) in enumerate(zip(feature_edges, values)):
        counts[sum(bins[:i]) + bin_of(edges, value)] += 1
    if score is not None and score_edges is not None:
        counts[sum(bins) + bin_of(score_edges, score)] += 1
    return counts


@settings(max_examples=300, deadline=None)
@given(
    feature_edges=st.lists(_edges, min_size=0, max_size=6),
    score_edges=st.one_of(st.none(), _edges),
    data=st.data(),
)
def test_counts_are_bin_of_each_feature_and_the_score(
    feature_edges: list[list[float]], score_edges: list[float] | None, data: st.DataObject
) -> None:
    # As many values as features, or fewer or more: only the first features' are counted.
    values = data.draw(st.lists(_values, min_size=0, max_size=len(feature_edges) + 2))
    score = data.draw(st.one_of(st.none(), _values))
    bins = [len(edges) + 2 for edges in feature_edges]
    offsets = [sum(bins[:i]) for i in range(len(bins) + 1)]
    counter = BinCounter(feature_edges, score_edges, offsets)
    expected = _expected(feature_edges, score_edges, values, score)
    counts = new_counts(len(expected))
    counter.use(counts)
    counter.count(values, score)
    assert list(counts) == expected
    counter.count(values, score)  # counts add up
    assert list(counts) == [2 * c for c in expected]


def test_integer_values_are_binned_as_their_floats() -> None:
    counter = BinCounter([[1.0, 2.0, 5.0]], None, [0])
    counts = new_counts(5)
    counter.use(counts)
    counter.count([2, 3, 7], None)  # one feature: the other values are not counted
    assert list(counts) == [0, 1, 0, 0, 0]
