"""Live model quality in the job: windows of labelled outcomes per model, Prometheus gauges,
and the automatic rollback of a canary whose value falls behind the champion's.

The learner operator feeds every labelled outcome here (``add``, O(1)). Four windows:

* ``champion``: the champion's score of every event (in a canary, the champion's score of the
  candidate's users too, with the decision the cost rule would have taken on it);
* ``challenger``: the online challenger's shadow score of every event it scored, with the
  decision it would have taken: champion and challenger are compared on the same events;
* ``arm:champion`` / ``arm:candidate``: during a canary, each arm's own decisions on its own
  users, for the A/B readout (sample-ratio check, difference in net value).

Metrics are computed when Prometheus scrapes (``samples``), not per event. The windows live in
the learner's memory: after a restart they fill again from new labels (monitoring, not state).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from streamscore.model.decisions import CostModel
from streamscore.quality.ab import ab_readout, should_roll_back
from streamscore.quality.window import QualityWindow

# One hour of event time, as the "last hour" window.
WINDOW_AGE_MS = 3_600_000
# The rollback rule needs the gap to be real: the whole one-sided 95 % interval of the value
# difference below -margin (per-event value is heavy tailed; see quality/ab.py).
ROLLBACK_CONFIDENCE = 0.95
ROLLBACK_CHECK_EVERY = 100  # candidate labels between two checks
READOUT_RESAMPLES = 200


def champion_score_of(outcome: dict[str, Any]) -> float | None:
    """The champion's score of a labelled outcome: its own decision's score, or, for a canary
    user whom the candidate decided, the champion's shadow score (None without one)."""
    return outcome["score"] if outcome["arm"] == "champion" else outcome["champion_score"]


