"""Avro encoding of the four record types, as plain Avro binary (no framing, no schema id).

A ``Codec`` parses its schema once and is reused across records. Timestamps are read and written
as plain ``long`` epoch millis: the codec strips the ``timestamp-millis`` logical types, which
leaves the bytes identical but spares fastavro a ``datetime`` per record on the hot path.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import fastavro

from streamscore.resources import schema


def without_logical_types(node: Any) -> Any:
    """A schema (or part of one) without ``logicalType``: timestamps read as epoch millis."""
    if isinstance(node, dict):
        return {k: without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [without_logical_types(v) for v in node]
    return node


class Codec:
    """Encoder/decoder bound to one record type.

    ``schema_text`` lets a caller pass the schema it captured elsewhere: the Flink job ships the
    schemas inside its functions, so its workers read no files.
    """

    def __init__(self, name: str, schema_text: dict[str, Any] | None = None) -> None:
        self.name = name
        text = schema(name) if schema_text is None else schema_text
        self._schema = fastavro.parse_schema(without_logical_types(copy.deepcopy(text)))
        self._reader = fastavro.schemaless_reader
        self._writer = fastavro.schemaless_writer

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        self._writer(buf, self._schema, record)
        return buf.getvalue()

    def decode(self, payload: bytes) -> dict[str, Any]:
        """Decode one record; raises on malformed bytes (the job turns that into a dead letter)."""
        buf = io.BytesIO(payload)
        record = self._reader(buf, self._schema, None)
        if buf.tell() != len(payload):
            raise ValueError(f"{len(payload) - buf.tell()} trailing bytes after the record")
        return record  # type: ignore[return-value]
