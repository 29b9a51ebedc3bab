"""A single-node Apache Kafka broker in KRaft mode (broker and controller in one JVM).

Secured (``kafka_security_protocol=SASL_SSL``), clients and the broker itself talk over one
SASL_SSL listener with SCRAM-SHA-512 users: inter-broker traffic (a single node still sends
itself transaction markers through it) runs there too, as a broker user of its own, so no
listener but the controller's accepts a connection without a password. The CONTROLLER listener
stays PLAINTEXT on loopback: KRaft controllers cannot check SCRAM (the credentials live in the
metadata they serve), and clients never need that port. The broker user is written into the
metadata when the storage is formatted; the client user is (re)set through the Admin API at
every start, so a changed ``kafka_sasl_password`` takes effect without a new data dir.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamscore.config import Settings
from streamscore.errors import StackError
from streamscore.kafka_io import client_config
from streamscore.stack import credentials, maven, tls
from streamscore.stack.layout import StackLayout
from streamscore.stack.process import wait_until
from streamscore.stack.supervision import Program

log = logging.getLogger(__name__)
NAME = "kafka"


@dataclass(frozen=True)
class BrokerSecurity:
    """What a SASL_SSL broker reads besides its settings: its TLS files and its own user."""

    tls: tls.BrokerTls
    user: str
    password: str


def _security_lines(security: BrokerSecurity, mechanism: str) -> list[str]:
    login = credentials.scram_login(
        "org.apache.kafka.common.security.scram.ScramLoginModule",
        security.user,
        security.password,
    )
    return [
        f"sasl.enabled.mechanisms={mechanism}",
        f"sasl.mechanism.inter.broker.protocol={mechanism}",
        f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config={login}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={security.tls.keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={security.tls.ca_cert}",
        "ssl.client.auth=none",
    ]


def server_properties(s: Settings, data_dir: Path, security: BrokerSecurity | None = None) -> str:
    """The broker's config; ``security`` (needed for SASL_SSL) holds the broker's password, so
    the file is then written readable by its owner only."""
    host = s.kafka_host
    if s.kafka_sasl_ssl and security is None:
        raise ValueError("a SASL_SSL broker needs its BrokerSecurity")
    listener = "SASL_SSL" if s.kafka_sasl_ssl else "PLAINTEXT"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"listeners={listener}://{host}:{s.kafka_port},CONTROLLER://{host}:{s.kafka_controller_port}",
            f"advertised.listeners={listener}://{host}:{s.kafka_port}",
            "controller.listener.names=CONTROLLER",
            f"listener.security.protocol.map={listener}:{listener},CONTROLLER:PLAINTEXT",
            f"controller.quorum.bootstrap.servers={host}:{s.kafka_controller_port}",
            f"inter.broker.listener.name={listener}",
            *(_security_lines(security, s.kafka_sasl_mechanism) if security else []),
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


def _java_cmd(
    layout: StackLayout, heap: str, main: str, *args: str, c1_only: bool = False
) -> list[str]:
    java = shutil.which("java") or "java"
    return [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        *(["-XX:TieredStopAtLevel=1"] if c1_only else []),
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


def _format_storage(
    s: Settings, layout: StackLayout, security: BrokerSecurity | None = None
) -> None:
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
            *_scram_arguments(s, security),
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"formatting Kafka storage failed:\n{result.stdout}\n{result.stderr}")


def _scram_arguments(s: Settings, security: BrokerSecurity | None) -> list[str]:
    """``--add-scram`` for the broker's own user (salted: no password on the command line)."""
    if security is None:
        return []
    scram = credentials.salted_scram_argument(
        s.kafka_sasl_mechanism, security.user, security.password
    )
    return ["--add-scram", scram]


