"""Health at a glance for a terminal (``streamscore status``).

Two sources, read independently so one being down does not hide the other: the Flink REST API
for the job and its checkpoints (what runs), and Prometheus for rates, lag, drift and alerts
(how well it runs). ``health_status`` gathers, ``format_status`` only formats, so the text is
tested with canned data.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from streamscore.config import Settings
from streamscore.errors import PrometheusUnavailable
from streamscore.monitoring.panels import FEATURE_PSI_NOW, PSI_ALERT_THRESHOLD
from streamscore.monitoring.prom_api import Alert, PrometheusClient
from streamscore.stack.flink import rest

log = logging.getLogger(__name__)

TOP_FEATURES = 3
# Jobs that are over; a job in any other state is shown as the current one.
TERMINAL_STATES = {"FINISHED", "CANCELED", "FAILED", "SUSPENDED"}


@dataclass(frozen=True)
class JobStatus:
    """One Flink job, with its latest completed checkpoint (None: none yet)."""

    job_id: str
    name: str
    state: str
    duration_s: float
    checkpoint_age_s: float | None = None
    checkpoint_duration_s: float | None = None


@dataclass(frozen=True)
class HealthStatus:
    """What ``streamscore status`` shows. An ``*_error`` is set when its source did not answer;
    a metric is None when Prometheus has no sample of it (e.g. no job has run yet)."""

    flink_url: str
    prometheus_url: str
    jobs: tuple[JobStatus, ...] = ()
    flink_error: str | None = None
    prometheus_error: str | None = None
    input_rate: float | None = None
    output_rate: float | None = None
    consumer_lag: float | None = None
    top_psi: tuple[tuple[str, float], ...] = ()
    alerts: tuple[Alert, ...] = ()


def health_status(settings: Settings) -> HealthStatus:
    """Ask Flink and Prometheus; a source that does not answer is reported, never raised."""
    jobs: tuple[JobStatus, ...] = ()
    flink_error = None
    try:
        jobs = _jobs(settings)
    except (OSError, ValueError) as exc:  # URLError, refused, timeout, a garbled answer
        flink_error = f"Flink is not reachable at {settings.flink_rest_url} ({_reason(exc)})"
    prometheus: dict[str, Any] = {}
    prometheus_error = None
    try:
        prometheus = _from_prometheus(PrometheusClient.from_settings(settings, timeout_s=3.0))
    except PrometheusUnavailable as exc:
        prometheus_error = str(exc)
    return HealthStatus(
        flink_url=settings.flink_rest_url,
        prometheus_url=settings.prometheus_url,
        jobs=jobs,
        flink_error=flink_error,
        prometheus_error=prometheus_error,
        **prometheus,
    )


def _jobs(settings: Settings) -> tuple[JobStatus, ...]:
    """The jobs that are not over, or else the latest one (to show how it ended)."""
    jobs = sorted(
        rest(settings, "/jobs/overview")["jobs"], key=lambda j: j.get("start-time", 0), reverse=True
    )
    current = [j for j in jobs if j["state"] not in TERMINAL_STATES] or jobs[:1]
    return tuple(_job(settings, j) for j in current)


def _job(settings: Settings, job: dict[str, Any]) -> JobStatus:
    age = duration = None
    try:
        completed = (rest(settings, f"/jobs/{job['jid']}/checkpoints").get("latest") or {}).get(
            "completed"
        )
    except (OSError, ValueError) as exc:
        log.debug("no checkpoint statistics for %s: %s", job["jid"], exc)
        completed = None
    if completed:
        age = max(0.0, time.time() - completed["latest_ack_timestamp"] / 1000)
        duration = completed["end_to_end_duration"] / 1000
    return JobStatus(
        job_id=job["jid"],
        name=job["name"],
        state=job["state"],
        duration_s=job.get("duration", 0) / 1000,
        checkpoint_age_s=age,
        checkpoint_duration_s=duration,
    )


def _from_prometheus(client: PrometheusClient) -> dict[str, Any]:
    def scalar(expr: str) -> float | None:
        samples = client.query(expr)
        values = [s.value for s in samples if not math.isnan(s.value)]
        return sum(values) if values else None

    return {
        "input_rate": scalar("streamscore:input_events:rate1m"),
        "output_rate": scalar("sum(streamscore:predictions:rate1m)"),
        "consumer_lag": scalar("streamscore:consumer_lag:sum"),
        "top_psi": tuple(
            (s.labels.get("variable", "?"), s.value)
            for s in client.query(FEATURE_PSI_NOW)
            if not math.isnan(s.value)
        )[:TOP_FEATURES],
        "alerts": tuple(a for a in client.alerts() if a.state == "firing"),
    }


def format_status(status: HealthStatus) -> str:
    """The status as aligned lines for a terminal."""
    lines = ["job"]
    if status.flink_error:
        lines.append(f"  {status.flink_error}")
    elif not status.jobs:
        lines.append(f"  no job on the Flink cluster at {status.flink_url}")
    for job in status.jobs:
        lines.append(f"  {job.name:<28} {job.state:<12} for {_duration(job.duration_s)}")
        if job.checkpoint_age_s is None:
            lines.append("  last checkpoint              none completed yet")
        else:
            lines.append(
                f"  last checkpoint              {_duration(job.checkpoint_age_s)} ago, "
                f"took {_duration(job.checkpoint_duration_s or 0.0)}"
            )
    lines.append("metrics")
    if status.prometheus_error:
        lines.append(f"  {status.prometheus_error}")
        return "\n".join(lines)
    lines += [
        f"  input                        {_rate(status.input_rate)}",
        f"  output (predictions)         {_rate(status.output_rate)}",
        f"  consumer lag                 {_count(status.consumer_lag)}",
    ]
    if status.top_psi:
        lines.append(
            "  top feature drift (PSI 5m)   "
            + ", ".join(
                f"{name} {value:.3f}{' (drifted)' if value > PSI_ALERT_THRESHOLD else ''}"
                for name, value in status.top_psi
            )
        )
    else:
        lines.append("  top feature drift (PSI 5m)   no data")
    lines.append(f"alerts firing: {len(status.alerts) or 'none'}")
    by_name: dict[str, list[Alert]] = {}
    for alert in status.alerts:
        by_name.setdefault(alert.name, []).append(alert)
    for name, alerts in by_name.items():
        # One line per alert name: a drift alert fires once per drifted feature.
        lines.append(f"  {name}: {alerts[0].summary}")
        if len(alerts) > 1:
            others = [a.labels.get("variable") or a.summary for a in alerts[1:]]
            lines.append(f"    and {len(others)} more: {', '.join(others)}")
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "no data" if value is None else f"{value:,.1f}/s"


def _count(value: float | None) -> str:
    return "no data" if value is None else f"{value:,.0f} records"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc)
