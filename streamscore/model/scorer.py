"""Scores feature vectors, fast, and never fails the caller.

LightGBM's ``Booster.predict`` costs 40-90 µs for one row, mostly Python-side checks. The C API's
``LGBM_BoosterPredictForMatSingleRowFast`` is built for one row (the per-call setup is done
once by ``...FastInit``), and costs a few µs per row through ctypes; the scoring operator scores
a batch's events together (``Scorer.score_many``: ``LGBM_BoosterPredictForMat``, the same scores
bit for bit), which keeps the trees in the CPU's caches from one row to the next. If the model
cannot be loaded, or a prediction fails, the scorer falls back to transparent rules and says so
in the prediction (model version ``fallback-rules``, ``degraded`` = ``["model"]``), so the job keeps
flowing.
"""

from __future__ import annotations

import ctypes
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from streamscore.features.definitions import FEATURE_SET, FeatureSet
from streamscore.model.compiled_forest import CompiledForest, compile_in_background
from streamscore.model.loading import ModelBundle, check_compatible, check_model_text

log = logging.getLogger(__name__)

FALLBACK_VERSION: Final = "fallback-rules"
_C_API_DTYPE_FLOAT64: Final = 1
_C_API_PREDICT_NORMAL: Final = 0
# From this many rows ``FastBooster.predict_rows`` predicts them in one matrix call.
MATRIX_FROM_ROWS: Final = 8


@dataclass(frozen=True)
class Thresholds:
    review: float
    decline: float

    def decide(self, score: float) -> str:
        if score >= self.decline:
            return "DECLINE"
        if score >= self.review:
            return "REVIEW"
        return "APPROVE"


