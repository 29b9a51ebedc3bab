"""Model quality metrics: ranking (ROC AUC), probability quality (log-loss, calibration) and
precision/recall at a threshold or at a decision point.

Pure numpy over whole arrays: they run on a training holdout or on a window of labelled
outcomes, never per event. Every function returns NaN rather than failing when a metric is
undefined (no positives, no events), because a live window starts empty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from streamscore.quality.codes import DECLINE_CODE, REVIEW_CODE, decision_codes


def auc_from_counts(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray | float:
    """AUC from counts of positives and negatives per distinct score, in ascending score order
    (last axis). Each positive scores against the negatives below it, half for ties: the
    Mann-Whitney statistic without sorting again, so the bootstrap can reuse it on counts."""
    below = np.cumsum(negatives, axis=-1) - negatives
    wins = (positives * (below + 0.5 * negatives)).sum(axis=-1)
    return wins / (positives.sum(axis=-1) * negatives.sum(axis=-1))


def score_groups(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """Index of each score among the distinct scores (ascending), and how many there are."""
    distinct, group = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
    return group.reshape(-1), len(distinct)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (rank-sum statistic, ties count half); NaN without both classes."""
    positive = np.asarray(labels) == 1
    if positive.all() or not positive.any():
        return float("nan")
    group, distinct = score_groups(scores)
    pos = np.bincount(group[positive], minlength=distinct)
    neg = np.bincount(group[~positive], minlength=distinct)
    return float(auc_from_counts(pos, neg))


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels, scores clipped away from 0 and 1."""
    if len(labels) == 0:
        return float("nan")
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-15, 1 - 1e-15)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def precision_recall(labels: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Precision and recall of a flag (0 when nothing is flagged / nothing is positive)."""
    positive = np.asarray(labels) == 1
    flagged = np.asarray(flagged, dtype=bool)
    tp, n_flagged, n_pos = int((flagged & positive).sum()), int(flagged.sum()), int(positive.sum())
    return {
        "precision": tp / n_flagged if n_flagged else 0.0,
        "recall": tp / n_pos if n_pos else 0.0,
        "flagged": n_flagged,
    }


def precision_recall_at(
    labels: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, float]:
    """Precision and recall of flagging every score at or above ``threshold``."""
    return {"threshold": threshold, **precision_recall(labels, np.asarray(scores) >= threshold)}


def precision_recall_by_decision(
    labels: np.ndarray, decisions: np.ndarray | list[str]
) -> dict[str, dict[str, float]]:
    """Precision and recall at each decision point: REVIEW or worse (anything not approved),
    and DECLINE."""
    codes = decision_codes(decisions)
    return {
        "review_or_worse": precision_recall(labels, codes >= REVIEW_CODE),
        "decline": precision_recall(labels, codes == DECLINE_CODE),
    }


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    count: int
    mean_score: float
    fraud_rate: float


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error: the count-weighted mean gap between the mean score and the
    observed fraud rate over score bins. Cost-based decisions read the score as a probability,
    so a miscalibrated model makes costly decisions even when its AUC is good."""

    ece: float
    bins: tuple[CalibrationBin, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"ece": self.ece, "bins": [asdict(b) for b in self.bins]}


def calibration(
    labels: np.ndarray, scores: np.ndarray, bins: int = 10, strategy: str = "uniform"
) -> Calibration:
    """ECE and its non-empty bins. ``uniform``: equal-width bins on [0, 1] (the usual ECE);
    ``quantile``: equal-count bins, which resolve the low scores where most card payments are."""
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(scores) == 0:
        return Calibration(float("nan"), ())
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, bins + 1).round(12)  # 0.3, not 0.30000000000000004
    elif strategy == "quantile":
        edges = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, bins + 1)))
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', not {strategy!r}")
    index = np.clip(np.searchsorted(edges[1:-1], scores, side="right"), 0, len(edges) - 2)
    count = np.bincount(index, minlength=len(edges) - 1)
    score_sum = np.bincount(index, weights=scores, minlength=len(edges) - 1)
    fraud_sum = np.bincount(index, weights=y, minlength=len(edges) - 1)
    filled = count > 0
    mean_score = score_sum[filled] / count[filled]
    fraud_rate = fraud_sum[filled] / count[filled]
    ece = float((count[filled] * np.abs(mean_score - fraud_rate)).sum() / len(scores))
    lower, upper = edges[:-1][filled], edges[1:][filled]
    return Calibration(
        ece,
        tuple(
            CalibrationBin(float(lo), float(hi), int(n), float(ms), float(fr))
            for lo, hi, n, ms, fr in zip(lower, upper, count[filled], mean_score, fraud_rate)
        ),
    )
