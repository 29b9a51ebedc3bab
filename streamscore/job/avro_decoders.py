"""Avro binary of the job's hot-path inputs read field by field for their fixed layouts: each
event and label (the scoring operator), each labelled outcome (the learner).

fastavro's ``schemaless_reader`` walks the schema for every record; these records have the same
fields every time, and most of their strings repeat (currencies, countries, versions, arms), so
those are decoded once. Each decoder gives the dict fastavro's reader gives (logical types as
plain numbers, as ``serde.Codec`` reads them), and any bytes that are not one whole record of
the layout raise ``ValueError`` (``tests/unit/test_avro_encoders.py`` and
``tests/unit/test_fuzz_decode.py`` hold them to fastavro, on broken bytes too). Each layout is
checked against its schema once, when the decoder is built (``avro_layouts``). The outputs'
encoders are ``avro_encoders``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from streamscore.job.avro_layouts import EVENT_LAYOUT, LABEL_LAYOUT, OUTCOME_LAYOUT, check_layout


class OutcomeDecoder:
    """Reads a labelled outcome into the dict fastavro's reader gives for it (logical types as
    plain numbers, as ``serde.Codec`` reads them), for the learner: one per label. Any Avro
    encoding of the layout is read, not only ``OutcomeEncoder``'s (e.g. an array in several
    blocks); bytes that are not one whole record raise ``ValueError``."""

    def __init__(self, schema: dict[str, Any]) -> None:
        check_layout(schema, OUTCOME_LAYOUT)
        self._repeated = _RepeatedTexts()
        self._doubles: dict[int, Any] = {}  # block length -> its struct's unpack_from

    def decode(self, payload: bytes) -> dict[str, Any]:
        return _whole_record(self._read, payload, "a labelled outcome")

    def _read(self, data: bytes) -> tuple[dict[str, Any], int]:
        long_at, text_at, repeated_at = _long_at, _text_at, self._repeated.at
        double_at = _DOUBLE_AT
        event_id, at = text_at(data, 0)
        user_id, at = text_at(data, at)
        event_time, at = long_at(data, at)
        label_time, at = long_at(data, at)
        is_fraud = data[at] == 1
        if data[at] > 1:
            raise ValueError(f"is_fraud is byte {data[at]}, not a boolean")
        (amount,) = double_at(data, at + 1)
        (score,) = double_at(data, at + 9)
        decision, at = repeated_at(data, at + 17)
        model_version, at = repeated_at(data, at)
        arm, at = repeated_at(data, at)
        canary_percent, at = long_at(data, at)
        champion_score, at = _optional_at(_double_at, data, at, "champion_score")
        challenger_score, at = _optional_at(_double_at, data, at, "challenger_score")
        challenger_version, at = _optional_at(repeated_at, data, at, "challenger_version")
        feature_set_version, at = repeated_at(data, at)
        features, at = self._doubles_at(data, at)
        return {
            "event_id": event_id,
            "user_id": user_id,
            "event_time": event_time,
            "label_time": label_time,
            "is_fraud": is_fraud,
            "amount": amount,
            "score": score,
            "decision": decision,
            "model_version": model_version,
            "arm": arm,
            "canary_percent": canary_percent,
            "champion_score": champion_score,
            "challenger_score": challenger_score,
            "challenger_version": challenger_version,
            "feature_set_version": feature_set_version,
            "features": features,
        }, at

    def _doubles_at(self, data: bytes, at: int) -> tuple[list[float], int]:
        """An Avro array of doubles: blocks of (count, items), a negative count followed by the
        block's size in bytes, until a count of 0."""
        values: list[float] = []
        while True:
            count, at = _long_at(data, at)
            if count == 0:
                return values, at
            if count < 0:
                count = -count
                _, at = _long_at(data, at)
            unpack = self._doubles.get(count)
            if unpack is None:
                unpack = self._doubles[count] = struct.Struct(f"<{count}d").unpack_from
            values.extend(unpack(data, at))
            at += 8 * count


_DOUBLE_AT = struct.Struct("<d").unpack_from
# What a decoder's parts raise on bytes that are not a record of the layout.
_BROKEN = (IndexError, struct.error, UnicodeDecodeError)


def _whole_record(
    read: Callable[[bytes], tuple[dict[str, Any], int]], payload: bytes, what: str
) -> dict[str, Any]:
    """The record ``read`` finds in all of ``payload``; ``ValueError`` for bytes that are not
    one whole record."""
    try:
        record, end = read(payload)
    except _BROKEN as exc:
        raise ValueError(f"not {what}: {type(exc).__name__}: {exc}") from None
    _check_end(payload, end)
    return record


def _check_end(payload: bytes, end: int) -> None:
    if end != len(payload):
        raise ValueError(f"{len(payload) - end} trailing bytes after the record")


class _RepeatedTexts:
    """Strings that repeat (versions, arms, decisions, currencies, countries), each decoded
    once, bounded: versions come and go."""

    def __init__(self, capacity: int = 1000) -> None:
        self._texts: dict[bytes, str] = {}
        self._capacity = capacity

    def at(self, data: bytes, at: int) -> tuple[str, int]:
        raw, at = _bytes_at(data, at)
        text = self._texts.get(raw)
        if text is None:
            if len(self._texts) > self._capacity:
                self._texts.clear()
            text = self._texts[raw] = raw.decode()
        return text, at


