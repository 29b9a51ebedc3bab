"""Control records: how a model assignment travels from the CLI to the running job.

The CLI (``streamscore models promote|canary|rollback``) builds an ASSIGN record with
``assign_record`` and sends it with ``publish`` to the compacted control topic
(``streamscore/schemas/control.avsc``). The record carries the model files themselves
(zlib-compressed LightGBM text and the metadata JSON), so the job needs no access to the model
registry, MLflow or a shared disk: whatever reads the topic can score.

The job turns every control record into an ``Assignment`` with ``parse_assignment``, which
refuses anything it must not deploy with ``Rejection(reason, detail)`` and one of these stable
reason codes (for its dead letters and metrics):

* ``control:decode_error``: not a control record, or its metadata is not JSON;
* ``control:invalid``: not an ASSIGN, a missing champion, a half-given candidate, a canary
  percent out of 1-99 (or one without a candidate), a candidate equal to the champion;
* ``control:feature_set``: a model trained on another feature-set version or column order;
* ``control:corrupt_model``: model bytes that zlib cannot decompress, a text whose SHA-256
  differs from the one the producer put in the metadata (``model_sha256``) or that is cut
  (``loading.check_model_text``), one LightGBM cannot load, or one with another number of
  features.

Why the digest and the cut check come before LightGBM: LightGBM 4.7 does not raise on a cut
model text, it aborts the process (or segfaults), and the job's Python runs inside the
TaskManager's JVM. So the job hands LightGBM only the exact text a producer built the record
from; ``assign_record`` refuses to build one from a cut text, and the CLI loads the models in
its own process (``parse_assignment``) before it publishes.

``canary_arm`` decides per event which arm scores a user. It hashes the user id with CRC-32,
which, unlike Python's ``hash()``, is the same in every process and run, so a user stays in one
arm across subtasks and restarts; and because the arm is "bucket < percent", growing a canary
from 5 % to 20 % only adds users, it never moves one back.

This module must stay importable by the Flink job: no MLflow, and Kafka only inside
``publish``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamscore.errors import KafkaUnavailable, Rejection
from streamscore.features.definitions import FeatureSet
from streamscore.model.loading import ModelBundle, check_compatible, check_model_text
from streamscore.serde import Codec

if TYPE_CHECKING:
    from streamscore.config import Settings

log = logging.getLogger(__name__)

ASSIGN = "ASSIGN"
DECODE_ERROR = "control:decode_error"
CORRUPT_MODEL = "control:corrupt_model"
FEATURE_SET_MISMATCH = "control:feature_set"
INVALID = "control:invalid"
# Added to the metadata JSON in the record (and removed again by parse_assignment).
DIGEST_KEY = "model_sha256"
MIN_CANARY_PERCENT, MAX_CANARY_PERCENT = 1, 99
# How long ``publish`` waits for the broker's acknowledgement before it gives up.
PUBLISH_TIMEOUT_S = 15.0

_codec: Codec | None = None


def _default_codec() -> Codec:
    global _codec
    if _codec is None:
        _codec = Codec("control")
    return _codec


@dataclass(frozen=True)
class Assignment:
    """Which models score, as the job applies it: the champion for everyone, and the candidate
    for the ``canary_percent`` of users that ``canary_arm`` picks."""

    champion: ModelBundle
    candidate: ModelBundle | None
    canary_percent: int
    command_id: str
    reason: str
    job_name: str = ""
    issued_at: int = 0

    def uses_candidate(self, user_id: str) -> bool:
        """Whether this user's events are scored by the candidate."""
        return self.candidate is not None and canary_arm(user_id, self.canary_percent)


def canary_arm(user_id: str, percent: int) -> bool:
    """True if the user is in the candidate's ``percent`` % of users.

    Stable across processes and runs (CRC-32, not the salted ``hash()``); the arm for a smaller
    percent is a subset of the arm for a larger one. ≈ 0.1 µs per call (measured)."""
    return zlib.crc32(user_id.encode()) % 100 < percent


def control_key(job_name: str, kind: str = ASSIGN) -> bytes:
    """The record key, ``<job_name>/<kind>``: compaction keeps the latest command of each kind
    for each job sharing the topic."""
    return f"{job_name}/{kind}".encode()


