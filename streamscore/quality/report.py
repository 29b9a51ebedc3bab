"""``streamscore quality``: champion vs challenger (and a canary's arms) side by side, in money.

Reads the labelled outcomes the job wrote (read_committed, so exactly what the job joined),
replays them through the same ``LiveQuality`` windows the job keeps, and prints each window's
quality and business value with bootstrap confidence intervals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from streamscore.config import Settings
from streamscore.model.decisions import CostModel
from streamscore.quality.ab import ab_readout
from streamscore.quality.live import LiveQuality
from streamscore.quality.window import QualitySnapshot

RESAMPLES = 500


def replay(outcomes: Iterable[dict[str, Any]], costs: CostModel, window_labels: int) -> LiveQuality:
    """The live windows after the given outcomes, as the job's learner would hold them."""
    live = LiveQuality(costs, window_labels, rollback_margin=0.0, rollback_min_labels=10**9)
    for outcome in outcomes:
        live.add(outcome)
    return live


def _ci(interval: tuple[float, float], digits: int) -> str:
    low, high = interval
    if math.isnan(low):
        return ""
    return f" [{low:.{digits}f}, {high:.{digits}f}]"


def _column(snap: QualitySnapshot) -> list[str]:
    pr = snap.precision_recall
    value = snap.value
    return [
        f"{snap.labels:,} ({snap.positives:,} fraud)",
        f"{snap.auc:.3f}{_ci(snap.auc_ci, 3)}",
        f"{snap.log_loss:.4f}",
        f"{snap.ece:.4f}",
        f"{pr['review_or_worse']['precision']:.3f} / {pr['review_or_worse']['recall']:.3f}",
        f"{pr['decline']['precision']:.3f} / {pr['decline']['recall']:.3f}",
        f"{value.stopped:,.0f}",
        f"{value.missed:,.0f}",
        f"{value.false_decline_cost:,.0f}",
        f"{value.review_cost:,.0f}",
        f"{value.net_value:,.0f}",
        f"{snap.net_value_per_label:.3f}{_ci(snap.net_value_per_label_ci, 3)}",
    ]


ROWS = (
    "labels",
    "ROC AUC [95 % CI]",
    "log-loss",
    "calibration error (ECE)",
    "precision / recall, REVIEW+",
    "precision / recall, DECLINE",
    "fraud amount stopped",
    "fraud amount missed",
    "false-decline cost",
    "review cost",
    "net value",
    "net value per label [95 % CI]",
)


def render(live: LiveQuality, costs: CostModel) -> str:
    """The side-by-side table (plain text), and the canary's A/B readout if one ran."""
    windows = {"champion": live.champion, "challenger": live.challenger, **live.arms}
    snaps = {
        name: window.snapshot(costs, resamples=RESAMPLES)
        for name, window in windows.items()
        if len(window) >= 2
    }
    if not snaps:
        return "no labelled outcomes yet: is the job running, and are labels being produced?"
    columns = {name: _column(snap) for name, snap in snaps.items()}
    widths = [max(len(r) for r in ROWS)] + [
        max(len(name), *(len(c) for c in column)) for name, column in columns.items()
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(["", *columns], widths))]
    for i, row in enumerate(ROWS):
        cells = [row, *(column[i] for column in columns.values())]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    if "arm:champion" in snaps and "arm:candidate" in snaps:
        readout = ab_readout(snaps["arm:champion"], snaps["arm:candidate"], live.canary_share)
        ratio = readout.sample_ratio
        lines += [
            "",
            f"canary: {ratio.candidate:,} candidate vs {ratio.champion:,} champion labels "
            f"(expected share {ratio.expected_candidate_share:.0%}, observed "
            f"{ratio.observed_candidate_share:.1%}, SRM p = {ratio.p_value:.3g}"
            f"{' — SAMPLE RATIO MISMATCH' if ratio.srm else ''})",
            f"net value per label, candidate − champion: {readout.difference:+.3f}"
            f"{_ci(readout.difference_ci, 3)}",
        ]
    lines.append(
        "\nvalue in the amounts' unit; stopped/missed count reviewed fraud at the review miss "
        "rate; net value = stopped − false-decline cost − review cost (vs approving everything)"
    )
    return "\n".join(lines)


def quality_report(settings: Settings, window_labels: int, idle_timeout_s: float) -> str:
    """Read the outcomes topic from its start (until idle) and render the comparison."""
    from streamscore.kafka_io import read_messages
    from streamscore.serde import Codec

    codec = Codec("outcome")
    costs = CostModel.from_settings(settings)
    outcomes = (
        codec.decode(message.value())
        for message in read_messages(
            settings, settings.topic_outcomes, from_beginning=True, idle_timeout_s=idle_timeout_s
        )
    )
    return render(replay(outcomes, costs, window_labels), costs)
