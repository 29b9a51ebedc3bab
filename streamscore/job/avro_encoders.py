"""Avro binary of the job's hot-path records, written field by field for their fixed layouts.

fastavro's ``schemaless_writer`` walks the schema for every record; a prediction (one per
event) and a labelled outcome (one per label) have the same fields every time, and most of their
strings repeat (model and feature set versions, arm, decision), so their bytes are kept once
encoded, and an outcome's feature vector is packed in one ``struct`` call. The output is
byte-for-byte what fastavro writes for the same record (``tests/unit/test_avro_encoders.py``
holds them to it), so any Avro reader with the schema reads it. Each layout is checked against
its schema once, when the encoder is built: a schema change fails there, not in a consumer.
"""

from __future__ import annotations

import struct
from typing import Any

_DOUBLE = struct.Struct("<d").pack

# The prediction schema's fields and Avro types, in order, as its encoder writes them.
PREDICTION_LAYOUT = (
    ("event_id", "string"),
    ("user_id", "string"),
    ("event_time", "long"),
    ("score", "double"),
    ("decision", "enum"),
    ("model_version", "string"),
    ("feature_set_version", "string"),
    ("degraded", "array<string>"),
    ("ingest_time", "long"),
    ("scored_time", "long"),
    ("amount", "null|double"),
    ("arm", "string"),
    ("challenger_score", "null|double"),
    ("challenger_version", "null|string"),
)


def _avro_type(node: Any) -> str:
    if isinstance(node, list):
        return "|".join(_avro_type(branch) for branch in node)
    if isinstance(node, dict):
        if node["type"] == "array":
            return f"array<{_avro_type(node['items'])}>"
        return str(node["type"])
    return str(node)


def avro_long(value: int) -> bytes:
    """Avro's ``long``: zig-zag, then a little-endian base-128 varint."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_string(text: str) -> bytes:
    data = text.encode()
    return avro_long(len(data)) + data


def _check_layout(schema: dict[str, Any], expected: tuple[tuple[str, str], ...]) -> None:
    layout = tuple((f["name"], _avro_type(f["type"])) for f in schema["fields"])
    if layout != expected:
        raise ValueError(f"the {schema['name']} schema changed; the encoder writes {expected}")


class _RepeatedStrings:
    """The encoded bytes of strings that repeat (versions, arms, decisions, reasons), bounded:
    versions come and go."""

    def __init__(self, capacity: int = 1000) -> None:
        self._strings: dict[str, bytes] = {}
        self._capacity = capacity

    def __call__(self, text: str) -> bytes:
        encoded = self._strings.get(text)
        if encoded is None:
            if len(self._strings) > self._capacity:
                self._strings.clear()
            encoded = self._strings[text] = avro_string(text)
        return encoded


class PredictionEncoder:
    def __init__(self, schema: dict[str, Any]) -> None:
        _check_layout(schema, PREDICTION_LAYOUT)
        symbols = schema["fields"][4]["type"]["symbols"]
        self._decisions = {symbol: avro_long(i) for i, symbol in enumerate(symbols)}
        self._cached = _RepeatedStrings()

    def encode(
        self,
        event_id: str,
        user_id: str,
        event_time: int,
        score: float,
        decision: str,
        model_version: str,
        feature_set_version: str,
        degraded: list[str],
        ingest_time: int,
        scored_time: int,
        amount: float | None,
        arm: str,
        challenger_score: float | None,
        challenger_version: str | None,
    ) -> bytes:
        cached = self._cached
        parts = [
            avro_string(event_id),
            avro_string(user_id),
            avro_long(event_time),
            _DOUBLE(score),
            self._decisions[decision],
            cached(model_version),
            cached(feature_set_version),
        ]
        if degraded:
            parts.append(avro_long(len(degraded)))
            parts.extend(cached(reason) for reason in degraded)
        parts.append(b"\x00")
        parts.append(avro_long(ingest_time))
        parts.append(avro_long(scored_time))
        parts.append(b"\x00" if amount is None else b"\x02" + _DOUBLE(amount))
        parts.append(cached(arm))
        parts.append(b"\x00" if challenger_score is None else b"\x02" + _DOUBLE(challenger_score))
        parts.append(
            b"\x00" if challenger_version is None else b"\x02" + cached(challenger_version)
        )
        return b"".join(parts)


# The labelled outcome schema's fields and Avro types, in order, as its encoder writes them.
OUTCOME_LAYOUT = (
    ("event_id", "string"),
    ("user_id", "string"),
    ("event_time", "long"),
    ("label_time", "long"),
    ("is_fraud", "boolean"),
    ("amount", "double"),
    ("score", "double"),
    ("decision", "string"),
    ("model_version", "string"),
    ("arm", "string"),
    ("canary_percent", "int"),
    ("champion_score", "null|double"),
    ("challenger_score", "null|double"),
    ("challenger_version", "null|string"),
    ("feature_set_version", "string"),
    ("features", "array<double>"),
)


class OutcomeEncoder:
    def __init__(self, schema: dict[str, Any]) -> None:
        _check_layout(schema, OUTCOME_LAYOUT)
        self._cached = _RepeatedStrings()
        self._doubles: dict[int, Any] = {}  # vector length -> its struct's pack

    def _features(self, vector: list[float]) -> bytes:
        """One Avro block of ``len(vector)`` doubles, then the end-of-array 0 (as fastavro)."""
        count = len(vector)
        if not count:
            return b"\x00"
        pack = self._doubles.get(count)
        if pack is None:
            pack = self._doubles[count] = struct.Struct(f"<{count}d").pack
        return avro_long(count) + pack(*vector) + b"\x00"

    def encode(
        self,
        event_id: str,
        user_id: str,
        event_time: int,
        label_time: int,
        is_fraud: bool,
        amount: float,
        score: float,
        decision: str,
        model_version: str,
        arm: str,
        canary_percent: int,
        champion_score: float | None,
        challenger_score: float | None,
        challenger_version: str | None,
        feature_set_version: str,
        features: list[float],
    ) -> bytes:
        cached = self._cached
        return b"".join(
            (
                avro_string(event_id),
                avro_string(user_id),
                avro_long(event_time),
                avro_long(label_time),
                b"\x01" if is_fraud else b"\x00",
                _DOUBLE(amount),
                _DOUBLE(score),
                cached(decision),
                cached(model_version),
                cached(arm),
                avro_long(canary_percent),
                b"\x00" if champion_score is None else b"\x02" + _DOUBLE(champion_score),
                b"\x00" if challenger_score is None else b"\x02" + _DOUBLE(challenger_score),
                b"\x00" if challenger_version is None else b"\x02" + cached(challenger_version),
                cached(feature_set_version),
                self._features(features),
            )
        )
