"""The Grafana dashboard, generated from ``panels.py``.

The committed ``infra/grafana/dashboards/streamscore.json`` is this module's output (a unit test
keeps them equal), so the dashboard is edited in ``panels.py`` and never by hand in Grafana:
regenerate it with ``python -m streamscore.monitoring.grafana > infra/grafana/dashboards/...``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from streamscore.monitoring.panels import ROWS, Kind, Panel

DASHBOARD_UID = "streamscore"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
# Fixed, so the output does not depend on the Grafana that imports it (Grafana migrates older
# schemas on load; 39 is Grafana 10.4/11's).
SCHEMA_VERSION = 39
GRID_WIDTH = 24
PANEL_WIDTH = 12
PANEL_HEIGHT = 8


def dashboard() -> dict[str, Any]:
    """The dashboard model: one row panel per row of ``ROWS``, its panels two abreast."""
    panels: list[dict[str, Any]] = []
    y = 0
    for row in ROWS:
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        for i, panel in enumerate(row.panels):
            x = (i * PANEL_WIDTH) % GRID_WIDTH
            grid = {"h": PANEL_HEIGHT, "w": PANEL_WIDTH, "x": x, "y": y}
            panels.append(_panel(panel, len(panels) + 1, grid))
            if x + PANEL_WIDTH >= GRID_WIDTH or i == len(row.panels) - 1:
                y += PANEL_HEIGHT
    return {
        "uid": DASHBOARD_UID,
        "title": "streamscore",
        "description": "Service and model health of the streamscore scoring job.",
        "tags": ["streamscore"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "annotations": {"list": []},
        "templating": {"list": []},
        "links": [],
        "panels": panels,
    }


def _panel(panel: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    common = {
        "id": panel_id,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": q.expr,
                "legendFormat": q.legend,
                "range": True,
                # "heatmap" turns cumulative le buckets into per-bucket values, sorted by le.
                "format": "heatmap" if panel.le_buckets else "time_series",
            }
            for i, q in enumerate(panel.queries)
        ],
    }
    if panel.kind is Kind.HEATMAP:
        return common | {"type": "heatmap", **_heatmap(panel)}
    return common | {"type": "timeseries", **_timeseries(panel)}


def _timeseries(panel: Panel) -> dict[str, Any]:
    stacked = panel.kind is Kind.STACKED
    return {
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                **({} if panel.y_min is None else {"min": panel.y_min}),
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 60 if stacked else 0,
                    "showPoints": "never",
                    "spanNulls": False,
                    "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def _heatmap(panel: Panel) -> dict[str, Any]:
    return {
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {
            # The series are the buckets already: Grafana must not bucket them again.
            "calculate": False,
            "cellGap": 1,
            "color": {
                "mode": "scheme",
                "scheme": "Oranges",
                "scale": "exponential",
                "exponent": 0.5,
                "steps": 64,
                "reverse": False,
            },
            "rowsFrame": {"layout": "le" if panel.le_buckets else "unknown"},
            "yAxis": {"axisPlacement": "left", "reverse": False},
            "cellValues": {"unit": panel.unit},
            "legend": {"show": True},
            "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": True},
            "filterValues": {"le": 1e-9},
        },
    }


def render() -> str:
    """The dashboard as the committed file's text: stable key order, two-space indents."""
    return json.dumps(dashboard(), indent=2) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
