"""Builders of the job's outgoing records: predictions, dead letters, labelled outcomes and the
learner's control commands, one builder each."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Final

from pyflink.common import Row

from streamscore.errors import Rejection
from streamscore.job.state import ARMS, DECISIONS
from streamscore.metrics import Metrics
from streamscore.serde import Codec

if TYPE_CHECKING:
    from streamscore.job.avro_encoders import OutcomeEncoder, PredictionEncoder
    from streamscore.job.state import PackedOutcome, ParkedLabel, PendingOutcome


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


# A dead letter keeps at most this much of its input: a ``too_large`` record near the broker's
# message size limit must not make a dead letter the broker refuses (which would fail the job).
MAX_ORIGINAL_BYTES: Final = 64 * 1024


def dead_letter(
    codec: Codec,
    rejection: Rejection,
    topic: str,
    partition: int,
    offset: int,
    original: bytes | None,
) -> bytes:
    original = original or b""
    detail = rejection.detail[:1000]
    if len(original) > MAX_ORIGINAL_BYTES:
        detail += f" (original cut to its first {MAX_ORIGINAL_BYTES} of {len(original)} bytes)"
        original = original[:MAX_ORIGINAL_BYTES]
    return codec.encode(
        {
            "reason": rejection.reason,
            "detail": detail,
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "original": original,
            "dead_letter_time": int(time.time() * 1000),
        }
    )


def prediction(
    encoder: PredictionEncoder,
    event: dict[str, Any],
    score: float,
    decision: str,
    model_version: str,
    feature_set_version: str,
    degraded: list[str],
    ingest_time: int,
    arm: str = "champion",
    challenger_score: float | None = None,
    challenger_version: str | None = None,
) -> bytes:
    return encoder.encode(
        event["event_id"],
        event["user_id"],
        event["event_time"],
        score,
        decision,
        model_version,
        feature_set_version,
        degraded,
        ingest_time,
        int(time.time() * 1000),
        event["amount"],
        arm,
        challenger_score,
        challenger_version,
    )


def outcome(
    encoder: OutcomeEncoder,
    event_id: str,
    user_id: str,
    pending: PendingOutcome,
    label: ParkedLabel,
    feature_set_version: str,
) -> bytes:
    """A scored event joined with its label (what the learner and the quality readouts read)."""
    return encoder.encode(
        event_id,
        user_id,
        pending.event_time,
        label.label_time,
        label.is_fraud,
        pending.amount,
        pending.score,
        pending.decision,
        pending.model_version,
        pending.arm,
        pending.canary_percent,
        pending.champion_score,
        pending.challenger_score,
        pending.challenger_version,
        feature_set_version,
        pending.vector,
    )


def stored_outcome(
    encoder: OutcomeEncoder,
    event_id: str,
    user_id: str,
    packed: PackedOutcome,
    label: ParkedLabel,
    feature_set_version: str,
) -> bytes:
    """``outcome`` of a pending outcome as the label join stores it (``state.pack``), written
    from its packed bytes without unpacking them."""
    data, model_version, challenger_version = packed
    return encoder.encode_packed(
        event_id,
        user_id,
        label.label_time,
        label.is_fraud,
        data,
        model_version,
        challenger_version,
        feature_set_version,
        DECISIONS,
        ARMS,
    )


def _command(job_name: str, kind: str, reason: str, **fields: Any) -> dict[str, Any]:
    return {
        "command_id": uuid.uuid4().hex,
        "job_name": job_name,
        "kind": kind,
        "issued_at": int(time.time() * 1000),
        "reason": reason,
        **fields,
    }


def challenger_command(codec: Codec, job_name: str, version: str, snapshot: bytes) -> bytes:
    """A CHALLENGER control record: the learner's newest snapshot for the scorers."""
    return codec.encode(
        _command(
            job_name,
            "CHALLENGER",
            "snapshot",
            challenger_version=version,
            challenger_model=snapshot,
        )
    )
