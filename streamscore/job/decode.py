"""From a Kafka value to a checked event or label, or the ``Rejection`` that says why not.

Pure functions, without Flink: the decode operator calls them per record, and the property
tests (tests/unit/test_fuzz_decode.py) feed them arbitrary and mutated bytes. Their contract is
that any input ends as a valid record or a ``Rejection`` with a stable reason; nothing else may
escape, since an exception out of the operator would fail and restart the whole job.
"""

from __future__ import annotations

from typing import Any, Protocol

from streamscore.errors import Rejection
from streamscore.validation import validate_event, validate_label


class RecordReader(Protocol):
    """Bytes to the record's dict, raising on bytes that are not one: ``serde.Codec`` (fastavro)
    or a hand-written decoder of ``avro_decoders`` (the scoring operator's)."""

    def decode(self, payload: bytes) -> dict[str, Any]: ...


def decode_event(
    payload: bytes | None,
    codec: RecordReader,
    now_ms: int,
    max_ahead_ms: int,
    max_record_bytes: int,
) -> dict[str, Any]:
    """A decoded event that passed validation; ``Rejection`` with reason ``decode_error``,
    ``too_large`` or one of ``validate_event``'s otherwise."""
    if not payload:
        raise Rejection("decode_error", "empty record value")
    _check_size(payload, max_record_bytes, "too_large")
    event = _decode(codec, payload, "decode_error")
    validate_event(event, now_ms, max_ahead_ms)
    return event


def decode_label(
    payload: bytes | None, codec: RecordReader, max_record_bytes: int
) -> dict[str, Any]:
    """A decoded label that can be joined; ``Rejection`` with reason ``label:decode_error``,
    ``label:too_large`` or ``label:invalid`` otherwise."""
    payload = payload or b""  # a tombstone: decoding it fails like any other empty value
    _check_size(payload, max_record_bytes, "label:too_large")
    label = _decode(codec, payload, "label:decode_error")
    validate_label(label)
    return label


def read_event(
    payload: bytes | None,
    key: str,
    timestamp: int | None,
    codec: RecordReader,
    now_ms: int,
    max_ahead_ms: int,
    max_record_bytes: int,
) -> dict[str, Any]:
    """``decode_event``, then the record's envelope against its content (the contract for
    producers of the events topic): the Kafka key is the event's ``user_id``
    (``key_mismatch`` otherwise: the job keeps a user's state under the key it partitions by),
    and the Kafka timestamp is the event's ``event_time`` (``timestamp_mismatch`` otherwise:
    the watermark is computed from the timestamps, in the JVM, before any payload is read)."""
    event = decode_event(payload, codec, now_ms, max_ahead_ms, max_record_bytes)
    if key != event["user_id"]:
        raise Rejection(
            "key_mismatch", f"Kafka key {key!r} is not the event's user_id {event['user_id']!r}"
        )
    if timestamp != event["event_time"]:
        raise Rejection(
            "timestamp_mismatch",
            f"Kafka timestamp {timestamp} is not the event's event_time {event['event_time']}",
        )
    return event


def read_label(
    payload: bytes | None, key: str, codec: RecordReader, max_record_bytes: int
) -> dict[str, Any]:
    """``decode_label``, then its key: the label's ``user_id`` (``label:key_mismatch``
    otherwise). A label's Kafka timestamp only moves the watermark, so it is not checked."""
    label = decode_label(payload, codec, max_record_bytes)
    if key != label["user_id"]:
        raise Rejection(
            "label:key_mismatch",
            f"Kafka key {key!r} is not the label's user_id {label['user_id']!r}",
        )
    return label


def _check_size(payload: bytes, max_record_bytes: int, reason: str) -> None:
    """Refuse a record above the limit before decoding it: a bad record must not cost the decoder
    more than a good one could."""
    if len(payload) > max_record_bytes:
        detail = f"{len(payload)} bytes, above max_record_bytes ({max_record_bytes})"
        raise Rejection(reason, detail)


def _decode(codec: RecordReader, payload: bytes, reason: str) -> dict[str, Any]:
    """The broad catch covers only the decoder: fastavro raises many kinds on garbage (EOFError,
    IndexError on a bad enum or union index, UnicodeDecodeError, ValueError, ...)."""
    try:
        return codec.decode(payload)
    except Exception as exc:
        raise Rejection(reason, f"{type(exc).__name__}: {exc}") from None
