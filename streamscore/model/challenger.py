"""The online challenger: a river model that learns from every labelled outcome in the stream.

The learner operator (one subtask) owns the learning copy and publishes a snapshot to the
control topic every ``challenger_publish_every`` labels, at most one per
``challenger_publish_min_interval_ms`` (``publish_cadence.py``); each scoring subtask keeps the
newest snapshot and scores every event with it in shadow (its score is recorded, never used for
the decision). The prequential quality of the challenger is therefore measured on scores made before
the label was learned, as a promotion decision needs.

Snapshots are zlib-compressed pickles. Unpickling runs code, so the control topic must only be
writable by the job and the operators' CLI (Kafka ACLs on a shared cluster); a snapshot that
cannot be loaded is refused with ``control:corrupt_model`` and the previous one stays in use.
"""

from __future__ import annotations

import logging
import math
import pickle
import zlib
from collections.abc import Sequence
from typing import Any, Final

from streamscore.errors import Rejection
from streamscore.features.definitions import FEATURE_SET
from streamscore.features.engine import as_list
from streamscore.model.logistic_arithmetic import LogisticScore, LogisticTerms

log = logging.getLogger(__name__)

# Chosen with bench/river_cost.py on the realistic generator (100k events, 0.8 % fraud):
# prepare | StandardScaler | LogisticRegression(SGD 0.003, Log(weight_pos=10)) reached a
# prequential AUC of 0.88 for ≈ 11 µs per predict and 30 µs per learn, with a 1.8 KB snapshot;
# plain scaled LR 0.76; Hoeffding trees and ARF 0.82-0.84 at 10-80 µs per predict and
# snapshots of 3-22 MB that keep growing (river's default trees never split below 1 % fraud).
DEFAULT_KIND: Final = "logistic"

# The category codes become one-hot columns (a linear model cannot use a code as a number),
# and the heavy-tailed columns are log1p'd (keeping the -1 "no history" sentinel as -1).
_ONE_HOT: Final = {
    c.field: tuple((float(i), f"{c.field}={v}") for i, v in enumerate((*c.vocabulary, "?")))
    for c in FEATURE_SET.categorical
}
_ONE_HOT_UNKNOWN: Final = -1.0
_LOG1P: Final = frozenset(
    name
    for name in FEATURE_SET.feature_names
    if name == "amount"
    or name.startswith(("amount_sum", "amount_mean", "amount_max", "amount_to_mean"))
    or name == "secs_since_previous"
)


def prepare(x: dict[str, float]) -> dict[str, float]:
    """The challenger's input transform (module level, so snapshots pickle it by name)."""
    out: dict[str, float] = {}
    for name, value in x.items():
        codes = _ONE_HOT.get(name)
        if codes is not None:
            known = False
            for code, column in codes[:-1]:
                hit = value == code
                known = known or hit
                out[column] = 1.0 if hit else 0.0
            out[codes[-1][1]] = 0.0 if known else 1.0
        elif name in _LOG1P:
            out[name] = math.log1p(value) if value >= 0.0 else -1.0
        else:
            out[name] = value
    return out


def new_learner(kind: str = DEFAULT_KIND) -> Any:
    """A fresh river model of the given kind."""
    from river import compose, linear_model, optim, preprocessing

    if kind == "logistic":
        return (
            compose.FuncTransformer(prepare)
            | preprocessing.StandardScaler()
            | linear_model.LogisticRegression(
                optimizer=optim.SGD(0.003), loss=optim.losses.Log(weight_pos=10.0)
            )
        )
    raise ValueError(f"unknown challenger kind {kind!r}")


def version_name(kind: str, labels_learned: int) -> str:
    """``river-<kind>-<labels learned>``: the snapshot's version, as predictions name it."""
    return f"river-{kind}-{labels_learned:09d}"


def dump_snapshot(model: Any) -> bytes:
    return zlib.compress(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL), 3)


def load_snapshot(data: bytes) -> Any:
    """The model in a snapshot, or ``Rejection("control:corrupt_model", ...)``."""
    try:
        model = pickle.loads(zlib.decompress(data))
    except Exception as exc:
        raise Rejection("control:corrupt_model", f"challenger snapshot: {exc}") from None
    if not hasattr(model, "predict_proba_one") or not hasattr(model, "learn_one"):
        raise Rejection("control:corrupt_model", f"challenger snapshot is a {type(model)}")
    return model


# How a column of ``prepare``'s output is read from the feature vector: (vector index, kind,
# one-hot code or the known codes of an "unknown" column).
# Final: compiled, they are constants rather than a lookup in the module's dict per column.
_PLAIN: Final = 0
_LOG1P_KIND: Final = 1
_ONE_HOT_HIT: Final = 2
_ONE_HOT_MISS: Final = 3


