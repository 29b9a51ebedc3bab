"""Avro encoding of the four record types, as plain Avro binary (no framing, no schema id).

Schemas are parsed once per process and reused across records. The event and label schemas are
read with a twin whose ``timestamp-millis`` fields are plain ``long``: the bytes are identical,
but fastavro then skips building a ``datetime`` per record, which is slow on the hot path.
"""

from __future__ import annotations

import copy
import io
import json
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
RECORD_TYPES = ("event", "label", "prediction", "dead_letter")


def _strip_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical_types(v) for v in schema]
    return schema


@cache
def raw_schema(name: str) -> dict[str, Any]:
    """The schema as written in ``schemas/<name>.avsc``."""
    with open(SCHEMA_DIR / f"{name}.avsc", encoding="utf-8") as f:
        return json.load(f)


@cache
def parsed_schema(name: str) -> Any:
    """The wire schema with timestamps as plain longs (epoch millis), parsed once."""
    return fastavro.parse_schema(_strip_logical_types(copy.deepcopy(raw_schema(name))))


def encode(name: str, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema(name), record)
    return buf.getvalue()


def decode(name: str, payload: bytes) -> dict[str, Any]:
    """Decode one record; raises on malformed bytes (the caller turns that into a dead letter)."""
    buf = io.BytesIO(payload)
    record = fastavro.schemaless_reader(buf, parsed_schema(name), None)
    if buf.tell() != len(payload):
        raise ValueError(f"{len(payload) - buf.tell()} trailing bytes after the record")
    return record  # type: ignore[return-value]


class Codec:
    """Encoder/decoder bound to one record type, for hot loops that would otherwise look it up.

    ``schema`` lets a caller pass the schema text it captured elsewhere (the Flink job ships the
    schemas inside its functions, so workers need no access to the repository's files).
    """

    def __init__(self, name: str, schema: dict[str, Any] | None = None) -> None:
        self.name = name
        self._schema = (
            parsed_schema(name)
            if schema is None
            else fastavro.parse_schema(_strip_logical_types(copy.deepcopy(schema)))
        )
        self._reader = fastavro.schemaless_reader
        self._writer = fastavro.schemaless_writer

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        self._writer(buf, self._schema, record)
        return buf.getvalue()

    def decode(self, payload: bytes) -> dict[str, Any]:
        buf = io.BytesIO(payload)
        record = self._reader(buf, self._schema, None)
        if buf.tell() != len(payload):
            raise ValueError(f"{len(payload) - buf.tell()} trailing bytes after the record")
        return record  # type: ignore[return-value]
