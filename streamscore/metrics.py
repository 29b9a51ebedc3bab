"""Prometheus metrics of the scoring job (service health and model health).

The scoring path updates them for every event, so they are plain counters and bucket arrays
(``metric_values.py``, compiled with the scoring path), read by a custom collector when
Prometheus scrapes: prometheus-client's own Counter and Histogram take a lock per update, which
cost about 8 % of the scoring thread. Each metric is written by one task thread (our
TaskManagers have one slot each); a scrape may read a value that is a few events stale, which
is fine for monitoring.

One registry per Python process. In Flink's thread mode every subtask of a TaskManager shares
one interpreter, so the HTTP endpoint is started once per process, on the first free port of a
small range (several TaskManagers on one host each get their own).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from streamscore.metric_values import Family, Gauge, Histogram, LabelledCounter
from streamscore.os_thread_names import name_os_thread

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SCORE_BUCKETS = tuple(i / 20 for i in range(1, 21))
STATE_WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics(Collector):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.events = LabelledCounter(
            "streamscore_events", "Input records by outcome", ("outcome",)
        )
        self.dead_letters = LabelledCounter(
            "streamscore_dead_letters", "Dead letters by reason", ("reason",)
        )
        self.late_events = LabelledCounter(
            "streamscore_late_events",
            "Events behind the watermark, by how they were handled",
            ("handling",),
        )
        self.predictions = LabelledCounter(
            "streamscore_predictions", "Predictions by decision", ("decision", "model_version")
        )
        self.degraded = LabelledCounter(
            "streamscore_degraded_predictions",
            "Predictions made while a component was unavailable",
            ("component",),
        )
        self.feature_store_writes = LabelledCounter(
            "streamscore_feature_store_writes", "Feature store writes by result", ("result",)
        )
        self.feature_store_catch_ups = LabelledCounter(
            "streamscore_feature_store_catch_ups",
            "Times the feature store writer went to redis_catch_up_flush_interval_ms: the job "
            "was catching up on a backlog",
            (),
        )
        self.expired_users = LabelledCounter(
            "streamscore_expired_users", "Users whose state expired after inactivity", ()
        )
        self.latency = Histogram(
            "streamscore_ingest_to_score_seconds",
            "Kafka record timestamp to score computed",
            LATENCY_BUCKETS,
        )
        self.state_writes = Histogram(
            "streamscore_state_write_seconds",
            "Scoring operator: time spent writing its waiting state changes to Flink's keyed "
            "state in one go (before a checkpoint barrier, or past state_write_behind_max), "
            "during which no record is processed",
            STATE_WRITE_BUCKETS,
        )
        self.state_written_ahead = LabelledCounter(
            "streamscore_state_written_ahead",
            "Scoring operator: users whose changed state or label-join entries were written "
            "while it kept up, ahead of the write-out before the next checkpoint barrier "
            "(written again if changed again)",
            (),
        )
        self.state_flushed_ahead = LabelledCounter(
            "streamscore_state_flushed_ahead",
            "Scoring operator: flushes of RocksDB's memtables started once the users written "
            "ahead of a barrier had caught up, so that the checkpoint's own flush, which holds "
            "up the records behind the barrier, has only the last changes left",
            (),
        )
        self.join_state_reads = LabelledCounter(
            "streamscore_join_state_reads",
            "Scoring operator: label-join entries read from Flink's keyed state (neither waiting "
            "to be written nor in the pending cache, pending_cache_outcomes), by whether one was "
            "found (written before: a parked label its event came for, or a pending entry that "
            "had left the cache) or not (a label before its event)",
            ("found",),
        )
        self.state_reads_skipped = LabelledCounter(
            "streamscore_state_reads_skipped",
            "Scoring operator: reads of Flink's keyed state left out because the user had never "
            "been seen (job/state.py KnownUsers), by state: the user's value or a label-join "
            "entry",
            ("state",),
        )
        self.scores = Histogram("streamscore_score", "Distribution of model scores", SCORE_BUCKETS)
        self.model_info = Gauge(
            "streamscore_model_info",
            "The models that decide: the champion (value 1) and a canary candidate (value = its "
            "share of users)",
            ("role", "model_version", "feature_set_version"),
        )
        self.challenger_info = Gauge(
            "streamscore_challenger_info", "The challenger snapshot scoring in shadow", ("version",)
        )
        self.labels = LabelledCounter(
            "streamscore_labels",
            "Labels by what became of them (joined, parked, label:* dead letters, learned, ...)",
            ("outcome",),
        )
        self.control = LabelledCounter(
            "streamscore_control_records",
            "Control records by kind and result (accepted, other_job, control:* refusals)",
            ("kind", "result"),
        )
        self._families: list[Family] = [
            self.events, self.dead_letters, self.late_events, self.predictions, self.degraded,
            self.feature_store_writes, self.feature_store_catch_ups, self.expired_users,
            self.latency, self.state_writes, self.state_written_ahead, self.state_flushed_ahead,
            self.join_state_reads, self.state_reads_skipped, self.scores, self.model_info,
            self.challenger_info, self.labels, self.control,
        ]  # fmt: skip
        # Readouts computed when Prometheus scrapes, by name: the learner's live quality
        # ("quality", "concept_drift") and the scorer's data drift ("drift"). An operator sets
        # its entry in open() and removes it in close(), so a cancelled job's readouts do not
        # outlive it in a TaskManager that runs the next job.
        self.sources: dict[str, Callable[[], Iterator[Metric]]] = {}
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.collect()
        for name, source in list(self.sources.items()):
            try:
                yield from source()
            except Exception:  # a scrape must never fail because of one readout
                log.exception("%s readout failed", name)


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
                        _, thread = start_http_server(
                            candidate, addr=host, registry=_process_metrics.registry
                        )
                        name_os_thread(thread, "metrics-http")
                        log.info("metrics on http://%s:%d/metrics", host, candidate)
                        break
                    except OSError:
                        continue
                else:
                    log.warning("no free metrics port in %d..%d", port, port + tries - 1)
        return _process_metrics
