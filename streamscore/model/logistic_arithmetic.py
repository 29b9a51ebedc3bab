"""The logistic challenger's arithmetic in C: its score per scored event (``LogisticScore``) and
its learning step per label (``LogisticLearning``), its columns read, scaled and summed without
boxing.

Why: the challenger in shadow scores every event, and the learner learns every label. Compiled
by mypyc, ``CompiledLogistic`` read each column through a native object and boxed nothing in its
sum, but still paid a list access and an unboxing per term field: about 11,000 instructions per
event, 0.9 µs (``bench/ml_loop_cost.py``), 4.6 % of the scoring operator's instructions per
event (bench/HISTORY.md, thirty-eighth session). The learning step on mypyc's lists of floats
boxed a new float for each mean, variance and weight it stored: 7.4 µs per label, the learner
thread's largest cost (forty-eighth session). Here every term's fields are arrays of doubles.

The arithmetic is river's, in the same order (``CompiledLogistic``'s and ``CompiledLearner``'s
docstrings say which). C doubles are Python's floats, and ``exp``, ``log1p`` and ``pow`` are the
C library's that Python's ``math`` calls, so the floats are the same
(``tests/unit/test_challenger.py`` and ``tests/unit/test_compiled_learning.py`` check them
against river). Python's ``math`` raises where C returns an infinity or a NaN (an overflow, the
root of a negative); the C step carries them on, as the pure-Python form here does with
``_pow``.

Compiled by Cython from this same file (its "pure Python" mode), like ``features/rings.py``: it
runs unchanged from the sources (``STREAMSCORE_PURE_PYTHON=1``).
"""

from __future__ import annotations

from array import array

import cython
from cython.cimports.libc.math import exp, log1p, pow

# How a column is made from its feature's value: challenger.column_sources' kinds, repeated
# as C constants (a compiled module does not export these); tests/unit/test_challenger.py
# scores every kind against river.
PLAIN = cython.declare(cython.int, 0)
LOG1P = cython.declare(cython.int, 1)
ONE_HOT_HIT = cython.declare(cython.int, 2)
ONE_HOT_MISS = cython.declare(cython.int, 3)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _pow(x: cython.double, y: cython.double) -> cython.double:
    """C's ``pow`` in both forms. From the sources ``pow`` is ``math.pow``, which raises where C
    returns a NaN or an infinity: its errors become those values here."""
    if cython.compiled:
        return pow(x, y)
    try:
        return pow(x, y)
    except ValueError:
        return float("nan")
    except OverflowError:
        return float("inf")


@cython.cclass
class LogisticTerms:
    """How each term's column comes from a feature vector: the feature it reads (``indexes``),
    how (``kinds``), its one-hot code (``codes``: the code a hit column matches; a miss column
    matches none of ``known[i]``)."""

    _indexes = cython.declare(cython.longlong[::1])
    _kinds = cython.declare(cython.longlong[::1])
    _codes = cython.declare(cython.double[::1])
    # Term i's known codes (a miss column) are _known[_known_starts[i]:_known_starts[i + 1]].
    _known = cython.declare(cython.double[::1])
    _known_starts = cython.declare(cython.longlong[::1])
    count = cython.declare(cython.Py_ssize_t, visibility="readonly")
    _reach = cython.declare(cython.Py_ssize_t)

    def __init__(
        self, indexes: list[int], kinds: list[int], codes: list[float], known: list[list[float]]
    ) -> None:
        terms = len(indexes)
        if not all(len(column) == terms for column in (kinds, codes, known)):
            raise ValueError("every term needs an index, kind, code and known codes")
        starts = [0]
        for codes_of_term in known:
            starts.append(starts[-1] + len(codes_of_term))
        self._indexes = array("q", indexes or [0])
        self._kinds = array("q", kinds or [0])
        self._codes = array("d", codes or [0.0])
        self._known = array("d", [c for term in known for c in term] or [0.0])
        self._known_starts = array("q", starts)
        self.count = terms
        self._reach = max(indexes, default=-1) + 1

    @cython.cfunc
    def _check(self, values: list) -> cython.int:
        """Raises IndexError unless ``values`` has every feature a term reads."""
        if len(values) < self._reach:
            raise IndexError(f"a vector of {len(values)} features; the terms read {self._reach}")
        return 0

    @cython.cfunc
    @cython.inline
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.exceptval(-1.0, check=True)
    def _column(self, values: list, term: cython.Py_ssize_t) -> cython.double:
        """Term ``term``'s column of ``values``, as ``challenger.prepare`` makes it (after
        ``_check``)."""
        value: cython.double = values[self._indexes[term]]
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


def _doubles(values: list[float]) -> array:
    """``values`` as an array of doubles, with room for one when there are none (a memoryview
    of an empty array has no buffer to point at)."""
    return array("d", values or [0.0])


