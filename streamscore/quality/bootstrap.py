"""Percentile bootstrap confidence intervals, seeded and vectorised with numpy.

A live window holds a few thousand labels with a few dozen frauds, so its AUC and its net value
per event (heavy-tailed: one missed television outweighs a thousand coffees) are noisy; an
interval says how noisy. Resamples are drawn in chunks of whole rows (``_CHUNK_CELLS`` draws at
a time) so memory stays bounded at any window size. The same seed and data give the same
interval, so successive snapshots of an unchanged window agree.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from streamscore.quality.metrics import auc_from_counts, score_groups

DEFAULT_RESAMPLES = 500
_CHUNK_CELLS = 2_000_000  # resamples × events drawn at once (16 MB of int64 indices)

Interval = tuple[float, float]
_NO_INTERVAL: Interval = (float("nan"), float("nan"))


def _chunks(resamples: int, n: int) -> Iterator[int]:
    """Sizes of the resample chunks."""
    step = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, resamples, step):
        yield min(step, resamples - start)


def _percentile_interval(stats: np.ndarray, level: float) -> Interval:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), not {level}")
    lo, hi = np.quantile(stats, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def _resampled_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = len(values)
    return np.concatenate(
        [values[rng.integers(0, n, size=(c, n))].mean(axis=1) for c in _chunks(resamples, n)]
    )


def mean_ci(
    values: np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Interval for the mean of ``values`` (e.g. net value per labelled event)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0 or resamples < 1:
        return _NO_INTERVAL
    return _percentile_interval(
        _resampled_means(values, resamples, np.random.default_rng(seed)), level
    )


def mean_difference_ci(
    baseline: np.ndarray,
    other: np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Interval for ``mean(other) − mean(baseline)``, the two samples resampled independently
    (two arms of an experiment)."""
    baseline = np.asarray(baseline, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if len(baseline) == 0 or len(other) == 0 or resamples < 1:
        return _NO_INTERVAL
    rng = np.random.default_rng(seed)
    diff = _resampled_means(other, resamples, rng) - _resampled_means(baseline, resamples, rng)
    return _percentile_interval(diff, level)


def auc_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Interval for the ROC AUC, resampling positives and negatives separately (stratified, as
    R's pROC does), so every resample has both classes however rare fraud is.

    The scores are grouped once; each resample is then just counts per distinct score
    (``np.bincount``), and its AUC a cumulative sum (``auc_from_counts``): no sort per resample.
    """
    positive = np.asarray(labels) == 1
    if positive.all() or not positive.any() or resamples < 1:
        return _NO_INTERVAL
    group, distinct = score_groups(scores)
    rng = np.random.default_rng(seed)
    stats = []
    for chunk in _chunks(resamples, len(group)):
        offsets = (np.arange(chunk) * distinct)[:, None]
        counts = []
        for cls_groups in (group[positive], group[~positive]):
            drawn = cls_groups[rng.integers(0, len(cls_groups), size=(chunk, len(cls_groups)))]
            flat = np.bincount((drawn + offsets).ravel(), minlength=chunk * distinct)
            counts.append(flat.reshape(chunk, distinct))
        stats.append(auc_from_counts(counts[0], counts[1]))
    return _percentile_interval(np.concatenate(stats), level)