def _check_arms(champion_version: str, candidate_version: str | None, canary_percent: int) -> None:
    """The rules on the two arms, shared by the producer and the job so both refuse alike."""
    if candidate_version is None:
        if canary_percent != 0:
            raise Rejection(
                INVALID,
                f"canary_percent {canary_percent} without a candidate: a champion alone "
                "scores every user (percent 0)",
            )
        return
    if not MIN_CANARY_PERCENT <= canary_percent <= MAX_CANARY_PERCENT:
        raise Rejection(
            INVALID,
            f"canary_percent {canary_percent} out of {MIN_CANARY_PERCENT}-{MAX_CANARY_PERCENT}: "
            "a candidate needs a share of users (to give it everyone, promote it)",
        )
    if candidate_version == champion_version:
        raise Rejection(INVALID, f"candidate {candidate_version} is already the champion")


# --- producer side ------------------------------------------------------------------------------
def assign_record(
    champion: ModelBundle,
    candidate: ModelBundle | None,
    canary_percent: int,
    reason: str,
    *,
    job_name: str,
) -> dict[str, Any]:
    """An ASSIGN record for ``job_name``: the champion scores everyone except the candidate's
    ``canary_percent`` % of users. Raises ``Rejection`` (``control:invalid``) for a record the
    job would refuse."""
    _check_arms(champion.version, candidate.version if candidate else None, canary_percent)

    def arm(bundle: ModelBundle | None) -> tuple[str | None, bytes | None, str | None]:
        if bundle is None:
            return None, None, None
        try:
            check_model_text(bundle.model_text)
        except ValueError as exc:
            raise Rejection(CORRUPT_MODEL, f"{bundle.version}: {exc}") from None
        text = bundle.model_text.encode("utf-8")
        metadata = {**bundle.metadata, DIGEST_KEY: hashlib.sha256(text).hexdigest()}
        return bundle.version, zlib.compress(text), json.dumps(metadata)

    champion_fields, candidate_fields = arm(champion), arm(candidate)
    return {
        "command_id": str(uuid.uuid4()),
        "job_name": job_name,
        "kind": ASSIGN,
        "issued_at": int(time.time() * 1000),
        "reason": reason,
        "champion_version": champion_fields[0],
        "champion_model": champion_fields[1],
        "champion_metadata": champion_fields[2],
        "candidate_version": candidate_fields[0],
        "candidate_model": candidate_fields[1],
        "candidate_metadata": candidate_fields[2],
        "canary_percent": canary_percent,
        "challenger_version": None,
        "challenger_model": None,
    }


def encode(record: dict[str, Any], codec: Codec | None = None) -> bytes:
    """Avro bytes of a control record (``codec``: one built from a shipped schema, in the job)."""
    return (codec or _default_codec()).encode(record)


def decode(payload: bytes, codec: Codec | None = None) -> dict[str, Any]:
    """The record in a control message; ``Rejection`` (``control:decode_error``) if it is not
    one."""
    try:
        return (codec or _default_codec()).decode(payload)
    except Exception as exc:  # fastavro raises several types on garbage
        raise Rejection(DECODE_ERROR, f"not a control record: {exc}") from None


def publish(settings: Settings, record: dict[str, Any]) -> None:
    """Send ``record`` to ``settings.topic_control`` and wait until the broker has it.

    Raises ``KafkaUnavailable`` (or ``UnknownTopic``) if it was not delivered: the command must
    not report success for an assignment the job will never see."""
    from confluent_kafka import KafkaException

    from streamscore.kafka_io import new_producer, partitions_of, send_record
    from streamscore.stack.kafka import CONTROL_MAX_BYTES

    topic = settings.topic_control
    partitions_of(settings, topic)  # a clear error now if Kafka is down or the topic missing
    payload = encode(record)
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    overrides: dict[str, Any] = {
        "on_delivery": delivered,
        # Room for model files (the topic allows as much); fail within the timeout, not 5 min.
        "message.max.bytes": CONTROL_MAX_BYTES,
        "message.timeout.ms": int(PUBLISH_TIMEOUT_S * 1000),
    }
    producer = new_producer(settings, **overrides)
    try:
        send_record(producer, topic, control_key(record["job_name"], record["kind"]), payload)
    except KafkaException as exc:
        raise KafkaUnavailable(f"could not send the control record to {topic}: {exc}") from None
    pending = producer.flush(PUBLISH_TIMEOUT_S + 5)
    if pending or failures:
        problem = failures[0] if failures else f"not acknowledged within {PUBLISH_TIMEOUT_S:.0f} s"
        raise KafkaUnavailable(
            f"control record {record['command_id']} was not delivered to {topic} at "
            f"{settings.kafka_bootstrap} ({problem}); check the broker and run the command again"
        )
    log.info(
        "published %s %s (%d bytes) to %s",
        record["kind"],
        record["command_id"],
        len(payload),
        topic,
    )


