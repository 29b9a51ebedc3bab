"""A small client of the Prometheus HTTP API (``/api/v1``), on urllib.

The health report and ``streamscore status`` only need four read-only calls, so a few functions
on the standard library do instead of another dependency. An unreachable Prometheus raises
``PrometheusUnavailable`` (its message tells the user what to do); a query Prometheus rejects is
our bug and raises ``ValueError`` with Prometheus' own explanation.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from streamscore.config import Settings
from streamscore.errors import PrometheusUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One series of an instant query: its labels and its value now."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and its (unix seconds, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class Alert:
    """An alert that is pending (its condition holds, for less than its ``for:``) or firing."""

    name: str
    state: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    active_at: str = ""
    value: str = ""

    @property
    def summary(self) -> str:
        return self.annotations.get("summary", "")


class PrometheusClient:
    """Read-only calls to one Prometheus server."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings, timeout_s: float = 5.0) -> PrometheusClient:
        return cls(settings.prometheus_url, timeout_s)

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query (now, or at unix time ``at``); scalars come back as one sample."""
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise ValueError(f"{expr!r} returned a {data['resultType']}, not an instant vector")
        return [Sample(r["metric"], float(r["value"][1])) for r in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """A range query from ``start`` to ``end`` (unix seconds), one point every ``step`` s."""
        data = self._get(
            "/api/v1/query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        return [
            Series(r["metric"], [(float(t), float(v)) for t, v in r["values"]])
            for r in data["result"]
        ]

    def alerts(self) -> list[Alert]:
        """Every alert that is pending or firing now."""
        return [
            Alert(
                name=a["labels"].get("alertname", ""),
                state=a.get("state", ""),
                labels=a.get("labels", {}),
                annotations=a.get("annotations", {}),
                active_at=a.get("activeAt", ""),
                value=a.get("value", ""),
            )
            for a in self._get("/api/v1/alerts", {})["alerts"]
        ]

    def rules(self) -> list[dict[str, Any]]:
        """The loaded rule groups as Prometheus returns them (each with its rules' health)."""
        return list(self._get("/api/v1/rules", {})["groups"])

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            # 400/422: a query Prometheus cannot parse or run; 5xx: it is not ready.
            detail = _error_of(exc)
            if exc.code in (400, 422):
                query = params.get("query", path)
                raise ValueError(f"Prometheus rejected {query!r}: {detail}") from None
            raise PrometheusUnavailable(self.base_url, f"HTTP {exc.code}: {detail}") from None
        except (OSError, json.JSONDecodeError) as exc:  # URLError, refused, timeout
            raise PrometheusUnavailable(self.base_url, _reason(exc)) from None
        if body.get("status") != "success":
            raise ValueError(f"Prometheus answered {path} with {body.get('error', body)!r}")
        for warning in body.get("warnings", ()):
            log.warning("Prometheus: %s", warning)
        return body["data"]


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", exc.reason))
    except (OSError, ValueError):
        return str(exc.reason)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc)
