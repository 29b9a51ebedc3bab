"""``stack up | down | status``: the three servers together, in dependency order."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from streamscore.config import Settings
from streamscore.stack import flink, kafka, maven, prometheus, redis_server
from streamscore.stack.layout import StackLayout
from streamscore.stack.process import alive, ensure_port_free, read_pid, stop_pid

log = logging.getLogger(__name__)


def components(layout: StackLayout) -> list[str]:
    """Stop order: Prometheus, then the job's cluster, so nothing writes to Kafka or Redis after
    them. TaskManagers are found by pid file, so a changed ``flink_taskmanagers`` stops them
    all."""
    taskmanagers = sorted(p.stem for p in layout.pids.glob("flink-taskmanager*.pid"))
    return [prometheus.NAME, *taskmanagers, flink.JOBMANAGER, redis_server.NAME, kafka.NAME]


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool


def layout_of(s: Settings) -> StackLayout:
    return StackLayout(s.state_dir.resolve())


def ports_to_claim(s: Settings, layout: StackLayout) -> list[tuple[str, int, str]]:
    """(host, port, what) of every server that is not running yet and will be started."""

    def stopped(name: str) -> bool:
        return not alive(read_pid(layout.pid_file(name)))

    ports = []
    if stopped(kafka.NAME):
        ports += [
            (s.kafka_host, s.kafka_port, "Kafka"),
            (s.kafka_host, s.kafka_controller_port, "the Kafka controller"),
        ]
    if stopped(redis_server.NAME):
        ports.append((s.redis_host, s.redis_port, "Redis"))
    if stopped(prometheus.NAME):
        ports.append((s.prometheus_host, s.prometheus_port, "Prometheus"))
    if stopped(flink.JOBMANAGER):
        ports += [
            (s.flink_rest_host, s.flink_rest_port, "the Flink REST API / web UI"),
            ("127.0.0.1", s.flink_rpc_port, "the Flink JobManager RPC"),
        ]
    return ports


def up(s: Settings) -> None:
    """Start what is not running, in dependency order, and wait until all of it is healthy.

    Every port is checked before anything is fetched or started, so a taken port fails at once
    with the port and the server named."""
    layout = layout_of(s)
    for host, port, what in ports_to_claim(s, layout):
        ensure_port_free(host, port, what)
    layout.create()
    maven.require_java(17)
    maven.fetch("kafka", layout.kafka_libs, "kafka_2.13")
    maven.fetch("flink-connector", layout.flink_jars, "flink-sql-connector-kafka")
    kafka.start(s, layout)
    kafka.create_topics(s)
    redis_server.start(s, layout)
    flink.start(s, layout)
    prometheus.start(s, layout)


def down(s: Settings) -> None:
    layout = layout_of(s)
    for name in components(layout):
        pid_file = layout.pid_file(name)
        pid = read_pid(pid_file)
        if pid:
            stop_pid(pid, name)
        pid_file.unlink(missing_ok=True)


def status(s: Settings) -> list[ComponentStatus]:
    layout = layout_of(s)
    result = []
    for name in reversed(components(layout)):
        pid = read_pid(layout.pid_file(name))
        result.append(ComponentStatus(name, pid, alive(pid)))
    return result
