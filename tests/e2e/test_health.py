"""Health on the real stack: drift gauges in the job, Prometheus' rules and alerts, the report
in a real browser, ``streamscore status``.

The model is trained on a generator run of ``TRAIN_SECONDS`` of event time; the job then gets
another seed's run of the same users and rate. Phase 1 (calm): that whole period at once, as a
backlog, then nothing for ``CALM_SECONDS`` while Prometheus scrapes and evaluates: the job's
5-minute window then holds the same kind of period the model was trained on, and no drift alert
may even be pending. Phase 2: at T a data drift starts (amounts x 2.5, unseen categories and
countries: ``produce --drift data@...``); the events since the calm backlog are sent at once,
the rest in real time. Prometheus must report the feature-drift alert firing for ``amount``
within 5 minutes of T. Then ``streamscore report`` is rendered in headless Chromium, as is
Prometheus' own graph page, and ``streamscore status`` names the drifted features and the alert.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streamscore.cli import main as cli
from streamscore.config import Settings
from streamscore.generator import Drift, GeneratorConfig, TransactionGenerator
from streamscore.kafka_io import new_producer, send_record
from streamscore.model.train import TrainConfig, train_from_generator
from streamscore.monitoring.prom_api import PrometheusClient
from streamscore.serde import Codec
from streamscore.stack import kafka
from tests.e2e.browser import drawn_fraction, rendered_dom, screenshot
from tests.e2e.helpers import REPO, RunJob

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

USERS = 300
RATE = 100  # events per second of event time
TRAIN_SECONDS = 300  # = the 5-minute drift window
CALM_SECONDS = 80  # > the alert's `for: 1m` plus a scrape and an evaluation
ALERT_DEADLINE_S = 300
DRIFT_ALERTS = ("StreamscoreFeatureDrift", "StreamscoreScoreDrift")
# Where the screenshots stay for a person to look at (under the git-ignored test state dir).
SCREENSHOTS = REPO / ".stack-test" / "screenshots"


@pytest.fixture(scope="module")
def period_start_ms() -> int:
    """Training and live traffic cover the same period of event time (another seed): features
    such as the hour of day must not differ because the test ran at another hour."""
    return int(time.time() * 1000) - TRAIN_SECONDS * 1000


@pytest.fixture(scope="module")
def reference_model(tmp_path_factory: pytest.TempPathFactory, period_start_ms: int) -> Path:
    models = tmp_path_factory.mktemp("health-models")
    train_from_generator(
        models,
        TrainConfig(events=RATE * TRAIN_SECONDS, num_boost_round=60),
        GeneratorConfig(users=USERS, events_per_second=RATE, seed=61, start_ms=period_start_ms),
    )
    return models


class Traffic:
    """One generator run: the calm period as a backlog, then (after ``drift_now``) the drifted
    events, those already due at once and the rest in real time."""

    def __init__(self, settings: Settings, start_ms: int) -> None:
        self.settings = settings
        self.start_ms = start_ms
        self.generator = TransactionGenerator(
            GeneratorConfig(
                users=USERS,
                events_per_second=RATE,
                seed=62,
                start_ms=self.start_ms,
                drifts=(Drift("data", TRAIN_SECONDS),),
            )
        )
        self.codec = Codec("event")
        self.producer = new_producer(settings)
        self.sent = 0
        self.stop = threading.Event()
        self._pending: dict[str, Any] | None = None

    def _send(self, event: dict[str, Any]) -> None:
        key = str(event["user_id"]).encode()
        send_record(
            self.producer,
            self.settings.topic_events,
            key,
            self.codec.encode(event),
            event["event_time"],
        )
        self.sent += 1

    def calm_backlog(self) -> None:
        drift_at = self.start_ms + TRAIN_SECONDS * 1000
        for tx in self.generator:
            if tx.event["event_time"] >= drift_at:
                self._pending = tx.event
                break
            self._send(tx.event)
        assert self.producer.flush(30) == 0

    def drift_in_real_time(self) -> None:
        assert self._pending is not None
        self._send(self._pending)
        for tx in self.generator:
            if self.stop.is_set():
                break
            wait = tx.event["event_time"] / 1000.0 - time.time()
            if wait > 0:
                self.producer.poll(0)
                time.sleep(wait)
            self._send(tx.event)
        self.producer.flush(30)


def drift_alerts(client: PrometheusClient) -> list[Any]:
    return [a for a in client.alerts() if a.name in DRIFT_ALERTS]


def wait_for_psi(client: PrometheusClient, events: int, timeout_s: float) -> dict[str, float]:
    """The 5-minute PSI of every variable, once Prometheus has seen all ``events`` counted in
    the drift windows (a window of a half-drained backlog holds only its oldest part)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counted = client.query('sum(streamscore_drift_window_events{window="5m"})')
        if counted and counted[0].value >= events:
            time.sleep(10)  # two more evaluations of the rules, on the complete windows
            series = client.query('streamscore:drift_psi:avg{window="5m"}')
            return {s.labels["variable"]: s.value for s in series}
        time.sleep(2)
    outcomes = {
        f"{s.labels.get('outcome')}": s.value
        for s in client.query("sum by (outcome) (streamscore_events_total)")
    }
    late = {
        f"{s.labels.get('handling')}": s.value
        for s in client.query("sum by (handling) (streamscore_late_events_total)")
    }
    raise AssertionError(
        f"the job did not count {events} events in {timeout_s:.0f}s "
        f"(events by outcome {outcomes}, late {late})"
    )


