"""The one list of dashboard panels: what Grafana shows and what the HTML report draws.

Both ``grafana.py`` and ``report.py`` read ``ROWS``, so a panel is defined once and the two views
cannot drift apart. The queries prefer the recorded series of ``rules.yml``: Prometheus computes
them once per evaluation, and the alerts use the same series, so a chart shows what an alert saw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


class Kind(StrEnum):
    """How a panel is drawn."""

    LINE = "line"
    STACKED = "stacked"  # areas on top of each other: parts of one total
    HEATMAP = "heatmap"  # one row per series (or per histogram bucket), colour = value


@dataclass(frozen=True)
class Query:
    """A PromQL expression and its legend template in Grafana's ``{{label}}`` syntax."""

    expr: str
    legend: str

    def label(self, labels: dict[str, str]) -> str:
        """The legend of one series: the template with its labels filled in (missing ones empty,
        as Grafana does)."""
        return _LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), self.legend).strip()


@dataclass(frozen=True)
class Panel:
    """One chart.

    ``unit`` is a Grafana unit id (see ``UNIT_LABELS``). ``y_min`` pins the bottom of the y axis
    (0 for rates and durations, so noise does not look like a swing); None lets it follow the
    data, for values whose differences are small (AUC) or that can be negative (net value).
    ``le_buckets`` marks a heatmap whose series are a Prometheus histogram's cumulative ``le``
    buckets, which must be turned into per-bucket values before drawing (Grafana's "heatmap"
    query format does it)."""

    title: str
    queries: tuple[Query, ...]
    unit: str
    kind: Kind
    description: str = ""
    y_min: float | None = 0.0
    le_buckets: bool = False

    @property
    def slug(self) -> str:
        """A file-name-safe id (the report's PNG names)."""
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


# Axis labels of the Grafana unit ids used below (the report has no unit formatting of its own).
UNIT_LABELS = {
    "ops": "per second",
    "s": "seconds",
    "percentunit": "share",
    "short": "",
}

# The feature-drift alert's threshold (StreamscoreFeatureDrift in rules.yml): PSI above 0.2 is
# the usual "significant shift" rule of thumb.
PSI_ALERT_THRESHOLD = 0.2
# Every feature's PSI over the last 5 min of event time, for "top drifting features" tables.
FEATURE_PSI_NOW = 'sort_desc(streamscore:drift_psi:avg{kind="feature", window="5m"})'

SERVICE_HEALTH = Row(
    "Service health",
    (
        Panel(
            "Input rate by outcome",
            (Query("streamscore:events:rate1m", "{{outcome}}"),),
            "ops",
            Kind.STACKED,
            "Input records per second by what became of them; the stack is the total input.",
        ),
        Panel(
            "Errors: dead letters by reason",
            (Query("streamscore:dead_letters:rate5m", "{{reason}}"),),
            "ops",
            Kind.STACKED,
            "Records sent to the dead-letter topic per second, by reason.",
        ),
        Panel(
            "Latency ingest to score",
            (
                Query("streamscore:latency_seconds:p50_5m", "p50"),
                Query("streamscore:latency_seconds:p95_5m", "p95"),
                Query("streamscore:latency_seconds:p99_5m", "p99"),
            ),
            "s",
            Kind.LINE,
            "From the Kafka record's timestamp to its score (SLO: p99 under 250 ms).",
        ),
        Panel(
            "Consumer lag",
            (Query("streamscore:consumer_lag:sum", "records waiting"),),
            "short",
            Kind.LINE,
            "Input records in Kafka the job has not read yet.",
        ),
        Panel(
            "Checkpoint duration",
            (Query("streamscore:checkpoint_duration_seconds:last", "last checkpoint"),),
            "s",
            Kind.LINE,
            "Exactly-once output is committed at checkpoints: slow ones delay the predictions.",
        ),
        Panel(
            "Checkpoint write-out of the scoring state",
            (
                Query(
                    "rate(streamscore_state_write_seconds_sum[5m])"
                    " / rate(streamscore_state_write_seconds_count[5m])",
                    "mean",
                ),
                Query(
                    "histogram_quantile(0.99, sum by (le) "
                    "(rate(streamscore_state_write_seconds_bucket[5m])))",
                    "p99",
                ),
            ),
            "s",
            Kind.LINE,
            "The scoring operator writes its waiting state changes before each checkpoint "
            "barrier; no record moves meanwhile, so this is the periodic stall in the latency.",
        ),
        Panel(
            "Back pressure per task",
            (Query("streamscore:backpressure_ratio:max", "{{task_name}}"),),
            "percentunit",
            Kind.LINE,
            "Share of time each task waits on the one after it; the slowest task is the one "
            "right after the last back-pressured one.",
        ),
    ),
)

MODEL_HEALTH = Row(
    "Model health",
    (
        Panel(
            "Score distribution",
            (Query("streamscore:score_bucket:rate5m", "{{le}}"),),
            "short",
            Kind.HEATMAP,
            "How the scores spread over the score buckets: a shift moves the colour up or down.",
            le_buckets=True,
        ),
        Panel(
            "Feature drift (PSI, last 5 min)",
            (Query('streamscore:drift_psi:avg{kind="feature", window="5m"}', "{{variable}}"),),
            "short",
            Kind.HEATMAP,
            "PSI of each feature against the model's training reference (alert above 0.2).",
        ),
        Panel(
            "Score drift (PSI and JS)",
            (
                Query('streamscore:drift_psi:avg{kind="score"}', "PSI {{window}}"),
                Query('streamscore:drift_js:avg{kind="score"}', "JS {{window}}"),
            ),
            "short",
            Kind.LINE,
            "The score distribution against the training reference, over 5 min and 1 h windows.",
        ),
        Panel(
            "Concept drift (ADWIN)",
            (
                Query("streamscore_concept_drift_error_rate", "mean |label - score| ({{model}})"),
                Query(
                    "increase(streamscore_concept_drift_detections_total[15m])",
                    "detections in 15 min ({{model}})",
                ),
            ),
            "short",
            Kind.LINE,
            "The champion's error on the joined labels over ADWIN's adaptive window; a detection "
            "is a change in it (alert StreamscoreConceptDrift).",
        ),
        Panel(
            "Decision mix",
            (Query("streamscore:predictions:rate1m", "{{decision}} ({{model_version}})"),),
            "ops",
            Kind.STACKED,
            "Predictions per second by decision and model version.",
        ),
        Panel(
            "Champion vs challenger: AUC",
            (Query("streamscore_quality_auc", "{{model}}"),),
            "short",
            Kind.LINE,
            "ROC AUC on the last labelled predictions of each model (and canary arm).",
            y_min=None,
        ),
        Panel(
            "Net value per label",
            (Query("streamscore_quality_net_value_per_label", "{{model}}"),),
            "short",
            Kind.LINE,
            "Business value of each model's decisions per labelled event, in the cost unit.",
            y_min=None,
        ),
    ),
)

ROWS: tuple[Row, ...] = (SERVICE_HEALTH, MODEL_HEALTH)
