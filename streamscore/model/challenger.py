"""The online challenger: a river model that learns from every labelled outcome in the stream.

The learner operator (one subtask) owns the learning copy and publishes a snapshot to the
control topic every ``challenger_publish_every`` labels; each scoring subtask keeps the newest
snapshot and scores every event with it in shadow (its score is recorded, never used for the
decision). The prequential quality of the challenger is therefore measured on scores made before
the label was learned, as a promotion decision needs.

Snapshots are zlib-compressed pickles. Unpickling runs code, so the control topic must only be
writable by the job and the operators' CLI (Kafka ACLs on a shared cluster); a snapshot that
cannot be loaded is refused with ``control:corrupt_model`` and the previous one stays in use.
"""

from __future__ import annotations

import math
import pickle
import zlib
from collections.abc import Sequence
from typing import Any

from streamscore.errors import Rejection
from streamscore.features.definitions import FEATURE_SET

# Chosen with bench/river_cost.py on the realistic generator (100k events, 0.8 % fraud):
# prepare | StandardScaler | LogisticRegression(SGD 0.003, Log(weight_pos=10)) reached a
# prequential AUC of 0.88 for ≈ 11 µs per predict and 30 µs per learn, with a 1.8 KB snapshot;
# plain scaled LR 0.76; Hoeffding trees and ARF 0.82-0.84 at 10-80 µs per predict and
# snapshots of 3-22 MB that keep growing (river's default trees never split below 1 % fraud).
DEFAULT_KIND = "logistic"

# The category codes become one-hot columns (a linear model cannot use a code as a number),
# and the heavy-tailed columns are log1p'd (keeping the -1 "no history" sentinel as -1).
_ONE_HOT = {
    c.field: tuple((float(i), f"{c.field}={v}") for i, v in enumerate((*c.vocabulary, "?")))
    for c in FEATURE_SET.categorical
}
_ONE_HOT_UNKNOWN = -1.0
_LOG1P = frozenset(
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


class ShadowScorer:
    """Scores feature vectors with one challenger snapshot; never raises (None on failure)."""

    def __init__(self, version: str, model: Any, feature_names: Sequence[str]) -> None:
        self.version = version
        self._model = model
        self._names = tuple(feature_names)

    def score(self, vector: Sequence[float]) -> float | None:
        try:
            proba = self._model.predict_proba_one(dict(zip(self._names, vector)))
        except Exception:
            return None
        return float(proba.get(True, 0.0))