class EventDecoder:
    """Reads an event into the dict fastavro's reader gives for it (``event_time`` as plain
    millis, as ``serde.Codec`` reads it), for the scoring operator: one per event. Bytes that are
    not one whole record of the layout raise ``ValueError``."""

    def __init__(self, schema: dict[str, Any]) -> None:
        check_layout(schema, EVENT_LAYOUT)
        self._channels: tuple[str, ...] = tuple(schema["fields"][8]["type"]["symbols"])
        self._repeated = _RepeatedTexts()

    def decode(self, payload: bytes) -> dict[str, Any]:
        # _whole_record inlined: passing the bound method made each event's read a generic
        # Python call (as did calling the repeated texts' and the union's readers through
        # variables); compiled, these are direct calls.
        try:
            record, end = self._read(payload)
        except _BROKEN as exc:
            raise ValueError(f"not an event: {type(exc).__name__}: {exc}") from None
        _check_end(payload, end)
        return record

    def _read(self, data: bytes) -> tuple[dict[str, Any], int]:
        repeated = self._repeated
        event_id, at = _text_at(data, 0)
        user_id, at = _text_at(data, at)
        event_time, at = _long_at(data, at)
        (amount,) = _DOUBLE_AT(data, at)
        currency, at = repeated.at(data, at + 8)
        merchant_id, at = _text_at(data, at)
        merchant_category, at = repeated.at(data, at)
        country, at = repeated.at(data, at)
        index, at = _long_at(data, at)
        if not 0 <= index < len(self._channels):
            raise ValueError(f"channel: no symbol {index}")
        branch, at = _long_at(data, at)  # device_id: ["null", "string"]
        device_id: str | None = None
        if branch == 1:
            device_id, at = _text_at(data, at)
        elif branch != 0:
            raise ValueError(f"device_id: no union branch {branch}")
        return {
            "event_id": event_id,
            "user_id": user_id,
            "event_time": event_time,
            "amount": amount,
            "currency": currency,
            "merchant_id": merchant_id,
            "merchant_category": merchant_category,
            "country": country,
            "channel": self._channels[index],
            "device_id": device_id,
        }, at


class LabelDecoder:
    """Reads a label into the dict fastavro's reader gives for it (``label_time`` as plain
    millis), for the scoring operator: one per label. Bytes that are not one whole record of the
    layout raise ``ValueError``."""

    def __init__(self, schema: dict[str, Any]) -> None:
        check_layout(schema, LABEL_LAYOUT)

    def decode(self, payload: bytes) -> dict[str, Any]:
        # _whole_record inlined, as in EventDecoder.decode
        try:
            record, end = self._read(payload)
        except _BROKEN as exc:
            raise ValueError(f"not a label: {type(exc).__name__}: {exc}") from None
        _check_end(payload, end)
        return record

    def _read(self, data: bytes) -> tuple[dict[str, Any], int]:
        event_id, at = _text_at(data, 0)
        user_id, at = _text_at(data, at)
        flag = data[at]
        if flag > 1:
            raise ValueError(f"is_fraud is byte {flag}, not a boolean")
        label_time, at = _long_at(data, at + 1)
        return {
            "event_id": event_id,
            "user_id": user_id,
            "is_fraud": flag == 1,
            "label_time": label_time,
        }, at


def _long_at(data: bytes, at: int) -> tuple[int, int]:
    """Avro's ``long`` at ``at``: a zig-zag little-endian base-128 varint; and where it ends."""
    byte = data[at]
    at += 1
    n = byte & 0x7F
    shift = 7
    while byte & 0x80:
        byte = data[at]
        at += 1
        n |= (byte & 0x7F) << shift
        shift += 7
    if n >> 64:
        raise ValueError("a varint longer than a long")
    return (n >> 1) ^ -(n & 1), at


def _bytes_at(data: bytes, at: int) -> tuple[bytes, int]:
    """Avro's ``bytes`` (a string's UTF-8) at ``at``: its length, then that many bytes."""
    n, at = _long_at(data, at)
    raw = data[at : at + n] if n >= 0 else b""
    if len(raw) != n:
        raise ValueError("a string runs past the record")
    return raw, at + n


def _text_at(data: bytes, at: int) -> tuple[str, int]:
    raw, at = _bytes_at(data, at)
    return raw.decode(), at


def _double_at(data: bytes, at: int) -> tuple[float, int]:
    return _DOUBLE_AT(data, at)[0], at + 8


def _optional_at(
    read: Callable[[bytes, int], tuple[Any, int]], data: bytes, at: int, field: str
) -> tuple[Any, int]:
    """Avro's ``["null", T]``: the branch, then (branch 1) ``T`` as ``read`` reads it."""
    branch, at = _long_at(data, at)
    if branch == 0:
        return None, at
    if branch == 1:
        return read(data, at)
    raise ValueError(f"{field}: no union branch {branch}")
