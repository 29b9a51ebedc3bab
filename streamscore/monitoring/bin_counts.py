"""The drift monitor's step per scored event: each variable's bin found and counted in C.

Why: ``DriftMonitor.observe`` runs once per scored event and bins every feature and the score
(a binary search over the variable's training edges, ``drift.bin_of``). Compiled by mypyc, each
edge read is a list access and an unboxing, each count a boxed integer: about 15,000
instructions per event, 1.2 µs (``bench/drift_cost.py``), 6 % of the scoring operator's
instructions per event (bench/HISTORY.md, thirty-eighth session). Here the edges are one array
of doubles and a slot's counts one array of 64-bit integers, read and written unboxed.

Compiled by Cython from this same file (its "pure Python" mode), like ``features/rings.py``: the
source runs unchanged when the package runs from its sources (``STREAMSCORE_PURE_PYTHON=1``).
The bins are ``drift.bin_of``'s: ``i`` for ``edges[i-1] < value <= edges[i]``, the last bin for
NaN (``tests/unit/test_bin_counts.py`` checks the two against each other).
"""

from __future__ import annotations

from array import array

import cython


def new_counts(width: int) -> array:
    """A slot's counts: ``width`` zeros as 64-bit integers."""
    return array("q", bytes(8 * width))


@cython.cclass
class BinCounter:
    """Every variable's training edges, one after another, and where each variable's bins
    start in a slot's counts.

    ``feature_edges``: one list of edges per feature, in the vector's order; ``score_edges``:
    the score's, or None. ``offsets``: each feature's first bin in the counts, then the score's.
    """

    _edges = cython.declare(cython.double[::1])
    # Variable i's edges are _edges[_starts[i]:_starts[i + 1]]; the score is variable _features.
    _starts = cython.declare(cython.longlong[::1])
    _offsets = cython.declare(cython.longlong[::1])
    _features = cython.declare(cython.Py_ssize_t)
    _has_score = cython.declare(cython.bint)
    # The counts ``count`` adds to (``use``): held as a view, since taking one from the array
    # per call cost a third of the call.
    _counts = cython.declare(cython.longlong[::1])

    def __init__(
        self, feature_edges: list[list[float]], score_edges: list[float] | None, offsets: list[int]
    ) -> None:
        variables = [*feature_edges, *([score_edges] if score_edges is not None else [])]
        if len(offsets) < len(variables):
            raise ValueError(f"{len(variables)} variables but {len(offsets)} offsets")
        starts = [0]
        for edges in variables:
            starts.append(starts[-1] + len(edges))
        self._edges = array("d", [float(e) for edges in variables for e in edges] or [0.0])
        self._starts = array("q", starts)
        self._offsets = array("q", offsets[: len(variables)] or [0])
        self._features = len(feature_edges)
        self._has_score = score_edges is not None
        # Until ``use``: counts as wide as the variables' bins (each has its edges' bins, one
        # above the last edge and one for NaN), so that ``count`` never writes past them.
        width = max([o + len(e) + 2 for o, e in zip(offsets, variables)], default=1)
        self._counts = new_counts(width)

    def use(self, counts: array) -> None:
        """From now on ``count`` adds to ``counts`` (a slot's, ``new_counts``, wide enough for
        every variable's bins)."""
        self._counts = counts

    @cython.cfunc
    @cython.inline
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.exceptval(check=False)
    def _bin(self, variable: cython.Py_ssize_t, value: cython.double) -> cython.Py_ssize_t:
        """``drift.bin_of`` over variable ``variable``'s edges."""
        low: cython.Py_ssize_t = self._starts[variable]
        end: cython.Py_ssize_t = self._starts[variable + 1]
        if value != value:  # NaN
            return end - low + 1
        first: cython.Py_ssize_t = low
        high: cython.Py_ssize_t = end
        middle: cython.Py_ssize_t
        while low < high:
            middle = (low + high) // 2
            if self._edges[middle] < value:
                low = middle + 1
            else:
                high = middle
        return low - first

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def count(self, values: list, score: object) -> None:
        """One more count in the counts in ``use`` for the bin of each feature in ``values``
        (the first ``min(features, len(values))``) and, unless ``score`` is None or there are
        no score edges, of the score."""
        view: cython.longlong[::1] = self._counts
        features: cython.Py_ssize_t = min(self._features, len(values))
        i: cython.Py_ssize_t
        j: cython.Py_ssize_t
        for i in range(features):
            j = self._offsets[i] + self._bin(i, values[i])
            view[j] += 1
        if score is not None and self._has_score:
            j = self._offsets[self._features] + self._bin(self._features, score)
            view[j] += 1
