"""Model quality and business value: metrics, the value of decisions, bootstrap intervals, the
live window of labelled outcomes and the canary's A/B readout.

Pure logic on numpy arrays, used by ``streamscore train`` on its holdout and by the scoring job
on its labelled outcomes; only ``QualityWindow.add`` runs per event.
"""

from streamscore.quality.ab import (
    ABReadout,
    SampleRatio,
    ab_readout,
    sample_ratio_mismatch,
    should_roll_back,
)
from streamscore.quality.metrics import (
    Calibration,
    CalibrationBin,
    calibration,
    log_loss,
    precision_recall,
    precision_recall_at,
    precision_recall_by_decision,
    roc_auc,
)
from streamscore.quality.value import ValueBreakdown, business_value, event_values
from streamscore.quality.window import QualitySnapshot, QualityWindow

__all__ = [
    "ABReadout",
    "Calibration",
    "CalibrationBin",
    "QualitySnapshot",
    "QualityWindow",
    "SampleRatio",
    "ValueBreakdown",
    "ab_readout",
    "business_value",
    "calibration",
    "event_values",
    "log_loss",
    "precision_recall",
    "precision_recall_at",
    "precision_recall_by_decision",
    "roc_auc",
    "sample_ratio_mismatch",
    "should_roll_back",
]
