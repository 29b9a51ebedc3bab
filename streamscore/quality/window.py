"""The live quality of a model: a window of its recent labelled outcomes, summarised on demand.

The scoring job joins each label to the prediction it made and calls ``QualityWindow.add`` per
label, so adding is O(1) (a bounded deque plus amortised removal of what has aged out). The
expensive part, ``snapshot``, sorts, bins and bootstraps only when asked.

The window keeps the last ``max_labels`` outcomes *and* only those within ``max_age_ms`` of
event time of the newest labelled event (or of ``now_ms`` given to ``snapshot``): a quiet hour
does not leave yesterday's traffic in today's figures. Labels arrive out of event-time order,
so ``add`` drops old outcomes only from the front and ``snapshot`` applies the age limit exactly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamscore.model.decisions import CostModel
from streamscore.quality.bootstrap import DEFAULT_RESAMPLES, Interval, auc_ci, mean_ci
from streamscore.quality.codes import decision_codes
from streamscore.quality.metrics import (
    Calibration,
    calibration,
    log_loss,
    precision_recall_by_decision,
    roc_auc,
)
from streamscore.quality.value import ValueBreakdown, business_value, event_values


@dataclass(frozen=True)
class QualitySnapshot:
    """Quality and business value of one model over its window of labelled outcomes."""

    labels: int  # labelled outcomes in the window
    labels_total: int  # labels ever added (the sample-ratio check of a canary compares these)
    positives: int
    auc: float
    auc_ci: Interval
    log_loss: float
    precision_recall: dict[str, dict[str, float]]  # "review_or_worse" and "decline"
    calibration: Calibration
    value: ValueBreakdown
    net_value_per_label_ci: Interval
    # Net value of each outcome in the window, for the A/B comparison's interval.
    values: np.ndarray = field(repr=False, compare=False)

    @property
    def ece(self) -> float:
        return self.calibration.ece

    @property
    def net_value_per_label(self) -> float:
        return self.value.net_value_per_event

    def as_dict(self) -> dict[str, Any]:
        """Everything but the per-outcome values, as plain JSON-able values."""
        return {
            "labels": self.labels,
            "labels_total": self.labels_total,
            "positives": self.positives,
            "auc": self.auc,
            "auc_ci": list(self.auc_ci),
            "log_loss": self.log_loss,
            "precision_recall": self.precision_recall,
            "calibration": self.calibration.as_dict(),
            "value": self.value.as_dict(),
            "net_value_per_label": self.net_value_per_label,
            "net_value_per_label_ci": list(self.net_value_per_label_ci),
        }


class QualityWindow:
    """The most recent labelled outcomes of one model (or one canary arm)."""

    def __init__(self, max_labels: int, max_age_ms: int) -> None:
        if max_labels < 1 or max_age_ms < 0:
            raise ValueError("max_labels must be ≥ 1 and max_age_ms ≥ 0")
        self.max_labels = max_labels
        self.max_age_ms = max_age_ms
        self._outcomes: deque[tuple[int, bool, float, str, float]] = deque(maxlen=max_labels)
        self._newest_ms: int | None = None
        self.labels_total = 0

    def __len__(self) -> int:
        return len(self._outcomes)

    def add(
        self, event_time: int, is_fraud: bool, score: float, decision: str, amount: float
    ) -> None:
        """Record one labelled outcome: the event's time, its label, and what the model said."""
        self.labels_total += 1
        newest = self._newest_ms
        if newest is None or event_time > newest:
            newest = self._newest_ms = event_time
        elif event_time < newest - self.max_age_ms:
            return  # a late label of an event already older than the window
        outcomes = self._outcomes
        outcomes.append((event_time, is_fraud, score, decision, amount))
        oldest_kept = newest - self.max_age_ms
        while outcomes[0][0] < oldest_kept:
            outcomes.popleft()  # stops at the latest at the outcome just added

    def snapshot(
        self,
        costs: CostModel,
        *,
        now_ms: int | None = None,
        resamples: int = DEFAULT_RESAMPLES,
        seed: int = 0,
        calibration_bins: int = 10,
    ) -> QualitySnapshot:
        """The window's metrics, value breakdown and bootstrap intervals (``resamples=0``: no
        intervals, for a quick look)."""
        newest = self._newest_ms if now_ms is None else now_ms
        # A copy first, in one call into C: a metrics scrape reads the window on its own thread
        # while the learner adds outcomes, and filtering the deque itself in Python let the
        # learner's append in between ("deque mutated during iteration": the readout failed).
        outcomes = list(self._outcomes)
        kept = [o for o in outcomes if newest is None or o[0] >= newest - self.max_age_ms]
        is_fraud = np.fromiter((o[1] for o in kept), dtype=np.int8, count=len(kept))
        scores = np.fromiter((o[2] for o in kept), dtype=np.float64, count=len(kept))
        codes = decision_codes([o[3] for o in kept])
        amounts = np.fromiter((o[4] for o in kept), dtype=np.float64, count=len(kept))
        values = event_values(is_fraud, codes, amounts, costs)
        return QualitySnapshot(
            labels=len(kept),
            labels_total=self.labels_total,
            positives=int(is_fraud.sum()),
            auc=roc_auc(is_fraud, scores),
            auc_ci=auc_ci(is_fraud, scores, resamples, seed=seed),
            log_loss=log_loss(is_fraud, scores),
            precision_recall=precision_recall_by_decision(is_fraud, codes),
            calibration=calibration(is_fraud, scores, calibration_bins),
            value=business_value(is_fraud, codes, amounts, costs),
            net_value_per_label_ci=mean_ci(values, resamples, seed=seed),
            values=values,
        )