# --- consumer side (the job) --------------------------------------------------------------------
def parse_assignment(
    record: dict[str, Any], feature_set: FeatureSet, *, load_check: bool = True
) -> Assignment:
    """The assignment in a decoded control record, checked so that the job can swap it in.

    Raises ``Rejection`` with a reason code from the module doc; on success both models load in
    LightGBM with this feature set's columns. ``load_check=False`` skips only the LightGBM load
    (for the learner, which keeps the assignment but never scores with it); the digest, the
    text's structure and the feature set are checked all the same."""
    if record.get("kind") != ASSIGN:
        raise Rejection(INVALID, f"expected an {ASSIGN} record, got kind {record.get('kind')!r}")
    champion_parts = _arm_fields(record, "champion")
    candidate_parts = _arm_fields(record, "candidate")
    if champion_parts is None:
        raise Rejection(INVALID, "an ASSIGN record without a champion")
    canary_percent = record.get("canary_percent", 0)
    _check_arms(champion_parts[0], candidate_parts[0] if candidate_parts else None, canary_percent)
    return Assignment(
        champion=_bundle(*champion_parts, feature_set=feature_set, load_check=load_check),
        candidate=(
            _bundle(*candidate_parts, feature_set=feature_set, load_check=load_check)
            if candidate_parts
            else None
        ),
        canary_percent=canary_percent,
        command_id=str(record.get("command_id", "")),
        reason=str(record.get("reason", "")),
        job_name=str(record.get("job_name", "")),
        issued_at=int(record.get("issued_at", 0)),
    )


def _arm_fields(record: dict[str, Any], arm: str) -> tuple[str, bytes, str] | None:
    """(version, model, metadata) of one arm; None if absent, ``control:invalid`` if partial."""
    parts = (
        record.get(f"{arm}_version"),
        record.get(f"{arm}_model"),
        record.get(f"{arm}_metadata"),
    )
    if all(p is None for p in parts):
        return None
    if any(p is None for p in parts):
        missing = [n for n, p in zip(("version", "model", "metadata"), parts) if p is None]
        raise Rejection(INVALID, f"{arm} is missing its {', '.join(missing)}")
    return parts  # type: ignore[return-value]


def _bundle(
    version: str, model: bytes, metadata_text: str, *, feature_set: FeatureSet, load_check: bool
) -> ModelBundle:
    try:
        metadata = json.loads(metadata_text)
    except ValueError as exc:
        raise Rejection(DECODE_ERROR, f"{version}: metadata is not JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise Rejection(DECODE_ERROR, f"{version}: metadata is not a JSON object")
    if metadata.get("version", version) != version:
        raise Rejection(
            INVALID, f"{version}: its metadata names another version, {metadata['version']}"
        )
    digest = metadata.pop(DIGEST_KEY, None)
    try:
        text = zlib.decompress(model)
    except zlib.error as exc:
        raise Rejection(
            CORRUPT_MODEL, f"{version}: model bytes do not decompress ({exc})"
        ) from None
    if digest != hashlib.sha256(text).hexdigest():
        raise Rejection(
            CORRUPT_MODEL,
            f"{version}: the model text's SHA-256 is not the {DIGEST_KEY} in its metadata "
            f"({digest or 'none given'}): altered, or not built by assign_record",
        )
    try:
        model_text = text.decode("utf-8")
        check_model_text(model_text)
    except ValueError as exc:  # UnicodeDecodeError is one
        raise Rejection(CORRUPT_MODEL, f"{version}: {exc}") from None
    bundle = ModelBundle(version, model_text, metadata)
    try:
        check_compatible(bundle, feature_set)
    except (ValueError, KeyError, TypeError) as exc:
        raise Rejection(FEATURE_SET_MISMATCH, str(exc)) from None
    if load_check:
        _check_loads(bundle, len(feature_set.feature_names))
    return bundle


def _check_loads(bundle: ModelBundle, n_features: int) -> None:
    """Load the model in LightGBM once (≈ 3 ms for 200 trees), so the job never swaps in a model
    its scorer would then fail to build."""
    import lightgbm

    try:
        booster = lightgbm.Booster(model_str=bundle.model_text)
    except Exception as exc:  # LightGBMError, or ValueError on an empty text
        raise Rejection(
            CORRUPT_MODEL, f"{bundle.version}: LightGBM cannot load the model ({exc})"
        ) from None
    if booster.num_feature() != n_features:
        raise Rejection(
            CORRUPT_MODEL,
            f"{bundle.version}: the model has {booster.num_feature()} features, "
            f"the feature set {n_features}",
        )
