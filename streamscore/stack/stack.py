"""``stack up | down | status``: the servers together, supervised (stack/supervision.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from streamscore.config import Settings
from streamscore.stack import flink, kafka, maven, prometheus, redis_server, supervision
from streamscore.stack.layout import StackLayout
from streamscore.stack.process import alive, ensure_port_free, read_pid, stop_pid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    restarts: int = 0
    state: str = ""


def layout_of(s: Settings) -> StackLayout:
    return StackLayout(s.state_dir.resolve())


def programs(s: Settings, layout: StackLayout) -> list[supervision.Program]:
    """Every server, in start order (supervisord starts them together; ``up`` waits for each
    to be healthy in this order)."""
    return [
        kafka.program(s, layout),
        redis_server.program(s, layout),
        *flink.programs(s, layout),
        prometheus.program(s, layout),
    ]


def ports_to_claim(s: Settings, layout: StackLayout) -> list[tuple[str, int, str]]:
    """(host, port, what) of every server ``up`` would start: all of them unless the stack's
    supervisor already runs."""
    if supervision.running(layout):
        return []
    return [
        (s.kafka_host, s.kafka_port, "Kafka"),
        (s.kafka_host, s.kafka_controller_port, "the Kafka controller"),
        (s.redis_host, s.redis_port, "Redis"),
        (s.flink_rest_host, s.flink_rest_port, "the Flink REST API / web UI"),
        ("127.0.0.1", s.flink_rpc_port, "the Flink JobManager RPC"),
        (s.prometheus_host, s.prometheus_port, "Prometheus"),
    ]


def up(s: Settings) -> None:
    """Start what is not running under the stack's supervisor and wait until all of it is
    healthy. Idempotent: a running stack is left as it is (a crashed server has already been
    restarted by the supervisor).

    Every port is checked before anything is fetched or started, so a taken port fails at once
    with the port and the server named."""
    layout = layout_of(s)
    for host, port, what in ports_to_claim(s, layout):
        ensure_port_free(host, port, what)
    layout.create()
    maven.require_java(17)
    maven.fetch("flink-connector", layout.flink_jars, "flink-sql-connector-kafka")
    kafka.prepare(s, layout)
    redis_server.prepare(s, layout)
    flink.prepare(s, layout)
    prometheus.prepare(s, layout)
    supervision.up(layout, programs(s, layout))
    kafka.wait_ready(s, layout)
    kafka.create_topics(s)
    redis_server.wait_ready(s, layout)
    flink.wait_ready(s, layout)
    prometheus.wait_ready(s, layout)


def _legacy_components(layout: StackLayout) -> list[str]:
    """Servers an older streamscore started by pid file (before the supervisor)."""
    taskmanagers = sorted(p.stem for p in layout.pids.glob("flink-taskmanager*.pid"))
    names = [prometheus.NAME, *taskmanagers, flink.JOBMANAGER, redis_server.NAME, kafka.NAME]
    return [name for name in names if layout.pid_file(name).exists()]


def down(s: Settings) -> None:
    layout = layout_of(s)
    supervision.down(layout)
    for name in _legacy_components(layout):
        pid_file = layout.pid_file(name)
        pid = read_pid(pid_file)
        if alive(pid):
            stop_pid(pid, name)  # type: ignore[arg-type]
        pid_file.unlink(missing_ok=True)


def status(s: Settings) -> list[ComponentStatus]:
    layout = layout_of(s)
    supervised = {p.name: p for p in supervision.status(layout)}
    result = []
    names = [kafka.NAME, redis_server.NAME, flink.JOBMANAGER, *flink.taskmanager_names(s)]
    for name in [*names, prometheus.NAME]:
        found = supervised.get(name)
        if found is None:
            result.append(ComponentStatus(name, None, False, 0, "STOPPED"))
        else:
            result.append(
                ComponentStatus(found.name, found.pid, found.running, found.restarts, found.state)
            )
    return result


def pid_of(s: Settings, name: str) -> int | None:
    """The pid of a running server of the stack (e.g. ``flink-taskmanager-0``, ``kafka``)."""
    return supervision.pid_of(layout_of(s), name)