@cython.cclass
class LogisticScore:
    """A logistic score over a feature vector: per term, its column (``terms``), and its weight,
    mean and standard deviation."""

    _terms = cython.declare(LogisticTerms)
    _weights = cython.declare(cython.double[::1])
    _means = cython.declare(cython.double[::1])
    _stds = cython.declare(cython.double[::1])
    _intercept = cython.declare(cython.double)

    def __init__(
        self,
        terms: LogisticTerms,
        weights: list[float],
        means: list[float],
        stds: list[float],
        intercept: float,
    ) -> None:
        if not all(len(column) == terms.count for column in (weights, means, stds)):
            raise ValueError("every term needs a weight, mean and std")
        self._terms = terms
        self._weights = _doubles(weights)
        self._means = _doubles(means)
        self._stds = _doubles(stds)
        self._intercept = intercept

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.cdivision(True)
    def score(self, values: list) -> cython.double:
        """The probability of fraud for the feature vector ``values``: per term
        ``weight * ((x - mean) / std)`` (0 where ``std`` is 0), summed from 0.0 left to right,
        plus the intercept, through river's sigmoid."""
        terms: LogisticTerms = self._terms
        terms._check(values)
        total: cython.double = 0.0
        scaled: cython.double
        std: cython.double
        i: cython.Py_ssize_t
        for i in range(terms.count):
            std = self._stds[i]
            if std != 0.0:
                scaled = (terms._column(values, i) - self._means[i]) / std
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


@cython.cclass
class LogisticLearning:
    """The learning state of a ``logistic`` challenger, per term: the scaler's running mean and
    variance and the regression's weight; and the example count, the intercept, the optimizer's
    step count, and the constant rates and loss settings ``compile_learner`` checked."""

    _terms = cython.declare(LogisticTerms)
    _count = cython.declare(cython.longlong)
    _means = cython.declare(cython.double[::1])
    _vars = cython.declare(cython.double[::1])
    _weights = cython.declare(cython.double[::1])
    _scaled = cython.declare(cython.double[::1])
    _intercept = cython.declare(cython.double)
    _iterations = cython.declare(cython.longlong)
    _lr = cython.declare(cython.double)
    _intercept_lr = cython.declare(cython.double)
    _weight_pos = cython.declare(cython.double)
    _weight_neg = cython.declare(cython.double)
    _clip = cython.declare(cython.double)

    def __init__(
        self,
        terms: LogisticTerms,
        count: int,
        means: list[float],
        variances: list[float],
        weights: list[float],
        intercept: float,
        iterations: int,
        rates: tuple[float, float],
        loss: tuple[float, float, float],
    ) -> None:
        """``rates``: (the weights' learning rate, the intercept's); ``loss``: the Log loss's
        (weight of a positive, weight of a negative, gradient clip)."""
        if not all(len(column) == terms.count for column in (means, variances, weights)):
            raise ValueError("every term needs a mean, variance and weight")
        self._terms = terms
        self._count = count
        self._means = _doubles(means)
        self._vars = _doubles(variances)
        self._weights = _doubles(weights)
        self._scaled = _doubles([0.0] * terms.count)
        self._intercept = intercept
        self._iterations = iterations
        self._lr, self._intercept_lr = rates
        self._weight_pos, self._weight_neg, self._clip = loss

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.cdivision(True)
    def learn_one(self, values: list, is_fraud: cython.bint) -> None:
        """One example: per term the scaler's update (Welford, as ``StandardScaler.learn_one``)
        and the scaled value, their dot product with the weights, the Log loss's clamped
        gradient, then the intercept's step and each weight's (``w - (x * g) * lr``)."""
        terms: LogisticTerms = self._terms
        terms._check(values)
        count: cython.longlong = self._count + 1
        self._count = count
        n: cython.double = count
        total: cython.double = 0.0  # 0 + t1 + t2 + ... left to right, as river's dot product
        xi: cython.double
        old_mean: cython.double
        mean: cython.double
        variance: cython.double
        std: cython.double
        scaled: cython.double
        i: cython.Py_ssize_t
        for i in range(terms.count):
            xi = terms._column(values, i)
            old_mean = self._means[i]
            mean = old_mean + (xi - old_mean) / n
            self._means[i] = mean
            variance = self._vars[i]
            variance = variance + ((xi - old_mean) * (xi - mean) - variance) / n
            self._vars[i] = variance
            std = _pow(variance, 0.5)
            scaled = (xi - mean) / std if std != 0.0 else 0.0
            self._scaled[i] = scaled
            total += self._weights[i] * scaled
        y_pred: cython.double = total + self._intercept
        # optim.losses.Log.gradient (y in {-1, 1}), clamped (the sample weight is 1.0).
        y: cython.double
        weight: cython.double
        if is_fraud:
            y, weight = 1.0, self._weight_pos
        else:
            y, weight = -1.0, self._weight_neg
        z: cython.double = y_pred * y
        gradient: cython.double
        if z > 18.0:
            gradient = weight * exp(-z) * -y
        elif z < -18.0:
            gradient = weight * -y
        else:
            gradient = weight * -y / (exp(z) + 1.0)
        # max(min(gradient, clip), -clip) as Python's min and max pick (a NaN stays).
        if self._clip < gradient:
            gradient = self._clip
        if -self._clip > gradient:
            gradient = -self._clip
        self._intercept -= self._intercept_lr * gradient
        lr: cython.double = self._lr
        for i in range(terms.count):
            self._weights[i] = self._weights[i] - (self._scaled[i] * gradient) * lr
        self._iterations += 1

    def learned(self) -> tuple[int, list[float], list[float], list[float], float, int]:
        """(count, means, variances, weights, intercept, iterations), to write back into the
        river objects for a snapshot."""
        terms = range(self._terms.count)
        return (
            self._count,
            [self._means[i] for i in terms],
            [self._vars[i] for i in terms],
            [self._weights[i] for i in terms],
            self._intercept,
            self._iterations,
        )
