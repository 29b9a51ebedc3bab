"""A static health report: every panel of ``panels.py`` as a PNG, and an ``index.html``.

It needs no Grafana, browser or server to make: Prometheus is read once, matplotlib draws, and
the folder can be opened, archived or attached to an incident as it is. Querying (``collect``)
and drawing (``render``) are separate steps joined by plain data (``ReportData``), so the
drawing is tested with canned data and no Prometheus.
"""

from __future__ import annotations

import html
import logging
import math
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, PercentFormatter

from streamscore.config import Settings
from streamscore.monitoring.panels import (
    FEATURE_PSI_NOW,
    PSI_ALERT_THRESHOLD,
    ROWS,
    UNIT_LABELS,
    Kind,
    Panel,
)
from streamscore.monitoring.prom_api import Alert, PrometheusClient

log = logging.getLogger(__name__)

MAX_POINTS = 300  # per series: enough for a smooth chart, few enough to query fast
MAX_LINES = 10  # series per line chart; more are unreadable (the largest are kept)
MAX_LABEL = 48  # characters of a legend entry (Flink task names can be very long)
TOP_FEATURES = 10
FIG_WIDTH_IN, FIG_HEIGHT_IN, DPI = 7.0, 3.4, 110


# --- the data between querying and drawing -----------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One series of a panel: its legend, its labels and its points (unix seconds, value)."""

    label: str
    labels: dict[str, str]
    times: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class PanelData:
    panel: Panel
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class RowData:
    title: str
    panels: tuple[PanelData, ...]


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, as of ``end`` (unix seconds)."""

    start: float
    end: float
    rows: tuple[RowData, ...]
    alerts: tuple[Alert, ...] = ()
    top_psi: tuple[tuple[str, float], ...] = ()  # (feature, PSI over the last 5 min), highest first
    source: str = ""  # where the data came from (the Prometheus URL)
    generated_at: float = field(default_factory=time.time)


# --- querying ----------------------------------------------------------------------------------
def step_for(seconds: float, min_step_s: float = 1.0) -> float:
    """A step that gives at most ``MAX_POINTS`` points, and no finer than the scrape interval
    (finer steps only repeat the same samples)."""
    return float(max(min_step_s, math.ceil(seconds / MAX_POINTS)))


def collect(client: PrometheusClient, start: float, end: float, step: float) -> ReportData:
    """Query every panel from ``start`` to ``end``, plus the alerts and feature PSI now."""
    rows = []
    for row in ROWS:
        panels = []
        for panel in row.panels:
            lines = [
                Line(
                    query.label(series.labels),
                    series.labels,
                    tuple(t for t, _ in series.points),
                    tuple(v for _, v in series.points),
                )
                for query in panel.queries
                for series in client.query_range(query.expr, start, end, step)
            ]
            panels.append(PanelData(panel, tuple(lines)))
        rows.append(RowData(row.title, tuple(panels)))
    top_psi = tuple(
        (sample.labels.get("variable", "?"), sample.value)
        for sample in client.query(FEATURE_PSI_NOW, at=end)
        if not math.isnan(sample.value)
    )[:TOP_FEATURES]
    return ReportData(
        start, end, tuple(rows), tuple(client.alerts()), top_psi, source=client.base_url
    )


def write_report(settings: Settings, out_dir: Path, minutes: int) -> Path:
    """Query the last ``minutes`` from Prometheus and write the report; returns its index.html.

    Raises ``PrometheusUnavailable`` when Prometheus does not answer."""
    end = time.time()
    start = end - minutes * 60
    step = step_for(end - start, settings.prometheus_scrape_interval_s)
    data = collect(PrometheusClient.from_settings(settings), start, end, step)
    return render(data, Path(out_dir))


# --- drawing -----------------------------------------------------------------------------------
def render(data: ReportData, out_dir: Path) -> Path:
    """Draw every panel as a PNG in ``out_dir`` and write ``index.html`` next to them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs: list[list[tuple[PanelData, str]]] = []
    number = 0
    for row in data.rows:
        row_pngs = []
        for panel_data in row.panels:
            number += 1
            name = f"{number:02d}-{panel_data.panel.slug}.png"
            draw_panel(panel_data, data.start, data.end, out_dir / name)
            row_pngs.append((panel_data, name))
        pngs.append(row_pngs)
    index = out_dir / "index.html"
    index.write_text(report_html(data, pngs), encoding="utf-8")
    log.info("health report written to %s", index)
    return index


def draw_panel(data: PanelData, start: float, end: float, png: Path) -> Path:
    """One panel as a PNG: a chart, or the axes with a "no data" note (never a blank image)."""
    figure = panel_figure(data, start, end)
    FigureCanvasAgg(figure).print_png(str(png))
    return png


