"""A LightGBM model's trees compiled to machine code, used only where it scores exactly as LightGBM.

Why: LightGBM's own tree walk (``GBDT::PredictRaw``) was 15-17 % of the scoring thread in a
drain (bench/HISTORY.md, fortieth session), about 6.5 us per row in the job's batches of a few
hundred rows. lleaves (LLVM, through llvmlite) compiles the same trees into branches, each
split a compare and a jump; the job's model then takes about 1.8 us per row.

Exactness: by default lleaves adds the trees' outputs in blocks (``fblocksize`` 34), which
changes the last bits of some scores. With all the trees in one block it adds them in
LightGBM's order, and its scores equal LightGBM's to the bit: 0 of 320,000 rows differed,
random and edge-case rows included (thresholds and the doubles next to them, NaN, signed zeros
and infinities, category codes). Still, every compile is checked against LightGBM's own
prediction on rows made from that model's split thresholds (``probe_rows``) before it scores.
A failed compile or any differing score leaves LightGBM scoring, and the log says why.

Cost: compiled without inlining (``finline=False``) a 200-tree model takes 1-2 s of CPU,
against 20-30 s inlined for about 1.4 us per row instead of 1.8. The compile runs off the
scoring thread (``compile_in_background``), at each model load, while LightGBM scores.
"""

from __future__ import annotations

import ctypes
import logging
import math
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from streamscore.os_thread_names import name_os_thread

log = logging.getLogger(__name__)

# At least this many probe rows check each compile (``probe_rows``); LightGBM scores them in ms.
PROBE_ROWS = 4096
# Values every feature is probed with besides its own thresholds: missing values, signed zeros
# and infinities, the extremes of a double, and small integers and fractions (category codes,
# LightGBM truncates a categorical value towards zero and sends negatives right).
_SPECIAL_VALUES = (
    math.nan, 0.0, -0.0, math.inf, -math.inf, 1e300, -1e300, 5e-324, -5e-324,
    0.5, -0.5, -0.9999999999999999, -1.0, -2.0, 1.0, 2.0, 3.0, 7.0, 31.0, 32.0, 1e6,
)  # fmt: skip
_TREE_LINE = re.compile(r"^(split_feature|threshold)=(.*)$", re.MULTILINE)

# The compiling thread's name (``thread_priority`` leaves it at the normal CPU policy).
COMPILE_THREAD_NAME = "compile-model"
# lleaves' entry point: (rows, scores, first row, end row), rows row-major doubles.
ForestFunction = Callable[[Any, Any, int, int], None]


def probe_rows(
    model_text: str, n_features: int, count: int = PROBE_ROWS, seed: int = 0
) -> list[list[float]]:
    """Rows whose values are the model's own split thresholds for each feature, the doubles
    either side of them, and ``_SPECIAL_VALUES``: the values where another comparison,
    missing-value rule or rounding would send a row the other way. Each feature's values are
    shuffled (seeded) and dealt out row after row, so every value of every feature is in some
    row: ``count`` rows, or as many as the feature with the most values needs."""
    # Keyed by repr: a set would keep only one of 0.0 and -0.0, which compare equal.
    candidates: list[dict[str, float]] = [
        {repr(value): value for value in _SPECIAL_VALUES} for _ in range(n_features)
    ]
    features: list[int] = []
    for key, values in _TREE_LINE.findall(model_text):
        if key == "split_feature":
            features = [int(token) for token in values.split()]
            continue
        for feature, token in zip(features, values.split(), strict=False):
            threshold = float(token)
            if 0 <= feature < n_features:
                for value in (threshold, math.nextafter(threshold, math.inf),
                              math.nextafter(threshold, -math.inf)):  # fmt: skip
                    candidates[feature][repr(value)] = value
    rng = random.Random(seed)
    pools = []
    for values in candidates:
        pool = [values[key] for key in sorted(values)]
        rng.shuffle(pool)
        pools.append(pool)
    rows = max([count, *(len(pool) for pool in pools)])
    return [[pool[i % len(pool)] for pool in pools] for i in range(rows)]


class CompiledForest:
    """A model's trees compiled by lleaves: ``function(rows, scores, 0, count)`` writes each
    row's probability (the model's objective applied) into ``scores``. Keeps the compiled code
    alive as long as the object lives."""

    def __init__(self, model_text: str) -> None:
        import lleaves

        with tempfile.TemporaryDirectory(prefix="streamscore-forest-") as scratch:
            path = Path(scratch) / "model.txt"
            path.write_text(model_text, encoding="utf-8")
            model = lleaves.Model(model_file=str(path))
            # One block of all the trees: LightGBM's order of addition (module docstring).
            model.compile(fblocksize=max(1, model.num_trees()), finline=False)
        self.n_features: int = model.num_feature()
        self._model = model  # owns the compiled code
        self.function: ForestFunction = model._c_entry_func

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        count, width = len(rows), self.n_features
        matrix = (ctypes.c_double * (count * width))(*[value for row in rows for value in row])
        scores = (ctypes.c_double * count)()
        self.function(matrix, scores, 0, count)
        return list(scores)


def compile_checked(
    model_text: str, n_features: int, reference: Callable[[list[list[float]]], list[float]]
) -> CompiledForest | None:
    """The model compiled, if its scores on ``probe_rows`` equal ``reference``'s (LightGBM's)
    to the bit; otherwise None, with the reason logged."""
    started = time.perf_counter()
    try:
        forest = CompiledForest(model_text)
    except Exception:
        log.warning("model not compiled; LightGBM scores it", exc_info=True)
        return None
    if forest.n_features != n_features:
        log.warning(
            "compiled model has %d features, not %d; LightGBM scores it",
            forest.n_features,
            n_features,
        )
        return None
    rows = probe_rows(model_text, n_features)
    try:
        expected, got = reference(rows), forest.predict(rows)
    except Exception:
        log.warning("compiled model not checked; LightGBM scores it", exc_info=True)
        return None
    differing = [i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if not _same(a, b)]
    if differing:
        first = differing[0]
        log.warning(
            "compiled model scores %d of %d probe rows differently from LightGBM (row %d: %r "
            "against %r); LightGBM scores it",
            len(differing), len(rows), first, got[first], expected[first],
        )  # fmt: skip
        return None
    log.info(
        "model compiled in %.1f s, equal to LightGBM on %d probe rows: the compiled trees score",
        time.perf_counter() - started,
        len(rows),
    )
    return forest


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def compile_in_background(
    model_text: str,
    n_features: int,
    reference: Callable[[list[list[float]]], list[float]],
    done: Callable[[CompiledForest], None],
) -> threading.Thread:
    """``compile_checked`` on a thread of its own; ``done`` gets the forest if it passed."""

    def run() -> None:
        forest = compile_checked(model_text, n_features, reference)
        if forest is not None:
            done(forest)

    thread = threading.Thread(target=run, name=COMPILE_THREAD_NAME, daemon=True)
    thread.start()
    name_os_thread(thread, COMPILE_THREAD_NAME)  # not one more "decode-features" in top -H
    return thread
