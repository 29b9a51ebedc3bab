"""Prometheus metrics of the scoring job (service health and model health).

One registry per Python process. In Flink's thread mode every subtask of a TaskManager shares
one interpreter, so the HTTP endpoint is started once per process and the first free port of a
small range is used (several TaskManagers on one host each get their own).
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SCORE_BUCKETS = tuple(i / 20 for i in range(1, 21))


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "streamscore_events", "Input records by outcome", ["outcome"], registry=r
        )
        self.dead_letters = Counter(
            "streamscore_dead_letters", "Dead letters by reason", ["reason"], registry=r
        )
        self.late_events = Counter(
            "streamscore_late_events",
            "Events behind the watermark, by how they were handled",
            ["handling"],
            registry=r,
        )
        self.predictions = Counter(
            "streamscore_predictions",
            "Predictions by decision",
            ["decision", "model_version"],
            registry=r,
        )
        self.degraded = Counter(
            "streamscore_degraded_predictions",
            "Predictions made while a component was unavailable",
            ["component"],
            registry=r,
        )
        self.feature_store_writes = Counter(
            "streamscore_feature_store_writes",
            "Feature store writes by result",
            ["result"],
            registry=r,
        )
        self.latency = Histogram(
            "streamscore_ingest_to_score_seconds",
            "Kafka record timestamp to score computed",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.scores = Histogram(
            "streamscore_score", "Distribution of model scores", registry=r, buckets=SCORE_BUCKETS
        )
        self.expired_users = Counter(
            "streamscore_expired_users", "Users whose state expired after inactivity", registry=r
        )
        self.model_info = Gauge(
            "streamscore_model_info",
            "The model version in use (value 1)",
            ["model_version", "feature_set_version"],
            registry=r,
        )


_process_metrics: Metrics | None = None
_lock = threading.Lock()


def process_metrics(host: str = "127.0.0.1", port: int | None = None, tries: int = 10) -> Metrics:
    """The process-wide metrics, serving ``/metrics`` on the first free port from ``port``."""
    global _process_metrics
    with _lock:
        if _process_metrics is None:
            _process_metrics = Metrics()
            if port:
                for candidate in range(port, port + tries):
                    try:
                        start_http_server(candidate, addr=host, registry=_process_metrics.registry)
                        log.info("metrics on http://%s:%d/metrics", host, candidate)
                        break
                    except OSError:
                        continue
                else:
                    log.warning("no free metrics port in %d..%d", port, port + tries - 1)
        return _process_metrics
