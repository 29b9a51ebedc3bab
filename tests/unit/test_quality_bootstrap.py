"""Bootstrap intervals: seeded, covering their estimate, and the counting trick is exact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamscore.quality import bootstrap
from streamscore.quality.bootstrap import auc_ci, mean_ci, mean_difference_ci
from streamscore.quality.metrics import auc_from_counts, roc_auc, score_groups


def sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.05).astype(np.int8)
    scores = np.round(np.clip(rng.normal(0.2 + 0.4 * labels, 0.2), 0, 1), 2)
    return labels, scores


def test_intervals_cover_the_estimate_and_are_seeded() -> None:
    labels, scores = sample(3000)
    lo, hi = auc_ci(labels, scores, resamples=300, seed=1)
    assert lo < roc_auc(labels, scores) < hi
    assert auc_ci(labels, scores, resamples=300, seed=1) == (lo, hi)
    values = np.random.default_rng(2).exponential(5.0, 2000) - 4.0
    lo, hi = mean_ci(values, resamples=300)
    assert lo < values.mean() < hi
    assert mean_ci(values, resamples=300) == (lo, hi)
    assert mean_ci(values, resamples=300, seed=9) != (lo, hi)


def test_mean_interval_matches_the_normal_approximation() -> None:
    values = np.random.default_rng(4).normal(10.0, 3.0, 4000)
    lo, hi = mean_ci(values, resamples=1000)
    half = 1.96 * values.std() / math.sqrt(len(values))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert (lo + hi) / 2 == pytest.approx(values.mean(), abs=0.2 * half)


def test_difference_interval() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(1.0, 2.0, 3000), rng.normal(1.5, 2.0, 1000)
    lo, hi = mean_difference_ci(a, b, resamples=500)
    assert lo < b.mean() - a.mean() < hi
    assert lo > 0  # 0.5 apart with a standard error of ~0.07


def test_chunks_cover_every_resample(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chunks give the same number of resamples (the memory bound changes nothing else)."""
    assert sum(bootstrap._chunks(1000, 3000)) == 1000
    monkeypatch.setattr(bootstrap, "_CHUNK_CELLS", 7000)
    assert list(bootstrap._chunks(5, 3000)) == [2, 2, 1]
    labels, scores = sample(3000)
    lo, hi = auc_ci(labels, scores, resamples=50)
    assert lo < roc_auc(labels, scores) < hi


def test_auc_from_counts_of_a_resample_is_its_auc() -> None:
    """The bootstrap's shortcut (counts per distinct score) against roc_auc of the resample."""
    labels, scores = sample(500, seed=3)
    group, distinct = score_groups(scores)
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = rng.integers(0, 500, 500)
        pos = np.bincount(group[idx][labels[idx] == 1], minlength=distinct)
        neg = np.bincount(group[idx][labels[idx] == 0], minlength=distinct)
        assert auc_from_counts(pos, neg) == pytest.approx(roc_auc(labels[idx], scores[idx]))


def test_undefined_intervals_are_nan() -> None:
    assert all(math.isnan(x) for x in mean_ci(np.array([])))
    assert all(math.isnan(x) for x in auc_ci(np.zeros(10), np.random.random(10)))
    assert all(math.isnan(x) for x in mean_difference_ci(np.array([]), np.ones(3)))
    with pytest.raises(ValueError, match="level"):
        mean_ci(np.ones(3), level=95)