def panel_figure(data: PanelData, start: float, end: float) -> Figure:
    """The panel's figure, returned rather than saved so tests can look into its artists."""
    panel = data.panel
    lines = [_finite(line) for line in data.lines]
    lines = [line for line in lines if any(not math.isnan(v) for v in line.values)]
    rows = len(lines) if panel.kind is Kind.HEATMAP and not panel.le_buckets else 0
    height = max(FIG_HEIGHT_IN, 1.2 + 0.2 * rows)
    figure = Figure(figsize=(FIG_WIDTH_IN, height), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    ax.set_title(panel.title, fontsize=11, loc="left", fontweight="bold")
    ax.set_xlim(_date(start), _date(end))
    _time_axis(ax)
    if not lines:
        _no_data(ax, panel)
    elif panel.kind is Kind.HEATMAP and panel.le_buckets:
        _bucket_heatmap(figure, ax, lines)
    elif panel.kind is Kind.HEATMAP:
        _series_heatmap(figure, ax, panel, lines)
    else:
        _lines(figure, ax, panel, lines)
    return figure


def _no_data(ax: Axes, panel: Panel) -> None:
    ax.set_yticks([])
    ax.text(
        0.5,
        0.58,
        "no data",
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=20,
        color="#888888",
    )
    exprs = "\n".join(q.expr for q in panel.queries)
    ax.text(
        0.5,
        0.32,
        exprs,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=7,
        color="#888888",
        family="monospace",
    )
    ax.set_facecolor("#f7f7f7")


def _lines(figure: Figure, ax: Axes, panel: Panel, lines: list[Line]) -> None:
    shown = lines
    if len(lines) > MAX_LINES:  # keep the largest, in their query order
        ranked = sorted(lines, key=lambda line: -np.nanmax(line.values))
        largest = {id(line) for line in ranked[:MAX_LINES]}
        shown = [line for line in lines if id(line) in largest]
    if panel.kind is Kind.STACKED:
        grid, matrix = _aligned(shown)
        ax.stackplot(
            [_date(t) for t in grid],
            np.nan_to_num(matrix),
            labels=[_short(line.label) for line in shown],
            alpha=0.85,
        )
    else:
        for line in shown:
            ax.plot(
                [_date(t) for t in line.times],
                line.values,
                lw=1.4,
                marker="o" if len(line.times) == 1 else None,
                label=_short(line.label),
            )
    if panel.y_min is not None:
        ax.set_ylim(bottom=panel.y_min)
    if panel.unit == "percentunit":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    elif panel.unit == "s":
        ax.yaxis.set_major_formatter(EngFormatter(unit="s"))
    ax.set_ylabel(UNIT_LABELS.get(panel.unit, panel.unit), fontsize=9)
    ax.grid(alpha=0.3)
    if len(lines) > len(shown):
        ax.set_title(f"top {len(shown)} of {len(lines)}", fontsize=8, loc="right")
    # As many columns as fit the figure's width (~100 characters at this font size).
    widest = max(len(_short(line.label)) for line in shown) + 6
    figure.legend(
        loc="outside lower center",
        ncols=max(1, min(len(shown), 4, 100 // widest)),
        fontsize=8,
        frameon=False,
    )


def _bucket_heatmap(figure: Figure, ax: Axes, lines: list[Line]) -> None:
    """Cumulative ``le`` buckets → the share of each bucket per time step.

    Shares, not rates: a change of the input rate would otherwise repaint the whole chart and
    hide what matters, a shift of the distribution. The colour scale is logarithmic because
    scores crowd into the lowest buckets (most payments are honest)."""
    finite = [line for line in lines if math.isfinite(_le(line))]
    finite.sort(key=_le)
    grid, cumulative = _aligned(finite)
    per_bucket = np.clip(np.diff(cumulative, axis=0, prepend=0.0), 0.0, None)
    totals = per_bucket.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(totals > 0, per_bucket / totals, np.nan)
    share = np.where(np.isnan(share), np.nan, np.maximum(share, 1e-3))
    edges = [0.0, *(_le(line) for line in finite)]
    mesh = ax.pcolormesh(
        _edges(grid), edges, share, cmap=_cmap("viridis"), norm=LogNorm(1e-3, 1.0), shading="flat"
    )
    ax.set_ylim(edges[0], edges[-1])
    ax.set_ylabel("bucket (upper bound)", fontsize=9)
    figure.colorbar(mesh, ax=ax, label="share per time step", pad=0.01)


def _series_heatmap(figure: Figure, ax: Axes, panel: Panel, lines: list[Line]) -> None:
    """One row per series, the largest ever at the top, so what drifts is seen first. The colour
    scale is fixed and saturates at 2.5x the alert threshold: one extreme value (a PSI of 20)
    would otherwise wash every other row out to the palest colour."""
    ordered = sorted(lines, key=lambda line: (-np.nanmax(line.values), line.label))
    grid, matrix = _aligned(ordered)
    mesh = ax.pcolormesh(
        _edges(grid),
        np.arange(len(ordered) + 1),
        np.ma.masked_invalid(matrix),
        cmap=_cmap("YlOrRd"),
        vmin=0.0,
        vmax=2.5 * PSI_ALERT_THRESHOLD,
        shading="flat",
    )
    ax.set_yticks(np.arange(len(ordered)) + 0.5, [_short(line.label) for line in ordered])
    ax.tick_params(axis="y", labelsize=8)
    ax.set_ylim(len(ordered), 0)
    label = UNIT_LABELS.get(panel.unit, panel.unit) or "PSI"
    figure.colorbar(
        mesh, ax=ax, label=f"{label} (alert above {PSI_ALERT_THRESHOLD:g})", pad=0.01, extend="max"
    )


def _finite(line: Line) -> Line:
    """±Inf cannot be drawn (histogram_quantile gives +Inf when every sample is in the +Inf
    bucket): it becomes a gap, like a missing sample."""
    return replace(line, values=tuple(v if math.isfinite(v) else math.nan for v in line.values))


def _aligned(lines: list[Line]) -> tuple[list[float], np.ndarray]:
    """The union of the series' timestamps and a (series × time) matrix, NaN where missing."""
    grid = sorted({t for line in lines for t in line.times})
    column = {t: i for i, t in enumerate(grid)}
    matrix = np.full((len(lines), len(grid)), np.nan)
    for row, line in enumerate(lines):
        for t, v in zip(line.times, line.values):
            matrix[row, column[t]] = v
    return grid, matrix


def _edges(grid: list[float]) -> list[float]:
    """Cell edges around the sample times (as matplotlib dates) for pcolormesh."""
    step = float(np.median(np.diff(grid))) if len(grid) > 1 else 60.0
    times = [grid[0] - step / 2, *(a + (b - a) / 2 for a, b in zip(grid, grid[1:]))]
    times.append(grid[-1] + step / 2)
    return [_date(t) for t in times]


def _time_axis(ax: Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=8, tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("time (UTC)", fontsize=8)


def _cmap(name: str) -> Colormap:
    """A colour map whose missing cells (no samples) are light grey, not a colour of the scale."""
    return colormaps[name].with_extremes(bad="#eeeeee")


def _le(line: Line) -> float:
    return float(line.labels.get("le", line.label))


def _date(unix_s: float) -> float:
    return mdates.date2num(datetime.fromtimestamp(unix_s, UTC))


def _short(label: str) -> str:
    label = label or "value"
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


# --- the page ----------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; background: #f3f4f6; color: #1f2937; }
h1 { margin: 0 0 4px; } h2 { margin: 28px 0 8px; }
p.meta { margin: 0; color: #4b5563; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #d1d5db; padding: 4px 10px; text-align: left; font-size: 14px; }
th { background: #e5e7eb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.firing { color: #b91c1c; font-weight: bold; } .pending { color: #b45309; }
.drifted { color: #b91c1c; font-weight: bold; }
.grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 12px; }
figure { margin: 0; background: #fff; border: 1px solid #d1d5db; padding: 6px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: #4b5563; padding: 4px 2px 0; }
"""


def report_html(data: ReportData, pngs: list[list[tuple[PanelData, str]]]) -> str:
    """The index page: time range, alerts now, top feature drift now, then the panels by row."""
    e = html.escape
    minutes = round((data.end - data.start) / 60)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>streamscore health report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>streamscore health report</h1>",
        f'<p class="meta">{e(_when(data.start))} to {e(_when(data.end))} ({minutes} min)'
        f"{' from ' + e(data.source) if data.source else ''}; "
        f"generated {e(_when(data.generated_at))}.</p>",
        "<h2>Alerts</h2>",
        _alerts_table(data.alerts),
        f"<h2>Top feature drift now (PSI, last 5 min; alert above {PSI_ALERT_THRESHOLD})</h2>",
        _psi_table(data.top_psi),
    ]
    for row, row_pngs in zip(data.rows, pngs):
        parts.append(f"<h2>{e(row.title)}</h2>")
        parts.append('<div class="grid">')
        for panel_data, name in row_pngs:
            panel = panel_data.panel
            parts.append(
                f'<figure><img src="{e(name)}" alt="{e(panel.title)}">'
                f"<figcaption>{e(panel.description)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _alerts_table(alerts: tuple[Alert, ...]) -> str:
    if not alerts:
        return "<p>No alert is pending or firing.</p>"
    order = {"firing": 0, "pending": 1}
    rows = [
        f'<tr><td>{html.escape(a.name)}</td><td class="{html.escape(a.state)}">'
        f"{html.escape(a.state)}</td><td>{html.escape(a.labels.get('severity', ''))}</td>"
        f"<td>{html.escape(a.summary)}</td><td>{html.escape(a.active_at)}</td></tr>"
        for a in sorted(alerts, key=lambda a: (order.get(a.state, 2), a.name))
    ]
    header = "<tr><th>alert</th><th>state</th><th>severity</th><th>summary</th><th>since</th></tr>"
    return f"<table>{header}{''.join(rows)}</table>"


def _psi_table(top_psi: tuple[tuple[str, float], ...]) -> str:
    if not top_psi:
        return "<p>No feature drift measured yet.</p>"
    rows = [
        f'<tr><td>{html.escape(name)}</td><td class="num'
        f'{" drifted" if value > PSI_ALERT_THRESHOLD else ""}">{value:.3f}</td></tr>'
        for name, value in top_psi
    ]
    return f"<table><tr><th>feature</th><th>PSI</th></tr>{''.join(rows)}</table>"


def _when(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