class FastBooster:
    """A LightGBM model behind the single-row fast prediction C API, and its trees compiled
    (``compile_trees``: ``model/compiled_forest.py``) once they are ready and score as it does."""

    def __init__(self, model_text: str, n_features: int, compile_trees: bool = False) -> None:
        import lightgbm
        from lightgbm.basic import _LIB, _safe_call

        self._booster = lightgbm.Booster(model_str=model_text)
        if self._booster.num_feature() != n_features:
            raise ValueError(
                f"model has {self._booster.num_feature()} features, feature set has {n_features}"
            )
        self._n = n_features
        self._lib = _LIB
        self._safe_call = _safe_call
        self._fast = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                self._booster._handle,
                ctypes.c_int(_C_API_PREDICT_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(-1),
                ctypes.c_int(_C_API_DTYPE_FLOAT64),
                ctypes.c_int32(n_features),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(self._fast),
            )
        )
        # One reused input row, output and pointers, passed as the ctypes objects they are:
        # ctypes then hands over their addresses without converting anything. (Plain Python
        # arguments cost 6.1 µs per prediction against 4.6 with declared argument types; the
        # declared types' conversions of these objects cost 1,800 instructions per call more than
        # none: bench/HISTORY.md, fourteenth session.) So a FastBooster belongs to one thread
        # (each Flink subtask builds its own).
        self._row = (ctypes.c_double * n_features)()
        # The row filled by one struct call: 4,300 instructions against 6,500 for ctypes'
        # slice assignment, which converts element by element (fourteenth session).
        self._fill_row = struct.Struct(f"={n_features}d").pack_into
        self._out = ctypes.c_double(0.0)
        self._out_len = ctypes.c_int64(0)
        # Indexing the library gives a private function object: its return type set here
        # leaves LightGBM's own (cached attribute) binding untouched.
        # Called through PyDLL, i.e. holding the GIL: a ~5 µs call is cheaper to keep than the
        # GIL is to hand back and forth. ctypes' CDLL releases it around every call, and the
        # feature-store writer thread then took it for its batch each time (measured with
        # bench/operator_cost.py: ~15 µs per event of waiting for the GIL).
        self._predict = ctypes.PyDLL(_LIB._name)["LGBM_BoosterPredictForMatSingleRowFast"]
        self._predict.restype = ctypes.c_int
        self._out_ref = ctypes.byref(self._out)
        self._out_len_ref = ctypes.byref(self._out_len)
        # Many rows in one call (predict_rows), through CDLL: it lets the GIL go for the call's
        # milliseconds, in which the feature-store writer thread can run.
        self._handle = self._booster._handle
        self._predict_matrix = ctypes.CDLL(_LIB._name)["LGBM_BoosterPredictForMat"]
        self._predict_matrix.restype = ctypes.c_int
        self._row_bytes = 8 * n_features
        self._matrix_rows = 0
        self._matrix = (ctypes.c_double * 0)()
        self._scores = (ctypes.c_double * 0)()
        # The compiled trees, set by the compiling thread once they passed their check; until
        # then, or for good if they fail, LightGBM scores. The check's LightGBM is a booster of
        # its own, made on that thread.
        self._forest: CompiledForest | None = None
        self._compiling: object = None
        if compile_trees:
            self._compiling = compile_in_background(
                model_text,
                n_features,
                lambda rows: FastBooster(model_text, n_features).predict_rows(rows),
                self._use_forest,
            )

    def _use_forest(self, forest: CompiledForest) -> None:
        self._forest = forest

    @property
    def compiled(self) -> bool:
        """Whether the compiled trees score (from now on)."""
        return self._forest is not None

    def predict_one(self, vector: Sequence[float]) -> float:
        row = self._row
        self._fill_row(row, 0, *vector)
        forest = self._forest
        if forest is not None:
            forest.function(row, self._out_ref, 0, 1)
            return self._out.value
        if self._predict(self._fast, row, self._out_len_ref, self._out_ref) != 0:
            raise RuntimeError(self._lib.LGBM_GetLastError().decode())
        return self._out.value

    def predict_rows(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """The scores of many rows, equal bit for bit to ``predict_one`` of each.

        From ``MATRIX_FROM_ROWS`` rows, in one call of ``LGBM_BoosterPredictForMat``: the
        trees are walked for row after row with nothing else in between, so they stay in the
        CPU's caches. One row at a time between the scoring path's other work, in a drain, the
        walk took about 8.7 µs per event, 6.1 µs in batches, and the rest of the per-event work
        got cheaper too (bench/HISTORY.md, twenty-seventh session). Fewer rows are not worth the
        matrix call's own setup (it parses its parameters and makes a predictor per call)."""
        count = len(rows)
        forest = self._forest
        if count < MATRIX_FROM_ROWS and forest is None:
            return [self.predict_one(row) for row in rows]
        if count > self._matrix_rows:
            self._matrix_rows = max(count, 2 * self._matrix_rows)
            self._matrix = (ctypes.c_double * (self._matrix_rows * self._n))()
            self._scores = (ctypes.c_double * self._matrix_rows)()
        matrix, fill, stride = self._matrix, self._fill_row, self._row_bytes
        offset = 0
        for row in rows:
            fill(matrix, offset, *row)
            offset += stride
        if forest is not None:
            forest.function(matrix, self._scores, 0, count)
            return self._scores[:count]
        if (
            self._predict_matrix(
                self._handle,
                matrix,
                _C_API_DTYPE_FLOAT64,
                count,
                self._n,
                1,  # row major
                _C_API_PREDICT_NORMAL,
                0,  # from the first iteration
                -1,  # to the last
                b"num_threads=1",
                self._out_len_ref,
                self._scores,
            )
            != 0
        ):
            raise RuntimeError(self._lib.LGBM_GetLastError().decode())
        return self._scores[:count]

    def __del__(self) -> None:
        fast = getattr(self, "_fast", None)
        if fast is not None and fast.value:
            self._lib.LGBM_FastConfigFree(fast)


def fallback_score(features: dict[str, float]) -> float:
    """Rules a fraud analyst would apply without a model; coarse, but never unavailable."""
    score = 0.02
    if features.get("country_is_new_24h") == 1.0 and features.get("secs_since_previous", -1) >= 0:
        score += 0.35
    ratio = features.get("amount_to_mean_24h", -1.0)
    if ratio > 3.0:
        score += 0.3
    if features.get("amount_count_1m", 0.0) >= 3:
        score += 0.2
    return min(score, 0.99)


class Scorer:
    """Holds one model version; ``score`` returns (score, version used, fallback used)."""

    def __init__(
        self,
        bundle: ModelBundle | None,
        feature_set: FeatureSet = FEATURE_SET,
        compile_trees: bool = False,
    ) -> None:
        self.feature_names = feature_set.feature_names
        self.bundle: ModelBundle | None = None
        self._booster: FastBooster | None = None
        if bundle is None:
            log.warning("no model given; scoring with %s", FALLBACK_VERSION)
            return
        try:
            check_compatible(bundle, feature_set)
            # A cut model text aborts the process inside LightGBM (taking a TaskManager down)
            # instead of raising: check it is whole first.
            check_model_text(bundle.model_text)
            self._booster = FastBooster(bundle.model_text, len(self.feature_names), compile_trees)
            self.bundle = bundle
            log.info("loaded model %s", bundle.version)
        except Exception:
            log.exception("model unavailable; scoring with %s", FALLBACK_VERSION)

    @property
    def compiled(self) -> bool:
        """Whether the model's compiled trees score (``FastBooster.compiled``)."""
        return self._booster is not None and self._booster.compiled

    @property
    def model_version(self) -> str:
        return self.bundle.version if self.bundle else FALLBACK_VERSION

    def score(self, vector: Sequence[float]) -> tuple[float, str, bool]:
        """(score, version that produced it, whether the fallback had to be used)."""
        booster = self._booster
        if booster is not None:
            try:
                return booster.predict_one(vector), self.bundle.version, False  # type: ignore[union-attr]
            except Exception:
                log.exception("model prediction failed; using %s for this event", FALLBACK_VERSION)
        return fallback_score(dict(zip(self.feature_names, vector))), FALLBACK_VERSION, True

    def score_many(self, vectors: Sequence[Sequence[float]]) -> list[tuple[float, str, bool]]:
        """``score`` of each vector, the model's in one call (``FastBooster.predict_rows``). If
        that call fails, each vector is scored on its own, so only those the model cannot score
        fall back, as with ``score``."""
        booster = self._booster
        if booster is not None and self.bundle is not None:
            try:
                version = self.bundle.version
                return [(score, version, False) for score in booster.predict_rows(vectors)]
            except Exception:
                log.exception("model prediction of %d rows failed; scoring each", len(vectors))
        return [self.score(vector) for vector in vectors]
