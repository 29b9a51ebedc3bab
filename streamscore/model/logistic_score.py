"""The logistic challenger's score per scored event, in C: its columns read, scaled and summed
without boxing.

Why: the challenger in shadow scores every event. Compiled by mypyc, ``CompiledLogistic`` read
each column through a native object and boxed nothing in its sum, but still paid a list access
and an unboxing per term field: about 11,000 instructions per event, 0.9 µs
(``bench/ml_loop_cost.py``), 4.6 % of the scoring operator's instructions per event
(bench/HISTORY.md, thirty-eighth session). Here every term's fields are arrays of doubles.

The arithmetic is ``CompiledLogistic``'s, which is river's, in the same order: per column
``weight * ((x - mean) / std)`` (0 where ``std`` is 0), summed from 0.0 left to right, plus the
intercept, through river's sigmoid. C doubles are Python's floats and ``exp`` and ``log1p`` are
the C library's that Python's ``math`` calls, so the score is the same float
(``tests/unit/test_challenger.py`` checks it against river).

Compiled by Cython from this same file (its "pure Python" mode), like ``features/rings.py``: it
runs unchanged from the sources (``STREAMSCORE_PURE_PYTHON=1``).
"""

from __future__ import annotations

from array import array

import cython
from cython.cimports.libc.math import exp, log1p

# How a column is made from its feature's value: challenger.column_sources' kinds, repeated
# as C constants (a compiled module does not export these); tests/unit/test_challenger.py
# scores every kind against river.
PLAIN = cython.declare(cython.int, 0)
LOG1P = cython.declare(cython.int, 1)
ONE_HOT_HIT = cython.declare(cython.int, 2)
ONE_HOT_MISS = cython.declare(cython.int, 3)


@cython.cclass
class LogisticScore:
    """A logistic score over a feature vector: per term, the feature it reads (``indexes``), how
    (``kinds``), its one-hot code (``codes``: the code a hit column matches; a miss column
    matches none of ``known[i]``), and its weight, mean and standard deviation."""

    _indexes = cython.declare(cython.longlong[::1])
    _kinds = cython.declare(cython.longlong[::1])
    _codes = cython.declare(cython.double[::1])
    # Term i's known codes (a miss column) are _known[_known_starts[i]:_known_starts[i + 1]].
    _known = cython.declare(cython.double[::1])
    _known_starts = cython.declare(cython.longlong[::1])
    _weights = cython.declare(cython.double[::1])
    _means = cython.declare(cython.double[::1])
    _stds = cython.declare(cython.double[::1])
    _terms = cython.declare(cython.Py_ssize_t)
    _reach = cython.declare(cython.Py_ssize_t)
    _intercept = cython.declare(cython.double)

    def __init__(
        self,
        indexes: list[int],
        kinds: list[int],
        codes: list[float],
        known: list[list[float]],
        weights: list[float],
        means: list[float],
        stds: list[float],
        intercept: float,
    ) -> None:
        terms = len(indexes)
        if not all(len(column) == terms for column in (kinds, codes, known, weights, means, stds)):
            raise ValueError(
                "every term needs an index, kind, code, known codes, weight, mean, std"
            )
        starts = [0]
        for codes_of_term in known:
            starts.append(starts[-1] + len(codes_of_term))
        self._indexes = array("q", indexes or [0])
        self._kinds = array("q", kinds or [0])
        self._codes = array("d", codes or [0.0])
        self._known = array("d", [c for term in known for c in term] or [0.0])
        self._known_starts = array("q", starts)
        self._weights = array("d", weights or [0.0])
        self._means = array("d", means or [0.0])
        self._stds = array("d", stds or [0.0])
        self._terms = terms
        self._reach = max(indexes, default=-1) + 1
        self._intercept = intercept

    @cython.cfunc
    @cython.inline
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.exceptval(check=False)
    def _column(self, term: cython.Py_ssize_t, value: cython.double) -> cython.double:
        """Term ``term``'s column from its feature's ``value`` (``challenger.Column.read``)."""
        kind: cython.longlong = self._kinds[term]
        if kind == PLAIN:
            return value
        if kind == LOG1P:
            return log1p(value) if value >= 0.0 else -1.0
        if kind == ONE_HOT_HIT:
            return 1.0 if value == self._codes[term] else 0.0
        k: cython.Py_ssize_t
        for k in range(self._known_starts[term], self._known_starts[term + 1]):
            if value == self._known[k]:
                return 0.0
        return 1.0

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.cdivision(True)
    def score(self, values: list) -> cython.double:
        """The probability of fraud for the feature vector ``values``."""
        if len(values) < self._reach:
            raise IndexError(f"a vector of {len(values)} features; the terms read {self._reach}")
        total: cython.double = 0.0
        scaled: cython.double
        std: cython.double
        i: cython.Py_ssize_t
        for i in range(self._terms):
            std = self._stds[i]
            if std != 0.0:
                scaled = (self._column(i, values[self._indexes[i]]) - self._means[i]) / std
            else:
                scaled = 0.0
            total += self._weights[i] * scaled
        raw: cython.double = total + self._intercept
        # river.utils.math.sigmoid, the Log loss's mean function
        if raw < -30:
            return 0.0
        if raw > 30:
            return 1.0
        return 1 / (1 + exp(-raw))
