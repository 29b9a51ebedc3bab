"""Avro binary of a prediction, written field by field for its fixed layout.

fastavro's ``schemaless_writer`` walks the schema for every record; a prediction has the same
fields every time, and most of its strings repeat (model and feature set versions, arm,
decision), so their bytes are kept once encoded. The output is byte-for-byte what fastavro
writes for the same record (``tests/unit/test_prediction_codec.py`` holds them to it), so any
Avro reader with the schema reads it. The layout is checked against the schema once, when the
encoder is built: a schema change fails there, not in a consumer.
"""

from __future__ import annotations

import struct
from typing import Any

_DOUBLE = struct.Struct("<d").pack

# The prediction schema's fields and Avro types, in order, as this encoder writes them.
LAYOUT = (
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


class PredictionEncoder:
    def __init__(self, schema: dict[str, Any]) -> None:
        layout = tuple((f["name"], _avro_type(f["type"])) for f in schema["fields"])
        if layout != LAYOUT:
            raise ValueError(f"the prediction schema changed; the encoder writes {LAYOUT}")
        symbols = schema["fields"][4]["type"]["symbols"]
        self._decisions = {symbol: avro_long(i) for i, symbol in enumerate(symbols)}
        self._strings: dict[str, bytes] = {}  # versions, arms, degraded reasons: few, repeated

    def _cached(self, text: str) -> bytes:
        encoded = self._strings.get(text)
        if encoded is None:
            if len(self._strings) > 1000:  # versions come and go; stay bounded
                self._strings.clear()
            encoded = self._strings[text] = avro_string(text)
        return encoded

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
