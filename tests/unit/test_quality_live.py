"""The job's live quality windows, the automatic rollback rule and the `quality` report."""

from __future__ import annotations

import random
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from streamscore.model.decisions import CostModel
from streamscore.quality.live import ROLLBACK_CHECK_EVERY, LiveQuality
from streamscore.quality.report import render, replay


def outcome(rng: random.Random, t: int, **fields: Any) -> dict[str, Any]:
    """A labelled outcome whose champion score is informative and challenger score is noise."""
    is_fraud = rng.random() < 0.05
    score = min(0.99, max(0.01, (0.7 if is_fraud else 0.1) + rng.gauss(0, 0.15)))
    amount = rng.choice((5.0, 50.0, 500.0))
    costs = CostModel.defaults()
    base = {
        "event_time": t,
        "is_fraud": is_fraud,
        "amount": amount,
        "score": score,
        "decision": costs.decide(score, amount),
        "model_version": "v1",
        "arm": "champion",
        "canary_percent": 0,
        "champion_score": None,
        "challenger_score": rng.random(),
        "challenger_version": "river-logistic-000000100",
    }
    return {**base, **fields}


def test_champion_and_challenger_are_compared_on_the_same_events() -> None:
    rng = random.Random(1)
    live = replay((outcome(rng, 1_000 + i) for i in range(4_000)), CostModel.defaults(), 10_000)
    champion = live.champion.snapshot(CostModel.defaults(), resamples=0)
    challenger = live.challenger.snapshot(CostModel.defaults(), resamples=0)
    assert champion.labels == challenger.labels == 4_000
    assert champion.auc > 0.9 > 0.6 > challenger.auc


def test_a_much_worse_candidate_is_rolled_back_once() -> None:
    rng = random.Random(2)
    live = LiveQuality(CostModel.defaults(), 10_000, rollback_margin=0.05, rollback_min_labels=300)
    rollbacks = []
    for i in range(6_000):
        if i % 2:
            o = outcome(rng, i)
        else:  # the candidate approves everything: every fraud is missed
            o = outcome(rng, i, arm="candidate", model_version="v2", canary_percent=50)
            o["champion_score"] = o["score"]
            o["score"], o["decision"] = 0.0, "APPROVE"
        rollback = live.add(o)
        if rollback is not None:
            rollbacks.append((i, rollback))
    assert [version for _, version in rollbacks] == ["v1"]
    assert rollbacks[0][0] >= 2 * 300  # not before both arms have the minimum of labels


def test_an_equal_candidate_is_not_rolled_back() -> None:
    rng = random.Random(3)
    live = LiveQuality(CostModel.defaults(), 10_000, rollback_margin=0.05, rollback_min_labels=300)
    for i in range(20 * ROLLBACK_CHECK_EVERY):
        arm = {"arm": "candidate", "model_version": "v2", "canary_percent": 50} if i % 2 else {}
        o = outcome(rng, i, **arm)
        if arm:
            o["champion_score"] = o["score"]
        assert live.add(o) is None


def test_gauges_and_report_name_every_window() -> None:
    rng = random.Random(4)
    outcomes = []
    for i in range(1_000):  # half and half, where the canary should have had 10 %
        if i % 2:
            outcomes.append(outcome(rng, i))
            continue
        o = outcome(rng, i, arm="candidate", model_version="v2", canary_percent=10)
        o["champion_score"] = o["score"]
        outcomes.append(o)
    live = replay(outcomes, CostModel.defaults(), 10_000)

    class Source(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return live.samples()

    registry = CollectorRegistry()
    registry.register(Source())
    auc = registry.get_sample_value("streamscore_quality_auc", {"model": "challenger"})
    assert auc is not None and 0.3 < auc < 0.7
    srm = registry.get_sample_value(
        "streamscore_canary", {"candidate": "v2", "figure": "srm_p_value"}
    )
    assert srm is not None and srm < 0.001  # 50/50 observed where 10 % was intended
    text = render(live, CostModel.defaults())
    for column in ("champion", "challenger", "arm:champion", "arm:candidate"):
        assert column in text
    assert "SAMPLE RATIO MISMATCH" in text
