"""Business value of decisions: the table of the module, and its link to the cost rule."""

from __future__ import annotations

import random

import numpy as np
import pytest

from streamscore.model.decisions import APPROVE, DECISIONS, DECLINE, REVIEW, CostModel
from streamscore.quality.value import business_value, event_values

COSTS = CostModel(
    false_decline_fixed=2.0,
    false_decline_rate=0.1,
    review_cost=3.0,
    review_miss_rate=0.1,
    review_friction_share=0.1,
)


def test_each_outcome_hand_computed() -> None:
    # Amount 100: F = 2 + 10 = 12.
    cases = [
        (True, APPROVE, 0.0),
        (True, DECLINE, 100.0),
        (True, REVIEW, 90.0 - 3.0),
        (False, APPROVE, 0.0),
        (False, DECLINE, -12.0),
        (False, REVIEW, -3.0 - 1.2),
    ]
    fraud, decisions, expected = zip(*cases)
    values = event_values(list(fraud), list(decisions), [100.0] * 6, COSTS)
    np.testing.assert_allclose(values, expected)


def test_breakdown_hand_computed() -> None:
    is_fraud = [1, 1, 1, 0, 0, 0]
    decisions = [DECLINE, REVIEW, APPROVE, DECLINE, REVIEW, APPROVE]
    amounts = [50.0, 200.0, 30.0, 10.0, 100.0, 5.0]
    v = business_value(is_fraud, decisions, amounts, COSTS)
    assert (v.events, v.fraud_events) == (6, 3)
    assert v.decisions == {APPROVE: 2, REVIEW: 2, DECLINE: 2}
    assert v.fraud_amount == pytest.approx(280.0)
    assert (v.stopped_declined, v.stopped_reviewed) == pytest.approx((50.0, 180.0))
    assert (v.missed_approved, v.missed_reviewed) == pytest.approx((30.0, 20.0))
    assert v.stopped + v.missed == pytest.approx(v.fraud_amount)
    assert v.false_decline_cost == pytest.approx(2.0 + 1.0)
    assert v.review_analyst_cost == pytest.approx(6.0)
    assert v.review_friction_cost == pytest.approx(0.1 * (2.0 + 10.0))
    assert v.net_value == pytest.approx(230.0 - 3.0 - 6.0 - 1.2)
    assert v.net_value == pytest.approx(event_values(is_fraud, decisions, amounts, COSTS).sum())
    d = v.as_dict()
    assert d["net_value"] == pytest.approx(v.net_value)
    assert d["per_event"]["net_value"] == pytest.approx(v.net_value / 6)
    assert d["per_event"]["review_cost"] == pytest.approx(7.2 / 6)


def test_empty() -> None:
    v = business_value([], [], [], COSTS)
    assert (v.events, v.net_value) == (0, 0.0)
    assert np.isnan(v.net_value_per_event)
    with pytest.raises(ValueError, match="same length"):
        business_value([1], [APPROVE, APPROVE], [1.0], COSTS)


def test_expected_value_is_the_cost_saved_over_approving() -> None:
    """For fraud probability p, the value's expectation is cost(APPROVE) − cost(decision), so
    the cost rule's decision is the one of greatest expected value."""
    rng = random.Random(11)
    for _ in range(300):
        p, amount = rng.random(), rng.lognormvariate(3.3, 1.5)
        expected_costs = COSTS.expected_costs(p, amount)
        for decision in DECISIONS:
            fraud, honest = event_values([1, 0], [decision] * 2, [amount] * 2, COSTS)
            saved = expected_costs[APPROVE] - expected_costs[decision]
            assert p * fraud + (1 - p) * honest == pytest.approx(saved, abs=1e-9)
        best = max(
            DECISIONS,
            key=lambda d: (
                p * event_values([1], [d], [amount], COSTS)[0]
                + (1 - p) * event_values([0], [d], [amount], COSTS)[0]
            ),
        )
        assert expected_costs[best] == pytest.approx(expected_costs[COSTS.decide(p, amount)])
