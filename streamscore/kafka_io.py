"""Kafka plumbing shared by every client of ours: the producer, topic checks, the consume loop.

The CLI (``produce``, ``consume``), the benchmark and the tests all produce and read through
here, so they share one producer configuration (the one the job's Kafka sink behaves like:
idempotent, ``acks=all``, 5 ms linger) and one loop that turns "broker down" and "no such
topic" into errors a person can act on instead of a client that retries forever. Every
client, the stack's and the benchmark's too, is configured from ``client_config``, so a secured
broker (SASL_SSL) needs its settings in one place only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from streamscore.config import Settings
from streamscore.errors import KafkaUnavailable, UnknownTopic

PRODUCER_CONFIG: dict[str, Any] = {
    "linger.ms": 5,
    "enable.idempotence": True,
    "acks": "all",
    "queue.buffering.max.messages": 1_000_000,
}
METADATA_TIMEOUT_S = 5.0


def client_config(settings: Settings) -> dict[str, Any]:
    """How a librdkafka client (producer, consumer, admin) reaches the brokers: the bootstrap
    servers and, for SASL_SSL, the SCRAM credentials and the CA to check the brokers against.

    The dict holds the password in clear (librdkafka needs it so): never log it."""
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap}
    if settings.kafka_sasl_ssl:
        config["security.protocol"] = "SASL_SSL"
        config["sasl.mechanisms"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_location)
    return config


def connector_properties(settings: Settings) -> dict[str, str]:
    """The Java Kafka client properties of the job's Flink connector (source and sink) for a
    secured broker; empty for PLAINTEXT.

    No credentials: a ``sasl.jaas.config`` here would put the password into the job graph. The
    cluster's JVMs read a JAAS file with a ``KafkaClient`` section instead (the local stack
    writes one and points ``-Djava.security.auth.login.config`` at it)."""
    if not settings.kafka_sasl_ssl:
        return {}
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(settings.kafka_ssl_ca_location),
    }


def new_producer(settings: Settings, **overrides: Any) -> Producer:
    """A producer with the shared configuration (``overrides`` win)."""
    return Producer({**client_config(settings), **PRODUCER_CONFIG, **overrides})


def send_record(
    producer: Producer, topic: str, key: bytes, value: bytes, timestamp_ms: int | None = None
) -> None:
    """Produce one record, waiting for room when the client's queue is full."""
    while True:
        try:
            if timestamp_ms is None:
                producer.produce(topic, value=value, key=key)
            else:
                producer.produce(topic, value=value, key=key, timestamp=timestamp_ms)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.05)


def partitions_of(settings: Settings, topic: str) -> list[int]:
    """The topic's partitions; ``KafkaUnavailable`` or ``UnknownTopic`` if there are none.

    Asked through a client of its own whose librdkafka logging is off: while the broker is down
    that log repeats "connection refused" every 50 ms, and the one-line error says it better."""
    probe = AdminClient({**client_config(settings), "log_level": 0})
    try:
        metadata = probe.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"Kafka is not reachable at {settings.kafka_bootstrap} ({exc.args[0].str()}); "
            "start it with `streamscore stack up` or set kafka_host/kafka_port"
        ) from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise UnknownTopic(
            f"topic {topic!r} does not exist on {settings.kafka_bootstrap}; "
            f"it has: {', '.join(sorted(t for t in metadata.topics if not t.startswith('__')))}"
        )
    return sorted(found.partitions)


def read_messages(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = False,
    read_committed: bool = True,
    max_messages: int | None = None,
    idle_timeout_s: float | None = None,
    deadline_s: float | None = None,
    until: Callable[[], bool] | None = None,
) -> Iterator[Message]:
    """Yield the topic's messages in arrival order, with a throw-away consumer group.

    From the beginning, every partition is assigned at its first offset; otherwise the consumer
    joins at the end. Stops after ``max_messages``, after ``idle_timeout_s`` without a message,
    ``deadline_s`` after the start, or as soon as ``until()`` is true (checked at every poll),
    whichever comes first."""
    partitions = partitions_of(settings, topic)
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"streamscore-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
    )
    try:
        if from_beginning:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        else:
            consumer.subscribe([topic])
        seen = 0
        started = last = time.monotonic()
        while max_messages is None or seen < max_messages:
            now = time.monotonic()
            if deadline_s is not None and now - started > deadline_s:
                return
            if until is not None and until():
                return
            msg = consumer.poll(0.2)
            if msg is None:
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    return
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaUnavailable(f"reading {topic}: {error}")
            last = time.monotonic()
            seen += 1
            yield msg
    finally:
        consumer.close()
