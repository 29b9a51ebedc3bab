"""Reading topics until an expected set of records has arrived, for the end-to-end tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streamscore.config import Settings
from streamscore.serde import Codec


def send(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5, "enable.idempotence": True}
    )
    for key, value in records:
        producer.produce(settings.topic_events, key=key, value=value)
        producer.poll(0)
    assert producer.flush(30) == 0


def collect(
    settings: Settings,
    topic: str,
    record_type: str,
    keep: Callable[[dict[str, Any]], bool],
    expected: int,
    timeout_s: float,
    settle_s: float = 3.0,
    read_committed: bool = True,
) -> list[dict[str, Any]]:
    """All records of ``topic`` that ``keep`` accepts; waits until ``expected`` have arrived,
    then keeps reading for ``settle_s`` so that duplicates would show."""
    codec = Codec(record_type)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"e2e-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            record = codec.decode(msg.value())
            if keep(record):
                found.append(record)
                if len(found) >= expected and settle_until is None:
                    settle_until = time.monotonic() + settle_s
        return found
    finally:
        consumer.close()
