"""Builders of the job's outgoing records: predictions and dead letters, one builder each."""

from __future__ import annotations

import time
from typing import Any

from pyflink.common import Row

from streamscore.errors import Rejection
from streamscore.metrics import Metrics
from streamscore.serde import Codec


class DeadLetters:
    """Turns a rejected input into its dead-letter record and counts it.

    Every dead letter of the job (undecodable, invalid, late) is built here: the Kafka key is
    ``<topic>/<partition>`` of the input, the value carries the reason, the detail, where the
    input came from and its original bytes."""

    def __init__(self, schema_text: dict[str, Any], metrics: Metrics) -> None:
        self._codec = Codec("dead_letter", schema_text)
        self._metrics = metrics

    def row(
        self, rejection: Rejection, topic: str, partition: int, offset: int, original: bytes | None
    ) -> Row:
        self._metrics.events.labels("dead_letter").inc()
        self._metrics.dead_letters.labels(rejection.reason).inc()
        return Row(
            f"{topic}/{partition}".encode(),
            dead_letter(self._codec, rejection, topic, partition, offset, original),
        )


def dead_letter(
    codec: Codec,
    rejection: Rejection,
    topic: str,
    partition: int,
    offset: int,
    original: bytes | None,
) -> bytes:
    return codec.encode(
        {
            "reason": rejection.reason,
            "detail": rejection.detail[:1000],
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "original": original or b"",
            "dead_letter_time": int(time.time() * 1000),
        }
    )


def prediction(
    codec: Codec,
    event: dict[str, Any],
    score: float,
    decision: str,
    model_version: str,
    feature_set_version: str,
    degraded: list[str],
    ingest_time: int,
) -> bytes:
    return codec.encode(
        {
            "event_id": event["event_id"],
            "user_id": event["user_id"],
            "event_time": event["event_time"],
            "score": score,
            "decision": decision,
            "model_version": model_version,
            "feature_set_version": feature_set_version,
            "degraded": degraded,
            "ingest_time": ingest_time,
            "scored_time": int(time.time() * 1000),
        }
    )
