"""The health report and ``status`` from canned Prometheus and Flink answers (no servers).

``CannedPrometheus`` answers the panels' own queries with made-up but plausible series (a feature
and the scores drift half way through; consumer lag has no data), so ``collect`` and the drawing
run exactly as they do against a real Prometheus."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import numpy as np
import pytest

from streamscore.config import settings_from
from streamscore.monitoring.panels import FEATURE_PSI_NOW, ROWS, Kind
from streamscore.monitoring.prom_api import Alert, Sample, Series
from streamscore.monitoring.report import (
    MAX_POINTS,
    PanelData,
    ReportData,
    collect,
    panel_figure,
    render,
    step_for,
)
from streamscore.monitoring.status import HealthStatus, JobStatus, format_status, health_status
from tests.e2e.browser import drawn_fraction

END = 1_800_000_000.0
START = END - 1800
STEP = step_for(END - START, 5)
FEATURES = [
    "amount",
    "amount_zscore_user_24h",
    "txn_count_user_1h",
    "txn_count_user_24h",
    "distinct_countries_user_24h",
    "merchant_category",
    "seconds_since_last_txn",
    "card_present",
]
BACK_PRESSURED_TASKS = [
    "Source: raw_input -> decode_and_validate -> Timestamps/Watermarks",
    "features_and_score",
    "Sink: predictions_sink: Writer -> predictions_sink: Committer",
]
ALERTS = (
    Alert(
        "StreamscoreFeatureDrift",
        "firing",
        {"severity": "warning", "variable": "amount"},
        {"summary": "Feature amount drifted: PSI 0.41 over the last 5 min of event time"},
        "2027-01-15T08:20:00Z",
        "0.41",
    ),
    Alert(
        "StreamscoreLatencySLO",
        "pending",
        {"severity": "warning"},
        {"summary": "p99 ingest-to-score latency is 310ms (SLO 250 ms)"},
        "2027-01-15T08:29:00Z",
        "0.31",
    ),
)


class CannedPrometheus:
    """Answers ``query_range``/``query``/``alerts`` like ``PrometheusClient``, from formulas."""

    base_url = "http://prometheus.example:9090"

    def __init__(self) -> None:
        self.times = np.arange(START, END + 1, STEP)
        self.x = (self.times - START) / (END - START)  # 0 → 1 over the range
        self.rng = np.random.default_rng(7)

    def noise(self, scale: float) -> np.ndarray:
        return self.rng.normal(0, scale, len(self.times))

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        x, drift = self.x, self.x > 0.5
        curves: list[tuple[dict[str, str], np.ndarray]] = []
        if expr == "streamscore:events:rate1m":
            curves = [
                ({"outcome": "scored"}, 200 + self.noise(8)),
                ({"outcome": "dead_letter"}, 2 + np.abs(self.noise(0.5))),
                ({"outcome": "late"}, 1 + np.abs(self.noise(0.3))),
            ]
        elif expr == "streamscore:dead_letters:rate5m":
            curves = [
                ({"reason": "decode_error"}, 1.2 + np.abs(self.noise(0.2))),
                ({"reason": "invalid:amount"}, 0.6 + np.abs(self.noise(0.1))),
            ]
        elif expr.startswith("streamscore:latency_seconds:p"):
            base = {"p50": 0.02, "p95": 0.07, "p99": 0.15}[expr.split(":")[-1][:3]]
            curves = [({}, base * (1 + 0.8 * np.exp(-(((x - 0.7) / 0.05) ** 2))))]
        elif expr == "streamscore:checkpoint_duration_seconds:last":
            curves = [({}, 0.07 + np.abs(self.noise(0.01)))]
        elif expr == "streamscore:backpressure_ratio:max":
            curves = [
                ({"task_name": name}, np.clip(level + self.noise(0.03), 0, 1))
                for name, level in zip(BACK_PRESSURED_TASKS, (0.4, 0.05, 0.0))
            ]
        elif expr == "streamscore:score_bucket:rate5m":
            les = [i / 20 for i in range(1, 21)]
            scale = np.where(drift, 0.25, 0.06)  # scores move up after the drift
            curves = [({"le": f"{le:g}"}, 200 * (1 - np.exp(-le / scale))) for le in les] + [
                ({"le": "+Inf"}, np.full(len(x), 200.0))
            ]
        elif "drift_psi:avg" in expr and 'kind="feature"' in expr:
            curves = [
                ({"variable": f, "kind": "feature", "window": "5m"}, np.abs(self.noise(0.01)))
                for f in FEATURES
            ]
            curves[0] = (curves[0][0], np.where(drift, 0.4, 0.02) + np.abs(self.noise(0.02)))
        elif "drift_psi:avg" in expr or "drift_js:avg" in expr:
            size = 0.3 if "psi" in expr else 0.08
            curves = [
                (
                    {"variable": "score", "kind": "score", "window": w},
                    np.where(drift, size * k, 0.01),
                )
                for w, k in (("5m", 1.0), ("1h", 0.4))
            ]
        elif expr == "streamscore:predictions:rate1m":
            curves = [
                ({"decision": d, "model_version": "fraud-lgbm-3"}, share * 200 + self.noise(1))
                for d, share in (("APPROVE", 0.95), ("REVIEW", 0.04), ("DECLINE", 0.01))
            ]
        elif expr == "streamscore_quality_auc":
            curves = [
                ({"model": "champion"}, np.where(drift, 0.86, 0.93) + self.noise(0.003)),
                ({"model": "challenger"}, 0.90 + self.noise(0.003)),
            ]
        elif expr == "streamscore_quality_net_value_per_label":
            curves = [
                ({"model": "champion"}, np.where(drift, 0.8, 1.6) + self.noise(0.05)),
                ({"model": "challenger"}, 1.3 + self.noise(0.05)),
            ]
        return [
            Series(labels, [(float(t), float(v)) for t, v in zip(self.times, values)])
            for labels, values in curves
        ]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        assert expr == FEATURE_PSI_NOW
        return [Sample({"variable": "amount"}, 0.41), Sample({"variable": "card_present"}, 0.03)]

    def alerts(self) -> list[Alert]:
        return list(ALERTS)


def canned_report() -> ReportData:
    """A report's data as ``collect`` makes it, from ``CannedPrometheus``."""
    return collect(CannedPrometheus(), START, END, STEP)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a report drawn from canned data."""
    return render(canned_report(), tmp_path_factory.mktemp("report")).parent


def test_step_gives_at_most_max_points() -> None:
    for minutes in (1, 5, 30, 60, 24 * 60, 7 * 24 * 60):
        step = step_for(minutes * 60, 5)
        assert minutes * 60 / step + 1 <= MAX_POINTS + 1
    assert step_for(60, 5) == 5  # never finer than the scrape interval


def test_collect_fills_the_legends() -> None:
    data = canned_report()
    assert [row.title for row in data.rows] == [row.title for row in ROWS]
    by_title = {p.panel.title: p for row in data.rows for p in row.panels}
    assert {line.label for line in by_title["Input rate by outcome"].lines} == {
        "scored",
        "dead_letter",
        "late",
    }
    assert {line.label for line in by_title["Decision mix"].lines} >= {"APPROVE (fraud-lgbm-3)"}
    assert by_title["Consumer lag"].lines == ()
    assert data.top_psi == (("amount", 0.41), ("card_present", 0.03))


def test_every_panel_is_a_drawn_png(rendered: Path) -> None:
    pngs = sorted(rendered.glob("*.png"))
    assert len(pngs) == sum(len(row.panels) for row in ROWS)
    for png in pngs:
        # A white figure with only axes and text is ~3 % drawn; charts are more.
        assert drawn_fraction(png) > 0.03, png.name


def test_heatmaps_are_drawn_as_meshes() -> None:
    data = canned_report()
    heatmaps = [p for row in data.rows for p in row.panels if p.panel.kind is Kind.HEATMAP]
    assert heatmaps
    for panel_data in heatmaps:
        figure = panel_figure(panel_data, START, END)
        mesh = figure.axes[0].collections[0]
        values = np.ma.filled(mesh.get_array(), np.nan)
        assert np.isfinite(values).any(), panel_data.panel.title


def test_score_heatmap_shows_the_shift() -> None:
    """The cumulative buckets become shares per step: after the drift, less in the first one."""
    data = canned_report()
    score = next(p for row in data.rows for p in row.panels if p.panel.le_buckets)
    shares = np.asarray(panel_figure(score, START, END).axes[0].collections[0].get_array())
    first_bucket = shares.reshape(20, -1)[0]
    half = first_bucket.size // 2
    assert first_bucket[:half].mean() > 2 * first_bucket[half + 2 :].mean()
    assert np.allclose(shares.reshape(20, -1).sum(axis=0), 1.0, atol=0.02)


def test_no_data_draws_a_note_not_a_blank(tmp_path: Path) -> None:
    panel = next(p for row in ROWS for p in row.panels if p.title == "Consumer lag")
    figure = panel_figure(PanelData(panel, ()), START, END)
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert "no data" in texts
    assert any("streamscore:consumer_lag:sum" in t for t in texts)
    png = tmp_path / "lag.png"
    figure.savefig(png)
    assert drawn_fraction(png) > 0.03


def test_the_page_references_every_png_and_lists_alerts(rendered: Path) -> None:
    page = (rendered / "index.html").read_text()
    sources = set(re.findall(r'<img src="([^"]+)"', page))
    assert sources == {p.name for p in rendered.glob("*.png")}
    for alert in ALERTS:
        assert alert.name in page and alert.summary in page
    assert '<td class="firing">firing</td>' in page and '<td class="pending">pending</td>' in page
    assert "amount" in page and "0.410" in page
    assert page.index("Service health") < page.index("Model health")
    assert "2027-01-15 07:30:00 UTC to 2027-01-15 08:00:00 UTC (30 min)" in page


def test_the_page_says_when_nothing_alerts(tmp_path: Path) -> None:
    data = canned_report()
    quiet = ReportData(data.start, data.end, data.rows, alerts=(), top_psi=())
    page = render(quiet, tmp_path).read_text()
    assert "No alert is pending or firing." in page
    assert "No feature drift measured yet." in page


# --- status ------------------------------------------------------------------------------------
JOB = JobStatus("ae59", "streamscore-scoring", "RUNNING", 3 * 3600 + 125, 2.4, 0.071)


def test_status_shows_everything() -> None:
    text = format_status(
        HealthStatus(
            flink_url="http://127.0.0.1:8081",
            prometheus_url="http://127.0.0.1:9090",
            jobs=(JOB,),
            input_rate=203.456,
            output_rate=199.0,
            consumer_lag=1234.0,
            top_psi=(("amount", 0.41), ("card_present", 0.03), ("txn_count_user_1h", 0.01)),
            alerts=(ALERTS[0],),
        )
    )
    assert "streamscore-scoring" in text and "RUNNING" in text and "3h 02m" in text
    assert "2.4 s ago, took 71 ms" in text
    assert "203.5/s" in text and "199.0/s" in text and "1,234 records" in text
    assert "amount 0.410 (drifted), card_present 0.030, txn_count_user_1h 0.010" in text
    assert "alerts firing: 1" in text
    assert f"StreamscoreFeatureDrift: {ALERTS[0].summary}" in text


def test_status_without_prometheus_still_shows_the_job() -> None:
    text = format_status(
        HealthStatus(
            "http://127.0.0.1:8081",
            "http://127.0.0.1:9090",
            jobs=(JOB,),
            prometheus_error="Prometheus is not reachable at http://127.0.0.1:9090 (refused)",
        )
    )
    assert "streamscore-scoring" in text and "RUNNING" in text
    assert "Prometheus is not reachable" in text
    assert "input" not in text


def test_status_without_flink_or_data() -> None:
    text = format_status(
        HealthStatus(
            "http://127.0.0.1:8081",
            "http://127.0.0.1:9090",
            flink_error="Flink is not reachable at http://127.0.0.1:8081 (refused)",
        )
    )
    assert "Flink is not reachable" in text
    assert "input                        no data" in text
    assert "alerts firing: none" in text


def test_status_of_servers_that_are_down() -> None:
    """Nothing listens on the ports: both sources are reported as down, nothing raises."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        flink_port, prometheus_port = a.getsockname()[1], b.getsockname()[1]
    settings = settings_from(
        [f"flink_rest_port={flink_port}", f"prometheus_port={prometheus_port}"]
    )
    status = health_status(settings)
    assert status.flink_error and f":{flink_port}" in status.flink_error
    assert status.prometheus_error and "streamscore stack up" in status.prometheus_error
    text = format_status(status)
    assert "Flink is not reachable" in text and "Prometheus is not reachable" in text


def test_status_groups_an_alert_that_fires_per_feature() -> None:
    drifted = tuple(
        Alert(
            name="StreamscoreFeatureDrift",
            state="firing",
            labels={"variable": variable},
            annotations={"summary": f"Feature {variable} drifted"},
        )
        for variable in ("amount", "amount_sum_1h", "country_distinct_24h")
    )
    text = format_status(
        HealthStatus(
            flink_url="http://127.0.0.1:8081",
            prometheus_url="http://127.0.0.1:9090",
            jobs=(JOB,),
            input_rate=1.0,
            output_rate=1.0,
            consumer_lag=0.0,
            top_psi=(),
            alerts=drifted,
        )
    )
    assert "alerts firing: 3" in text
    assert text.count("StreamscoreFeatureDrift") == 1
    assert "StreamscoreFeatureDrift: Feature amount drifted" in text
    assert "and 2 more: amount_sum_1h, country_distinct_24h" in text
