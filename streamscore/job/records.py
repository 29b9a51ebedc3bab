"""Builders of the outgoing Avro records, shared by the job and its tests."""

from __future__ import annotations

import time
from typing import Any

from streamscore.serde import Codec


def dead_letter(
    codec: Codec,
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    original: bytes | None,
) -> bytes:
    return codec.encode(
        {
            "reason": reason,
            "detail": detail[:1000],
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
