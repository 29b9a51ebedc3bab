"""A single-node Apache Kafka broker in KRaft mode (broker and controller in one JVM)."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from streamscore.config import Settings
from streamscore.errors import StackError
from streamscore.stack import maven
from streamscore.stack.layout import StackLayout
from streamscore.stack.process import alive, read_pid, start_detached, wait_until

log = logging.getLogger(__name__)
NAME = "kafka"


def server_properties(s: Settings, data_dir: Path) -> str:
    host = s.kafka_host
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"listeners=PLAINTEXT://{host}:{s.kafka_port},CONTROLLER://{host}:{s.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://{host}:{s.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"controller.quorum.bootstrap.servers={host}:{s.kafka_controller_port}",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data_dir}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            # Flink's exactly-once sink keeps transactions open up to this long.
            "transaction.max.timeout.ms=900000",
            "log.retention.hours=168",
            "",
        ]
    )


def _java_cmd(layout: StackLayout, heap: str, main: str, *args: str) -> list[str]:
    java = shutil.which("java") or "java"
    return [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={layout.root / 'kafka' / 'log4j2.yaml'}",
        "-cp",
        f"{layout.kafka_libs}/*",
        main,
        *args,
    ]


LOG4J2 = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
      - name: kafka.log.LogCleaner
        level: WARN
"""


def _format_storage(s: Settings, layout: StackLayout) -> None:
    if (layout.kafka_data / "meta.properties").exists():
        return
    layout.kafka_data.mkdir(parents=True, exist_ok=True)
    cluster_id = (
        subprocess.run(
            _java_cmd(layout, "256m", "kafka.tools.StorageTool", "random-uuid"),
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    result = subprocess.run(
        _java_cmd(
            layout,
            "256m",
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            str(layout.kafka_config),
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"formatting Kafka storage failed:\n{result.stdout}\n{result.stderr}")


def metadata_ok(s: Settings) -> bool:
    from confluent_kafka.admin import AdminClient

    # log_level 0: the probe's "connection refused" while the broker starts is expected noise.
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap, "log_level": 0})
    return len(admin.list_topics(timeout=2).brokers) > 0


# Outputs carry the broker's append time: their producer timestamps are the events' times,
# which can be far from now (replays, backfills) and must never get a record rejected.
OUTPUT_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}
# A control record carries compressed model files (a 200-tree LightGBM text is ≈ 0.5-1 MB raw).
CONTROL_MAX_BYTES = 16 * 1024 * 1024


def topic_config(s: Settings, topic: str) -> dict[str, str]:
    """The config of a topic the stack creates (the outputs: ``OUTPUT_TOPIC_CONFIG``)."""
    if topic in (s.topic_predictions, s.topic_dead_letters, s.topic_outcomes):
        return dict(OUTPUT_TOPIC_CONFIG)
    if topic == s.topic_control:
        # Compacted (the latest record per kind survives) and room for model files.
        return {"cleanup.policy": "compact", "max.message.bytes": str(CONTROL_MAX_BYTES)}
    return {}


def create_topics(s: Settings) -> list[str]:
    """Create the configured topics that are missing; returns the names created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(t, num_partitions=n, replication_factor=1, config=topic_config(s, t))
        for t, n in s.topic_partitions().items()
        if t not in existing
    ]
    if not wanted:
        return []
    for topic, future in admin.create_topics(wanted, request_timeout=15).items():
        future.result()
        log.info("created topic %s", topic)
    return [t.topic for t in wanted]


def start(s: Settings, layout: StackLayout) -> int:
    pid = read_pid(layout.pid_file(NAME))
    if alive(pid):
        return pid  # type: ignore[return-value]
    maven.fetch("kafka", layout.kafka_libs, "kafka_2.13")
    layout.kafka_config.parent.mkdir(parents=True, exist_ok=True)
    layout.kafka_config.write_text(server_properties(s, layout.kafka_data))
    (layout.root / "kafka" / "log4j2.yaml").write_text(LOG4J2)
    _format_storage(s, layout)
    pid = start_detached(
        _java_cmd(layout, s.kafka_heap, "kafka.Kafka", str(layout.kafka_config)),
        layout.log_file(NAME),
        layout.pid_file(NAME),
    )
    wait_until(lambda: metadata_ok(s), "Kafka", 90, layout.log_file(NAME), pid)
    log.info("Kafka up on %s (pid %d)", s.kafka_bootstrap, pid)
    return pid
