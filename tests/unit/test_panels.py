"""The dashboard panels: their queries name series that exist, and the committed Grafana
dashboard is what ``grafana.py`` generates from them.

A misspelt metric in a panel is silent: Prometheus answers an empty result, and the chart just
says "no data". So every metric name is checked against the recorded series of rules.yml and
the raw series the job and Flink export.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streamscore.monitoring import grafana
from streamscore.monitoring.panels import FEATURE_PSI_NOW, ROWS, UNIT_LABELS, Kind, Panel

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "streamscore" / "monitoring" / "rules.yml"
DASHBOARD = ROOT / "infra" / "grafana" / "dashboards" / "streamscore.json"

RAW_SERIES = {
    "streamscore_events_total",
    "streamscore_dead_letters_total",
    "streamscore_late_events_total",
    "streamscore_predictions_total",
    "streamscore_degraded_predictions_total",
    "streamscore_feature_store_writes_total",
    "streamscore_drift_psi",
    "streamscore_drift_js",
    "streamscore_drift_window_events",
    "streamscore_concept_drift_detections_total",
    "streamscore_concept_drift_error_rate",
    "streamscore_model_info",
    "flink_jobmanager_job_runningState",
    "flink_jobmanager_job_lastCheckpointCompletedTimestamp",
    "flink_jobmanager_job_lastCheckpointDuration",
    "flink_taskmanager_job_task_backPressuredTimeMsPerSecond",
    "flink_taskmanager_job_task_operator_pendingRecords",
}
HISTOGRAMS = {
    "streamscore_ingest_to_score_seconds",
    "streamscore_score",
    "streamscore_state_write_seconds",
}
QUALITY_GAUGE = re.compile(r"streamscore_quality_[a-z0-9_]+")
METRIC = re.compile(r"\b(?:streamscore|flink)[a-zA-Z0-9_:]*")
MATCHER = re.compile(r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"[^"]*"\s*')

PANELS: list[Panel] = [panel for row in ROWS for panel in row.panels]
EXPRS: list[str] = [q.expr for panel in PANELS for q in panel.queries] + [FEATURE_PSI_NOW]


def recorded_series() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def known(metric: str) -> bool:
    if metric in RAW_SERIES or metric in recorded_series() or QUALITY_GAUGE.fullmatch(metric):
        return True
    base, _, suffix = metric.rpartition("_")
    return base in HISTOGRAMS and suffix in ("bucket", "sum", "count")


@pytest.mark.parametrize("expr", EXPRS)
def test_every_metric_exists(expr: str) -> None:
    selectors = re.sub(r"\{[^}]*\}", "", expr)
    metrics = METRIC.findall(selectors)
    assert metrics, f"no metric in {expr!r}"
    for metric in metrics:
        assert known(metric), f"{metric!r} is neither recorded in rules.yml nor exported"


@pytest.mark.parametrize("expr", EXPRS)
def test_expressions_are_promql_ish(expr: str) -> None:
    """Brackets balance and label matchers have the form name op "value"."""
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in re.sub(r'"[^"]*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            assert stack and stack.pop() == pairs[char], expr
    assert not stack, expr
    for block in re.findall(r"\{([^}]*)\}", expr):
        for matcher in block.split(","):
            assert MATCHER.fullmatch(matcher), f"bad matcher {matcher!r} in {expr!r}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_parses_every_expression(tmp_path: Path) -> None:
    """Prometheus' own parser, through a rules file with one recording rule per expression."""
    rules = {
        "groups": [
            {
                "name": "panels",
                "rules": [{"record": f"panel:expr:{i}", "expr": e} for i, e in enumerate(EXPRS)],
            }
        ]
    }
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_panels_are_well_formed() -> None:
    assert [row.title for row in ROWS] == ["Service health", "Model health"]
    slugs = [panel.slug for panel in PANELS]
    assert len(set(slugs)) == len(slugs), "two panels would write the same PNG"
    for panel in PANELS:
        assert panel.queries and panel.description, panel.title
        assert panel.unit in UNIT_LABELS, panel.title
        assert not panel.le_buckets or panel.kind is Kind.HEATMAP, panel.title
        for query in panel.queries:
            assert query.legend, f"{panel.title}: a legend for {query.expr}"


def test_legend_templates_fill_in_labels() -> None:
    query = next(q for p in PANELS for q in p.queries if "{{decision}}" in q.legend)
    assert query.label({"decision": "DECLINE", "model_version": "v3"}) == "DECLINE (v3)"


def test_the_committed_dashboard_is_generated() -> None:
    assert DASHBOARD.read_text() == grafana.render(), (
        "regenerate it: python -m streamscore.monitoring.grafana > "
        "infra/grafana/dashboards/streamscore.json"
    )


def test_the_dashboard_has_both_rows_and_a_datasource_everywhere() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "streamscore"
    assert isinstance(dashboard["schemaVersion"], int)
    panels = dashboard["panels"]
    assert [p["title"] for p in panels if p["type"] == "row"] == ["Service health", "Model health"]
    charts = [p for p in panels if p["type"] != "row"]
    assert [p["title"] for p in charts] == [panel.title for panel in PANELS]
    assert len({p["id"] for p in panels}) == len(panels)
    for chart in charts:
        assert chart["type"] in ("timeseries", "heatmap")
        assert chart["datasource"] == {"type": "prometheus", "uid": "prometheus"}, chart["title"]
        assert chart["targets"], chart["title"]
        for target in chart["targets"]:
            assert target["datasource"]["uid"] == "prometheus"


def test_the_dashboard_grid_does_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, panel["title"]
        cells |= area