def column_sources(feature_names: Sequence[str]) -> dict[str, tuple[int, int, Any]]:
    """Each column ``prepare`` makes, by name: where and how it comes from the vector."""
    sources: dict[str, tuple[int, int, Any]] = {}
    for index, name in enumerate(feature_names):
        codes = _ONE_HOT.get(name)
        if codes is not None:
            for code, column in codes[:-1]:
                sources[column] = (index, _ONE_HOT_HIT, code)
            sources[codes[-1][1]] = (index, _ONE_HOT_MISS, frozenset(c for c, _ in codes[:-1]))
        elif name in _LOG1P:
            sources[name] = (index, _LOG1P_KIND, None)
        else:
            sources[name] = (index, _PLAIN, None)
    return sources


def logistic_terms(columns: list[tuple[int, int, Any]]) -> LogisticTerms:
    """The C form of ``prepare``'s columns (per column, its ``column_sources`` entry: the
    feature it reads, how, and its one-hot code or known codes), for the compiled score and
    learning step (``logistic_arithmetic.py``), which read them straight from a feature vector,
    without the named-feature dicts."""
    return LogisticTerms(
        [index for index, _, _ in columns],
        [kind for _, kind, _ in columns],
        [float(code) if kind == _ONE_HOT_HIT else 0.0 for _, kind, code in columns],
        [sorted(code) if kind == _ONE_HOT_MISS else [] for _, kind, code in columns],
    )


class CompiledLogistic:
    """A ``logistic`` snapshot's score, computed as river computes it, without river's dicts.

    river's ``Pipeline.predict_proba_one`` builds three dicts per event (the named features,
    ``prepare``'s columns, the scaled columns) and walks the pipeline's steps. This does the same
    arithmetic in the same order — per column ``w * safe_div(x - mean, var ** 0.5)``, summed
    from 0 in the order of the weights, plus the intercept, through river's sigmoid — so the
    score is the same float (tests/unit/test_challenger.py checks it against river on trained
    snapshots), in one loop over arrays of doubles in C (``logistic_arithmetic.LogisticScore``; as
    list operations it was the scoring operator's largest cost after LightGBM, bench/HISTORY.md,
    thirteenth and nineteenth sessions, and as native term objects compiled by mypyc still 0.9
    µs per event, thirty-eighth session). Built only for the exact pipeline
    ``new_learner("logistic")`` makes; anything else is scored by river (``compile_snapshot``
    returns None)."""

    def __init__(
        self, columns: list[tuple[int, int, Any]], weights: list[float], means: list[float],
        stds: list[float], intercept: float,
    ) -> None:  # fmt: skip
        self._score = LogisticScore(logistic_terms(columns), weights, means, stds, intercept)

    def score(self, vector: Sequence[float]) -> float:
        # 0 + t1 + t2 + ... left to right, as river's dot product adds (a plain loop: Python
        # 3.12's sum() compensates rounding, so it would differ from river there), in C
        # (logistic_arithmetic.py).
        return float(self._score.score(as_list(vector)))


def logistic_steps(model: Any) -> tuple[Any, Any] | None:
    """(the StandardScaler, the LogisticRegression) of exactly the pipeline
    ``new_learner("logistic")`` makes, or None for any other model."""
    from river import compose, linear_model, optim, preprocessing

    steps = list(getattr(model, "steps", {}).values())
    if len(steps) != 3:
        return None
    transform, scaler, regression = steps
    if not (
        isinstance(transform, compose.FuncTransformer)
        and transform.func is prepare
        and type(scaler) is preprocessing.StandardScaler
        and scaler.with_std
        and type(regression) is linear_model.LogisticRegression
        and type(regression.loss) is optim.losses.Log
    ):
        return None
    return scaler, regression


def compile_snapshot(model: Any, feature_names: Sequence[str]) -> CompiledLogistic | None:
    """The compiled form of a ``logistic`` challenger, or None if ``model`` is not exactly one
    (another kind, or river changed the internals this reads: then river scores it)."""
    try:
        steps = logistic_steps(model)
        if steps is None:
            return None
        scaler, regression = steps
        # Outside learning the weights are a plain VectorDict (no mask, no default factory).
        weights: dict[str, float] = regression._weights.to_dict()
        sources = column_sources(feature_names)
        if len(weights) > len(sources) or any(column not in sources for column in weights):
            return None
        # river's dot product walks the smaller dict and, at equal sizes, the weights: only a
        # snapshot that has learned from at least one example has every column.
        if weights and len(weights) != len(sources):
            return None
        columns = [sources[column] for column in weights]
        return CompiledLogistic(
            columns,
            list(weights.values()),
            [scaler.means[column] for column in weights],
            [scaler.vars[column] ** 0.5 for column in weights],
            regression.intercept,
        )
    except Exception:
        log.warning("challenger snapshot not compiled; river scores it", exc_info=True)
        return None


class ShadowScorer:
    """Scores feature vectors with one challenger snapshot; never raises (None on failure)."""

    def __init__(self, version: str, model: Any, feature_names: Sequence[str]) -> None:
        self.version = version
        self._model = model
        self._names = tuple(feature_names)
        self._compiled = compile_snapshot(model, self._names)

    def score(self, vector: Sequence[float]) -> float | None:
        try:
            if self._compiled is not None:
                return self._compiled.score(vector)
            proba = self._model.predict_proba_one(dict(zip(self._names, vector)))
        except Exception:
            return None
        return float(proba.get(True, 0.0))
