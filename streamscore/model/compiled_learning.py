"""The challenger's learning step, computed as river computes it, on arrays instead of dicts.

river's ``Pipeline.learn_one`` on ``new_learner("logistic")`` costs about 30 µs per label
(``bench/ml_loop_cost.py``): the named features, ``prepare``'s columns and the scaled columns
are each a dict, the scaler walks its ``Counter`` and ``defaultdict``s, and the regression builds
masked ``VectorDict``s for the dot product, the gradient and the step. The learner operator does
that for every label, so it was a quarter of the machine's CPU per event in the drain.

``CompiledLearner`` does the same arithmetic in the same order on arrays of doubles, in C
(``logistic_arithmetic.LogisticLearning``; on mypyc's lists of floats it was 7.4 µs per label,
most of it a new float boxed for each mean, variance and weight stored): per column the
scaler's running mean and variance (Welford, as ``StandardScaler.learn_one``), the scaled value
(``safe_div(x - mean, var ** 0.5)``), the dot product summed from 0 in column order plus the
intercept, the Log loss's gradient (with its class weights and clamp), the intercept's step and
each weight's step (``w - (x * g) * lr``). The floats are the same as river's, bit for bit, and
``model()`` writes them back into the river objects, so a snapshot is the river model river
would have learned (``tests/unit/test_compiled_learning.py`` compares both, pickles included).
It is built only for the exact pipeline with plain SGD, constant learning rates, zero
initial weights and no penalty; for anything else ``compile_learner`` returns None and river
learns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from streamscore.features.engine import as_list
from streamscore.model.challenger import column_sources, logistic_steps, logistic_terms
from streamscore.model.logistic_arithmetic import LogisticLearning

log = logging.getLogger(__name__)


class CompiledLearner:
    """A ``logistic`` river pipeline's state as arrays of doubles (``LogisticLearning``),
    learned one label at a time, and written back into the river objects for a snapshot."""

    def __init__(
        self, model: Any, steps: tuple[Any, Any], feature_names: Sequence[str], columns: list[str]
    ) -> None:
        """``steps``: the model's (scaler, regression), as ``compile_learner`` checked them."""
        scaler, regression = steps
        self._model = model
        self._scaler = scaler
        self._regression = regression
        sources = column_sources(feature_names)
        self._columns = columns
        fresh = not scaler.counts
        weights = regression._weights.to_dict()
        loss = regression.loss
        self._learning = LogisticLearning(
            logistic_terms([sources[c] for c in columns]),
            # Every example has every column, so all columns have been counted the same number
            # of times (``compile_learner`` checks it): one count.
            0 if fresh else scaler.counts[columns[0]],
            [0.0] * len(columns) if fresh else [float(scaler.means[c]) for c in columns],
            [0.0] * len(columns) if fresh else [float(scaler.vars[c]) for c in columns],
            [float(weights.get(c, 0.0)) for c in columns],
            regression.intercept,
            regression.optimizer.n_iterations,
            (regression.optimizer.lr.learning_rate, regression.intercept_lr.learning_rate),
            (loss.weight_pos, loss.weight_neg, regression.clip_gradient),
        )

    def learn_one(self, vector: Sequence[float], is_fraud: bool) -> None:
        """``model.learn_one(dict(zip(feature_names, vector)), is_fraud)``, in C."""
        self._learning.learn_one(as_list(vector), is_fraud)

    def model(self) -> Any:
        """The river model, brought up to date (for a snapshot)."""
        scaler, regression = self._scaler, self._regression
        count, means, variances, weights, intercept, iterations = self._learning.learned()
        if count:
            for column, mean, variance in zip(self._columns, means, variances):
                scaler.counts[column] = count
                scaler.means[column] = mean
                scaler.vars[column] = variance
        if iterations:
            river_weights = regression._weights
            for column, weight in zip(self._columns, weights):
                river_weights[column] = weight
        regression.intercept = intercept
        regression.optimizer.n_iterations = iterations
        return self._model


def compile_learner(model: Any, feature_names: Sequence[str]) -> CompiledLearner | None:
    """``model``'s compiled learning step, or None if it is not exactly a fresh or trained
    ``new_learner("logistic")`` with the optimizer settings the compiled step reproduces."""
    try:
        from river import optim

        steps = logistic_steps(model)
        if steps is None:
            return None
        scaler, regression = steps
        optimizer = regression.optimizer
        if not (
            type(optimizer) is optim.SGD
            and type(optimizer.lr) is optim.schedulers.Constant
            and type(regression.intercept_lr) is optim.schedulers.Constant
            and type(regression.initializer) is optim.initializers.Zeros
            and regression.l1 == 0
            and regression.l2 == 0
        ):
            return None
        columns = list(column_sources(feature_names))
        counted = list(scaler.counts)
        if counted and (
            counted != columns
            or list(scaler.means) != columns
            or list(scaler.vars) != columns
            or len(set(scaler.counts.values())) != 1
        ):
            return None
        weights = list(regression._weights.to_dict())
        if weights and weights != columns:
            return None
        if bool(counted) != bool(weights) or bool(weights) != bool(optimizer.n_iterations):
            return None
        return CompiledLearner(model, steps, feature_names, columns)
    except Exception:
        log.warning("challenger learner not compiled; river learns", exc_info=True)
        return None


class ChallengerLearner:
    """The learner operator's learning copy: compiled when ``compile_learner`` can, river's own
    ``learn_one`` otherwise. Takes feature vectors as the outcomes carry them."""

    def __init__(self, model: Any, feature_names: Sequence[str]) -> None:
        self._model = model
        self._names = tuple(feature_names)
        self._compiled = compile_learner(model, self._names)
        if self._compiled is None:
            log.info("the challenger (%s) learns through river", type(model).__name__)

    def learn_one(self, vector: Sequence[float], is_fraud: bool) -> None:
        if self._compiled is not None:
            self._compiled.learn_one(vector, is_fraud)
        else:
            self._model.learn_one(dict(zip(self._names, vector)), is_fraud)

    def model(self) -> Any:
        """The river model as learned so far (for a snapshot)."""
        return self._compiled.model() if self._compiled is not None else self._model