def broker_security(s: Settings, layout: StackLayout) -> BrokerSecurity:
    """The TLS files (generated at the first secured start) and the broker user of the stack.

    The clients' CA setting must name the CA generated here: nothing else signed the broker."""
    directory = credentials.secrets_dir(layout)
    files = tls.ensure_broker_tls(directory, ["127.0.0.1", "localhost", s.kafka_host])
    if s.kafka_ssl_ca_location != files.ca_cert:
        raise StackError(
            f"kafka_ssl_ca_location is {s.kafka_ssl_ca_location}, but the local stack's broker "
            f"certificate is signed by the CA in {files.ca_cert}: set kafka_ssl_ca_location to it"
        )
    return BrokerSecurity(files, credentials.BROKER_USER, credentials.broker_password(layout))


def _broker_admin_config(s: Settings, layout: StackLayout) -> dict[str, Any]:
    """A client config logged in as the broker user: the stack's own way in, which works
    before the client user exists (see ``ensure_client_user``)."""
    config = client_config(s)
    if s.kafka_sasl_ssl:
        config["sasl.username"] = credentials.BROKER_USER
        config["sasl.password"] = credentials.broker_password(layout)
    return config


def ensure_client_user(s: Settings, layout: StackLayout) -> None:
    """Create the clients' SCRAM user, or set its password to the configured one."""
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    if s.kafka_sasl_username is None or s.kafka_sasl_password is None:
        raise StackError("SASL_SSL needs kafka_sasl_username and kafka_sasl_password")
    admin = AdminClient({**_broker_admin_config(s, layout), "log_level": 0})
    upsert = UserScramCredentialUpsertion(
        s.kafka_sasl_username,
        ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, credentials.SCRAM_ITERATIONS),
        s.kafka_sasl_password.get_secret_value().encode(),
    )
    for future in admin.alter_user_scram_credentials([upsert], request_timeout=15).values():
        future.result()
    log.info("Kafka SCRAM user %s set", s.kafka_sasl_username)


def metadata_ok(s: Settings, config: dict[str, Any] | None = None) -> bool:
    """Whether the broker answers a metadata request (as ``config``, the settings' client by
    default)."""
    from confluent_kafka.admin import AdminClient

    # log_level 0: the probe's "connection refused" while the broker starts is expected noise.
    admin = AdminClient({**(config or client_config(s)), "log_level": 0})
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
    if topic in (s.topic_events, s.topic_labels):
        # The job's watermark comes from these records' timestamps: the broker refuses one
        # stamped further ahead of its clock than the job accepts an event (a producer's broken
        # clock would otherwise make every later event late).
        return {"message.timestamp.after.max.ms": str(s.max_event_ahead_ms)}
    return {}


def create_topics(s: Settings) -> list[str]:
    """Create the configured topics that are missing; returns the names created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config(s))
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


def prepare(s: Settings, layout: StackLayout) -> None:
    """Jars, config and formatted storage: what must exist before the broker starts."""
    maven.fetch("kafka", layout.kafka_libs, "kafka_2.13")
    layout.kafka_config.parent.mkdir(parents=True, exist_ok=True)
    if s.kafka_sasl_ssl:
        security = broker_security(s, layout)
        text = server_properties(s, layout.kafka_data, security)
        credentials.write_private(layout.kafka_config, text)  # holds the broker's password
    else:
        security = None
        layout.kafka_config.write_text(server_properties(s, layout.kafka_data))
    (layout.root / "kafka" / "log4j2.yaml").write_text(LOG4J2)
    _format_storage(s, layout, security)


def program(s: Settings, layout: StackLayout) -> Program:
    command = _java_cmd(
        layout, s.kafka_heap, "kafka.Kafka", str(layout.kafka_config), c1_only=s.kafka_jit_c1_only
    )
    return Program(NAME, command, start_seconds=5, stop_wait_seconds=60)


def wait_ready(s: Settings, layout: StackLayout) -> None:
    broker = _broker_admin_config(s, layout)
    wait_until(lambda: metadata_ok(s, broker), "Kafka", 90, layout.log_file(NAME))
    if s.kafka_sasl_ssl:
        ensure_client_user(s, layout)
        # The new credential reaches the broker through its metadata log: until then, wait.
        wait_until(lambda: metadata_ok(s), "Kafka's client login", 30, layout.log_file(NAME))
    log.info("Kafka up on %s (%s)", s.kafka_bootstrap, s.kafka_security_protocol)