class LiveQuality:
    def __init__(
        self, costs: CostModel, max_labels: int, rollback_margin: float, rollback_min_labels: int
    ) -> None:
        self._costs = costs
        self._max_labels = max_labels
        self._margin = rollback_margin
        self._min_labels = rollback_min_labels
        self.champion = QualityWindow(max_labels, WINDOW_AGE_MS)
        self.challenger = QualityWindow(max_labels, WINDOW_AGE_MS)
        self.arms: dict[str, QualityWindow] = {}
        self._candidate: str | None = None  # the candidate version the arms are about
        self._champion_version: str | None = None
        self._share = 0.0
        self._since_check = 0
        self._rolled_back: set[str] = set()

    def add(self, outcome: dict[str, Any]) -> str | None:
        """Record one labelled outcome; return the champion version to roll back to when the
        canary's candidate must go (once per candidate version), else None."""
        costs = self._costs
        event_time, is_fraud, amount = outcome["event_time"], outcome["is_fraud"], outcome["amount"]
        arm = outcome["arm"]
        champion_score = champion_score_of(outcome)
        if arm == "champion":
            self._champion_version = outcome["model_version"]
            champion_decision = outcome["decision"]
        else:
            champion_decision = (
                costs.decide(champion_score, amount) if champion_score is not None else None
            )
        if champion_score is not None:
            self.champion.add(event_time, is_fraud, champion_score, champion_decision, amount)
        challenger_score = outcome["challenger_score"]
        if challenger_score is not None:
            self.challenger.add(
                event_time,
                is_fraud,
                challenger_score,
                costs.decide(challenger_score, amount),
                amount,
            )
        if arm == "candidate":
            return self._add_to_canary(outcome)
        if self._candidate is not None:
            self.arms["arm:champion"].add(
                event_time, is_fraud, outcome["score"], outcome["decision"], amount
            )
        return None

    def _add_to_canary(self, outcome: dict[str, Any]) -> str | None:
        version = outcome["model_version"]
        self._share = outcome["canary_percent"] / 100.0
        if version != self._candidate:  # a new canary: new arms
            self._candidate = version
            self.arms = {
                "arm:champion": QualityWindow(self._max_labels, WINDOW_AGE_MS),
                "arm:candidate": QualityWindow(self._max_labels, WINDOW_AGE_MS),
            }
            self._since_check = 0
        self.arms["arm:candidate"].add(
            outcome["event_time"],
            outcome["is_fraud"],
            outcome["score"],
            outcome["decision"],
            outcome["amount"],
        )
        self._since_check += 1
        if (
            self._since_check < ROLLBACK_CHECK_EVERY
            or version in self._rolled_back
            or self._champion_version is None
        ):
            return None
        self._since_check = 0
        champion = self.arms["arm:champion"].snapshot(self._costs, resamples=0)
        candidate = self.arms["arm:candidate"].snapshot(self._costs, resamples=0)
        if should_roll_back(
            champion,
            candidate,
            self._margin,
            self._min_labels,
            confidence=ROLLBACK_CONFIDENCE,
        ):
            self._rolled_back.add(version)
            return self._champion_version
        return None

    @property
    def canary_share(self) -> float:
        """The candidate's intended share of users (from the outcomes), 0 without a canary."""
        return self._share

    def samples(self) -> Iterator[Metric]:
        """Prometheus gauges of every window (computed now, on scrape)."""
        windows = {"champion": self.champion, "challenger": self.challenger, **self.arms}
        gauges = {
            name: GaugeMetricFamily(f"streamscore_quality_{name}", doc, labels=["model"])
            for name, doc in (
                ("labels", "Labelled outcomes in the live window"),
                ("auc", "ROC AUC over the live window"),
                ("log_loss", "Log-loss over the live window"),
                ("ece", "Expected calibration error over the live window"),
                ("precision_review", "Precision of REVIEW-or-worse decisions"),
                ("recall_review", "Recall of REVIEW-or-worse decisions"),
                ("precision_decline", "Precision of DECLINE decisions"),
                ("recall_decline", "Recall of DECLINE decisions"),
                ("fraud_stopped", "Fraud amount stopped in the window (cost unit)"),
                ("fraud_missed", "Fraud amount missed in the window (cost unit)"),
                ("false_decline_cost", "Cost of declining honest customers in the window"),
                ("review_cost", "Cost of reviews in the window"),
                ("net_value", "Net value of the decisions against approving everything"),
                ("net_value_per_label", "Net value per labelled event"),
            )
        }
        snapshots = {}
        for model, window in windows.items():
            if len(window) < 2:
                continue
            snap = snapshots[model] = window.snapshot(self._costs, resamples=0)
            pr = snap.precision_recall
            value = snap.value
            for name, number in (
                ("labels", snap.labels),
                ("auc", snap.auc),
                ("log_loss", snap.log_loss),
                ("ece", snap.ece),
                ("precision_review", pr["review_or_worse"]["precision"]),
                ("recall_review", pr["review_or_worse"]["recall"]),
                ("precision_decline", pr["decline"]["precision"]),
                ("recall_decline", pr["decline"]["recall"]),
                ("fraud_stopped", value.stopped),
                ("fraud_missed", value.missed),
                ("false_decline_cost", value.false_decline_cost),
                ("review_cost", value.review_cost),
                ("net_value", value.net_value),
                ("net_value_per_label", snap.net_value_per_label),
            ):
                gauges[name].add_metric([model], float(number))
        yield from gauges.values()
        if "arm:champion" in snapshots and "arm:candidate" in snapshots:
            readout = ab_readout(
                snapshots["arm:champion"],
                snapshots["arm:candidate"],
                self._share,
                resamples=READOUT_RESAMPLES,
            )
            ab = GaugeMetricFamily(
                "streamscore_canary",
                "Canary A/B readout: arm sizes and their sample-ratio p-value, net value per "
                "labelled event of each arm, the difference (candidate - champion) and its 95 % CI",
                labels=["candidate", "figure"],
            )
            for figure, number in (
                ("champion_labels", readout.sample_ratio.champion),
                ("candidate_labels", readout.sample_ratio.candidate),
                ("expected_candidate_share", readout.sample_ratio.expected_candidate_share),
                ("srm_p_value", readout.sample_ratio.p_value),
                ("champion_value_per_label", readout.champion_value_per_label),
                ("candidate_value_per_label", readout.candidate_value_per_label),
                ("difference", readout.difference),
                ("difference_ci_low", readout.difference_ci[0]),
                ("difference_ci_high", readout.difference_ci[1]),
            ):
                ab.add_metric([self._candidate or "", figure], float(number))
            yield ab
