"""Prometheus on loopback, from the system's ``prometheus`` binary (Debian's package).

It scrapes the job's metrics endpoints (one per TaskManager, on the first free port from
``metrics_port``) and Flink's Prometheus reporter (one per JVM, in ``flink_prometheus_port``),
evaluates ``streamscore/monitoring/rules.yml``, and keeps its data under the stack's state dir.
Unused ports in those ranges are scraped too and show ``up == 0``: cheap, and it means a
TaskManager added later is scraped without touching this config.
"""

from __future__ import annotations

import logging
import shutil
import urllib.request
from typing import Any

import yaml

from streamscore.config import Settings
from streamscore.errors import StackError
from streamscore.resources import prometheus_rules
from streamscore.stack.layout import StackLayout
from streamscore.stack.process import wait_until
from streamscore.stack.supervision import Program

log = logging.getLogger(__name__)
NAME = "prometheus"
METRICS_PORT_TRIES = 10  # as metrics.process_metrics: the job's endpoints take the first free port


def port_range(spec: str) -> list[int]:
    """``"9249-9259"`` -> [9249, ..., 9259]; ``"9249"`` -> [9249]."""
    first, _, last = spec.partition("-")
    return list(range(int(first), int(last or first) + 1))


def scrape_config(s: Settings) -> dict[str, Any]:
    interval = f"{s.prometheus_scrape_interval_s}s"
    job_ports = range(s.metrics_port, s.metrics_port + METRICS_PORT_TRIES)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(prometheus_rules())],
        "scrape_configs": [
            {
                "job_name": "streamscore",
                "static_configs": [{"targets": [f"{s.metrics_host}:{p}" for p in job_ports]}],
            },
            {
                "job_name": "flink",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{p}" for p in port_range(s.flink_prometheus_port)]}
                ],
            },
        ],
    }


def ready(s: Settings) -> bool:
    with urllib.request.urlopen(f"{s.prometheus_url}/-/ready", timeout=2) as response:
        return response.status == 200


def prepare(s: Settings, layout: StackLayout) -> None:
    layout.prometheus_data.mkdir(parents=True, exist_ok=True)
    layout.prometheus_config.write_text(yaml.safe_dump(scrape_config(s), sort_keys=False))


def program(s: Settings, layout: StackLayout) -> Program:
    binary = shutil.which("prometheus")
    if binary is None:
        raise StackError(
            "prometheus is not installed: apt-get install prometheus "
            "(`make setup` installs it when run as root)"
        )
    command = [
        binary,
        f"--config.file={layout.prometheus_config}",
        f"--storage.tsdb.path={layout.prometheus_data}",
        f"--storage.tsdb.retention.time={s.prometheus_retention}",
        f"--web.listen-address={s.prometheus_host}:{s.prometheus_port}",
        "--web.enable-lifecycle",
    ]
    return Program(NAME, command)


def wait_ready(s: Settings, layout: StackLayout) -> None:
    wait_until(lambda: ready(s), "Prometheus", 60, layout.log_file(NAME))
    log.info("Prometheus up: %s", s.prometheus_url)
