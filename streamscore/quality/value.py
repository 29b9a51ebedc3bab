"""Business value of decisions, from outcomes (is_fraud, decision, amount) and the cost model.

Value is measured against approving everything, the do-nothing baseline: an event's value is
what its decision saved or cost compared with approving it. With ``F(amount)`` the false-decline
cost of ``CostModel`` (``false_decline_fixed + false_decline_rate × amount``):

============  =======================================  ==========================================
decision      fraud                                    honest
============  =======================================  ==========================================
APPROVE       0 (the amount is missed)                 0
DECLINE       + amount (stopped)                       − F(amount) (false decline)
REVIEW        + amount × (1 − miss rate) (caught)      − review cost − friction share × F(amount)
              − review cost
============  =======================================  ==========================================

The net value is ``stopped − false-decline cost − review cost`` (analysts' time on every review
plus the friction of honest customers reviewed). A reviewed fraud is counted as caught in the
expected share ``1 − review_miss_rate`` because the outcome of the analyst's review is not in the
label. So the expected value of an event with fraud probability ``p`` is exactly the expected
cost of approving it minus that of its decision (``CostModel.expected_costs``): the quantity the
cost rule maximises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamscore.model.decisions import DECISIONS, CostModel
from streamscore.quality.codes import APPROVE_CODE, DECLINE_CODE, REVIEW_CODE, decision_codes


@dataclass(frozen=True)
class ValueBreakdown:
    """Totals over a set of labelled events, in the unit of the amounts."""

    events: int
    fraud_events: int
    fraud_amount: float
    stopped_declined: float  # fraud amount declined
    stopped_reviewed: float  # fraud amount caught by reviews (expected share)
    missed_approved: float  # fraud amount approved
    missed_reviewed: float  # fraud amount reviews let through (expected share)
    false_decline_cost: float  # honest customers declined
    review_analyst_cost: float  # analysts' time, every review
    review_friction_cost: float  # honest customers reviewed
    decisions: dict[str, int]

    @property
    def stopped(self) -> float:
        return self.stopped_declined + self.stopped_reviewed

    @property
    def missed(self) -> float:
        return self.missed_approved + self.missed_reviewed

    @property
    def review_cost(self) -> float:
        return self.review_analyst_cost + self.review_friction_cost

    @property
    def net_value(self) -> float:
        """Value compared with approving everything."""
        return self.stopped - self.false_decline_cost - self.review_cost

    @property
    def net_value_per_event(self) -> float:
        return self.net_value / self.events if self.events else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """Totals, derived totals and the same per event, as plain JSON-able values."""
        totals = {
            "fraud_amount": self.fraud_amount,
            "stopped": self.stopped,
            "stopped_declined": self.stopped_declined,
            "stopped_reviewed": self.stopped_reviewed,
            "missed": self.missed,
            "missed_approved": self.missed_approved,
            "missed_reviewed": self.missed_reviewed,
            "false_decline_cost": self.false_decline_cost,
            "review_cost": self.review_cost,
            "review_analyst_cost": self.review_analyst_cost,
            "review_friction_cost": self.review_friction_cost,
            "net_value": self.net_value,
        }
        n = self.events
        return {
            "events": n,
            "fraud_events": self.fraud_events,
            "decisions": dict(self.decisions),
            **totals,
            "per_event": {k: v / n if n else float("nan") for k, v in totals.items()},
        }


def _components(
    is_fraud: np.ndarray | Sequence[bool],
    decisions: np.ndarray | Sequence[str],
    amounts: np.ndarray | Sequence[float],
    costs: CostModel,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(is_fraud, decision codes, per-event amount of each part of the value, all ≥ 0): the one
    place the table of the module docstring is written down."""
    fraud = np.asarray(is_fraud).astype(bool)
    codes = decision_codes(decisions)
    amount = np.asarray(amounts, dtype=np.float64)
    if not len(fraud) == len(codes) == len(amount):
        raise ValueError("is_fraud, decisions and amounts must have the same length")
    honest = ~fraud
    reviewed = codes == REVIEW_CODE
    declined = codes == DECLINE_CODE
    false_decline = costs.false_decline_fixed + costs.false_decline_rate * amount
    fraud_amount = np.where(fraud, amount, 0.0)
    return (
        fraud,
        codes,
        {
            "fraud_amount": fraud_amount,
            "stopped_declined": np.where(declined, fraud_amount, 0.0),
            "stopped_reviewed": np.where(
                reviewed, fraud_amount * (1.0 - costs.review_miss_rate), 0.0
            ),
            "missed_approved": np.where(codes == APPROVE_CODE, fraud_amount, 0.0),
            "missed_reviewed": np.where(reviewed, fraud_amount * costs.review_miss_rate, 0.0),
            "false_decline_cost": np.where(declined & honest, false_decline, 0.0),
            "review_analyst_cost": np.where(reviewed, costs.review_cost, 0.0),
            "review_friction_cost": np.where(
                reviewed & honest, costs.review_friction_share * false_decline, 0.0
            ),
        },
    )


def event_values(
    is_fraud: np.ndarray | Sequence[bool],
    decisions: np.ndarray | Sequence[str],
    amounts: np.ndarray | Sequence[float],
    costs: CostModel,
) -> np.ndarray:
    """Net value of each event compared with approving it (the table in the module docstring)."""
    _, _, c = _components(is_fraud, decisions, amounts, costs)
    return (
        c["stopped_declined"]
        + c["stopped_reviewed"]
        - c["false_decline_cost"]
        - c["review_analyst_cost"]
        - c["review_friction_cost"]
    )


def business_value(
    is_fraud: np.ndarray | Sequence[bool],
    decisions: np.ndarray | Sequence[str],
    amounts: np.ndarray | Sequence[float],
    costs: CostModel,
) -> ValueBreakdown:
    """Totals of the value of a set of decisions (see ``ValueBreakdown``)."""
    fraud, codes, parts = _components(is_fraud, decisions, amounts, costs)
    counts = np.bincount(codes, minlength=len(DECISIONS))
    return ValueBreakdown(
        events=len(codes),
        fraud_events=int(fraud.sum()),
        decisions={name: int(n) for name, n in zip(DECISIONS, counts)},
        **{name: float(part.sum()) for name, part in parts.items()},
    )
