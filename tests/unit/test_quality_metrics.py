"""Quality metrics against hand-computed cases and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamscore.quality.metrics import (
    calibration,
    log_loss,
    precision_recall,
    precision_recall_at,
    precision_recall_by_decision,
    roc_auc,
)


def auc_by_pairs(labels: np.ndarray, scores: np.ndarray) -> float:
    """Every (positive, negative) pair: 1 if the positive scores higher, ½ on a tie."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_roc_auc_hand_computed() -> None:
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.5, 0.5])) == pytest.approx(0.875)
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4])) == 0.0
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_equals_pair_counting(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.random(300) < 0.2).astype(np.int8)
    scores = np.round(rng.random(300) * 0.6 + 0.3 * labels, 1)  # coarse: many ties
    assert roc_auc(labels, scores) == pytest.approx(auc_by_pairs(labels, scores), abs=1e-12)


def test_roc_auc_needs_both_classes() -> None:
    assert math.isnan(roc_auc(np.array([0, 0]), np.array([0.1, 0.2])))
    assert math.isnan(roc_auc(np.array([1]), np.array([0.1])))
    assert math.isnan(roc_auc(np.array([], dtype=np.int8), np.array([])))


def test_log_loss_hand_computed() -> None:
    expected = -(math.log(0.8) + math.log(0.6)) / 2
    assert log_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(expected)
    assert math.isnan(log_loss(np.array([]), np.array([])))


def test_precision_recall() -> None:
    labels = np.array([1, 1, 0, 0, 1])
    assert precision_recall(labels, np.array([1, 0, 1, 0, 1])) == {
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
        "flagged": 3,
    }
    assert precision_recall(labels, np.zeros(5)) == {"precision": 0.0, "recall": 0.0, "flagged": 0}
    at = precision_recall_at(labels, np.array([0.9, 0.2, 0.6, 0.1, 0.5]), 0.5)
    assert at == {
        "threshold": 0.5,
        "precision": pytest.approx(2 / 3),
        "recall": 2 / 3,
        "flagged": 3,
    }


def test_precision_recall_by_decision() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    decisions = ["DECLINE", "REVIEW", "APPROVE", "DECLINE", "REVIEW", "APPROVE"]
    result = precision_recall_by_decision(labels, decisions)
    assert result["review_or_worse"] == {"precision": 0.5, "recall": 2 / 3, "flagged": 4}
    assert result["decline"] == {"precision": 0.5, "recall": 1 / 3, "flagged": 2}
    with pytest.raises(ValueError, match="unknown decision"):
        precision_recall_by_decision(labels, ["HOLD"] * 6)


def test_calibration_hand_computed() -> None:
    # Bin [0, 0.5): scores 0.1, 0.3 (mean 0.2), one fraud of two (rate 0.5): gap 0.3.
    # Bin [0.5, 1]: scores 0.8, 1.0 (mean 0.9), both fraud: gap 0.1.
    labels = np.array([1, 0, 1, 1])
    scores = np.array([0.1, 0.3, 0.8, 1.0])
    cal = calibration(labels, scores, bins=2)
    assert cal.ece == pytest.approx((2 * 0.3 + 2 * 0.1) / 4)
    assert [(b.lower, b.upper, b.count) for b in cal.bins] == [(0.0, 0.5, 2), (0.5, 1.0, 2)]
    assert [b.mean_score for b in cal.bins] == pytest.approx([0.2, 0.9])
    assert [b.fraud_rate for b in cal.bins] == pytest.approx([0.5, 1.0])
    # Empty bins are left out; a perfectly calibrated set has no error.
    assert len(calibration(labels, scores, bins=10).bins) == 4
    assert calibration(np.array([0, 1]), np.array([0.0, 1.0])).ece == 0.0
    assert math.isnan(calibration(np.array([]), np.array([])).ece)


def test_calibration_equals_brute_force() -> None:
    rng = np.random.default_rng(3)
    scores = rng.random(500) ** 3
    labels = (rng.random(500) < scores * 0.8).astype(np.int8)
    for strategy in ("uniform", "quantile"):
        cal = calibration(labels, scores, bins=5, strategy=strategy)
        assert sum(b.count for b in cal.bins) == 500
        brute = 0.0
        for b in cal.bins:
            last = b is cal.bins[-1]
            inside = (scores >= b.lower) & ((scores <= b.upper) if last else (scores < b.upper))
            assert inside.sum() == b.count
            brute += abs(scores[inside].mean() - labels[inside].mean()) * b.count / 500
        assert cal.ece == pytest.approx(brute)
    with pytest.raises(ValueError):
        calibration(labels, scores, strategy="nope")
