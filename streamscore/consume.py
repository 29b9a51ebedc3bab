"""Reads and decodes a topic: predictions, dead letters, labels or events."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from streamscore.config import Settings
from streamscore.errors import UnknownTopic
from streamscore.kafka_io import read_messages
from streamscore.serde import Codec


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    record: dict[str, Any] | None  # None when the value is not a valid record of the topic's type
    raw: bytes


def record_type_of(settings: Settings, topic: str) -> str:
    types = {
        settings.topic_predictions: "prediction",
        settings.topic_dead_letters: "dead_letter",
        settings.topic_labels: "label",
        settings.topic_events: "event",
    }
    if topic not in types:
        raise UnknownTopic(f"unknown topic {topic!r}; expected one of {sorted(types)}")
    return types[topic]


def consume(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = False,
    max_messages: int | None = None,
    idle_timeout_s: float | None = None,
    read_committed: bool = True,
) -> Iterator[Message]:
    """Yield decoded messages; stop after ``max_messages`` or ``idle_timeout_s`` without any."""
    codec = Codec(record_type_of(settings, topic))
    for msg in read_messages(
        settings,
        topic,
        from_beginning=from_beginning,
        read_committed=read_committed,
        max_messages=max_messages,
        idle_timeout_s=idle_timeout_s,
    ):
        value = msg.value() or b""
        try:
            record = codec.decode(value)
        except Exception:
            record = None
        yield Message(
            msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(), record, value
        )


def as_json(message: Message) -> dict[str, Any]:
    record = dict(message.record) if message.record is not None else None
    if record is not None:
        for name, value in record.items():
            if isinstance(value, bytes):
                record[name] = base64.b64encode(value).decode()
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp": message.timestamp_ms,
        "key": message.key.decode(errors="replace") if message.key else None,
        "record": record,
        **({} if record is not None else {"raw_base64": base64.b64encode(message.raw).decode()}),
    }


def pretty(message: Message) -> str:
    r = message.record
    if r is None:
        return f"{message.partition}/{message.offset}: <undecodable {len(message.raw)} bytes>"
    if "decision" in r:
        flags = f" degraded={','.join(r['degraded'])}" if r["degraded"] else ""
        return (
            f"{r['event_id']:<16} {r['user_id']:<9} score={r['score']:.4f} "
            f"{r['decision']:<8} model={r['model_version']} "
            f"latency={r['scored_time'] - r['ingest_time']}ms{flags}"
        )
    if "reason" in r:
        return (
            f"{r['reason']:<22} {r['source_topic']}/{r['source_partition']}@{r['source_offset']}"
            f" ({len(r['original'])} bytes): {r['detail']}"
        )
    if "is_fraud" in r:
        return f"{r['event_id']:<16} {r['user_id']:<9} is_fraud={r['is_fraud']}"
    return (
        f"{r['event_id']:<16} {r['user_id']:<9} {r['amount']:>10.2f} {r['currency']} "
        f"{r['merchant_category']:<13} {r['country']} {r['channel']}"
    )