def test_drift_alert_fires_and_health_is_visible(
    run_job: RunJob,
    job_settings: dict[str, str],
    reference_model: Path,
    period_start_ms: int,
    stack: Settings,
    tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:8]
    topics = {
        f"topic_{name}": f"health-{run}-{name}"
        for name in ("events", "labels", "predictions", "dead_letters", "control", "outcomes")
    }
    overrides = {**topics, "models_dir": str(reference_model)}
    kafka.create_topics(stack.with_overrides(overrides))
    settings = run_job(**overrides)
    client = PrometheusClient(settings.prometheus_url)

    # Phase 1: the calm period, then silence. No drift alert, not even pending.
    traffic = Traffic(settings, period_start_ms)
    traffic.calm_backlog()
    calm_psi = wait_for_psi(client, traffic.sent, timeout_s=180)
    assert len(calm_psi) == 22, sorted(calm_psi)  # 21 features and the score
    log.info("calm PSI (5 min window): %s", {k: round(v, 3) for k, v in sorted(calm_psi.items())})
    calm_until = time.monotonic() + CALM_SECONDS
    while time.monotonic() < calm_until:
        assert drift_alerts(client) == [], "a drift alert without a drift"
        time.sleep(5)
    assert max(calm_psi.values()) < 0.2, calm_psi

    # Phase 2: the drift starts at T.
    drift_started = time.monotonic()
    sender = threading.Thread(target=traffic.drift_in_real_time, daemon=True)
    sender.start()
    firing: list[Any] = []
    try:
        while time.monotonic() - drift_started < ALERT_DEADLINE_S:
            firing = [
                a for a in drift_alerts(client)
                if a.state == "firing" and a.labels.get("variable") == "amount"
            ]  # fmt: skip
            if firing:
                break
            time.sleep(5)
        fired_after_s = time.monotonic() - drift_started
        assert firing, f"no amount drift alert firing {ALERT_DEADLINE_S}s after the drift"
        log.info(
            "drift alert firing %.0fs after the drift started; drifted variables now: %s",
            fired_after_s,
            sorted({a.labels.get("variable") for a in drift_alerts(client)}),
        )

        # The report, in a real browser: drawn plots, the alert listed.
        cli_settings = {**job_settings, **overrides}
        sets = [a for k, v in cli_settings.items() for a in ("--set", f"{k}={v}")]
        out = tmp_path / "report"
        result = CliRunner().invoke(cli, [*sets, "report", "--out", str(out), "--minutes", "15"])
        assert result.exit_code == 0, result.output
        index = out / "index.html"
        html = index.read_text()
        assert "StreamscoreFeatureDrift" in html
        pngs = sorted(out.glob("*.png"))
        assert len(pngs) >= 8 and all(f'src="{p.name}"' in html for p in pngs)
        shot = screenshot(index, SCREENSHOTS / "health-report.png")
        blank = tmp_path / "blank.html"
        blank.write_text("<html><body></body></html>")
        blank_shot = screenshot(blank, tmp_path / "blank.png")
        assert drawn_fraction(blank_shot) < 0.01
        assert drawn_fraction(shot) > 0.05, "the report rendered without its plots"

        # Prometheus' own graph page (the classic UI in Debian's build): its chart is drawn by
        # scripts after the page loads, so the check is on the rendered DOM: one line (an SVG
        # path) per series, none for a query without data.
        graph_url = f"{settings.prometheus_url}/graph?g0.expr={{expr}}&g0.tab=0&g0.range_input=15m"
        psi_url = graph_url.format(expr="streamscore%3Adrift_psi%3Aavg%7Bwindow%3D%225m%22%7D")
        assert len(re.findall(r'<path[^>]* d="M', rendered_dom(psi_url))) >= 22
        assert "<path" not in rendered_dom(graph_url.format(expr="no_such_series"))
        screenshot(psi_url, SCREENSHOTS / "prometheus-graph.png", height=1000,
                   script_time_ms=10_000)  # fmt: skip

        # A healthy job besides the drift: its checkpoints complete, it runs.
        service = {a.name for a in client.alerts() if a.state == "firing"}
        assert not service & {"StreamscoreCheckpointFailures", "StreamscoreJobNotRunning"}

        # Health at a glance in the terminal.
        status = CliRunner().invoke(cli, [*sets, "status"])
        assert status.exit_code == 0, status.output
        assert "RUNNING" in status.output
        assert "amount" in status.output and "StreamscoreFeatureDrift" in status.output
        log.info("streamscore status:\n%s", status.output)
    finally:
        traffic.stop.set()
        sender.join(timeout=30)
