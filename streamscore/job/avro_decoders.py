"""Avro binary of the job's hot-path inputs, read field by field for their fixed layouts: each
event and label (the scoring operator), each labelled outcome (the learner).

Why: fastavro's ``schemaless_reader`` walks the schema for every record. Compiled by mypyc,
these decoders read each field through a function returning a tuple and boxed every varint's
bytes: about 8,900 instructions per event (bench/HISTORY.md, thirty-ninth session). Here a
reader walks the record's bytes unboxed, decodes each string once from the record's own bytes,
and makes one dict.

Each decoder gives the dict fastavro's reader gives (logical types as plain numbers, as
``serde.Codec`` reads them), and bytes that are not one whole record of the layout raise
``ValueError`` (``tests/unit/test_avro_encoders.py`` and ``tests/unit/test_fuzz_decode.py`` hold
them to fastavro, on broken bytes too). Strings that repeat (currencies, countries, versions,
arms) are decoded once. Each layout is checked against its schema once, when the decoder is
built (``avro_layouts``). A decoder belongs to one thread (it keeps the record it reads). The
outputs' encoders are ``avro_encoders``.

Compiled by Cython from this same file (its "pure Python" mode), like ``features/rings.py``: the
source runs unchanged when the package runs from its sources (``STREAMSCORE_PURE_PYTHON=1``).
Only a double's read differs between the two (``memcpy`` compiled, ``struct`` from the sources).
"""

from __future__ import annotations

import struct
from typing import Any

import cython

from streamscore.job.avro_layouts import EVENT_LAYOUT, LABEL_LAYOUT, OUTCOME_LAYOUT, check_layout

if cython.compiled:
    from cython.cimports.cpython.bytes import PyBytes_FromStringAndSize
    from cython.cimports.libc.string import memcpy

# Doubles are read as the machine holds them: Avro's are little-endian, as is every machine the
# job runs on (x86-64, arm64); a big-endian one would fail here, not read wrong numbers.
if struct.pack("=d", 1.0) != struct.pack("<d", 1.0):
    raise ImportError("streamscore reads Avro doubles on little-endian machines only")

_DOUBLE_AT = struct.Struct("<d").unpack_from


@cython.cclass
class _Reader:
    """A cursor over the record being read: each ``_…`` method reads one Avro value at it and
    moves it past; a record that ends inside a value raises ``ValueError``."""

    _data = cython.declare(bytes)
    _size = cython.declare(cython.Py_ssize_t)
    _at = cython.declare(cython.Py_ssize_t)
    # Strings that repeat, by their UTF-8 bytes, bounded: versions come and go.
    _texts = cython.declare(dict)
    _capacity = cython.declare(cython.Py_ssize_t)

    def __init__(self, capacity: int = 1000) -> None:
        self._data = b""
        self._size = 0
        self._at = 0
        self._texts = {}
        self._capacity = capacity

    @cython.cfunc
    @cython.exceptval(-1)
    def _start(self, payload: bytes) -> cython.int:
        self._data = payload
        self._size = len(payload)
        self._at = 0
        return 0

    @cython.cfunc
    @cython.exceptval(-1)
    def _end(self) -> cython.int:
        """``ValueError`` unless the record ends where its last value did."""
        trailing: cython.Py_ssize_t = self._size - self._at
        self._data = b""
        if trailing:
            raise ValueError(f"{trailing} trailing bytes after the record")
        return 0

    @cython.cfunc
    def _refused(self, exc: ValueError, what: str) -> ValueError:
        """What a decoder raises for bytes that are not one whole record: ``exc``, or for bytes
        that are not UTF-8 where a string is, a ``ValueError`` that says which record. Lets go
        of the record."""
        self._data = b""
        if isinstance(exc, UnicodeDecodeError):
            return ValueError(f"not {what}: {exc}")
        return exc

    @cython.cfunc
    @cython.exceptval(-1)
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def _byte(self) -> cython.int:
        if self._at >= self._size:
            raise ValueError("the record ends inside a value")
        value: cython.int = self._data[self._at]
        self._at += 1
        return value

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _long(self) -> cython.longlong:
        """Avro's ``long``: a zig-zag little-endian base-128 varint (``ValueError`` past 64
        bits, as fastavro's reader does not check but a long cannot hold)."""
        byte: cython.int = self._byte()
        n: cython.ulonglong = byte & 0x7F
        shift: cython.int = 7
        while byte & 0x80:
            byte = self._byte()
            bits: cython.ulonglong = byte & 0x7F
            if bits and (shift >= 64 or (bits >> (64 - shift)) != 0):
                raise ValueError("a varint longer than a long")
            if shift < 64:
                n |= bits << shift
            shift += 7
        # Zig-zag back: (n >> 1) ^ -(n & 1), as two's complement in 64 bits.
        half: cython.ulonglong = n >> 1
        if n & 1:
            half = ~half
        return cython.cast(cython.longlong, half) if cython.compiled else _signed(half)

    @cython.cfunc
    @cython.exceptval(-1)
    def _length(self) -> cython.Py_ssize_t:
        """A string's length, which must fit in what is left of the record."""
        length: cython.longlong = self._long()
        if length < 0 or length > self._size - self._at:
            raise ValueError("a string runs past the record")
        return length

    @cython.cfunc
    def _text(self) -> str:
        length: cython.Py_ssize_t = self._length()
        start: cython.Py_ssize_t = self._at
        self._at += length
        return self._data[start : start + length].decode("utf-8")

    @cython.cfunc
    def _repeated(self) -> str:
        """A string that repeats, decoded the first time only."""
        length: cython.Py_ssize_t = self._length()
        start: cython.Py_ssize_t = self._at
        self._at += length
        raw: bytes
        if cython.compiled:  # (a slice of the bytes object is a generic call: 550 instructions)
            source: cython.p_char = self._data
            raw = PyBytes_FromStringAndSize(source + start, length)
        else:
            raw = self._data[start : start + length]
        text = self._texts.get(raw)
        if text is None:
            if len(self._texts) > self._capacity:
                self._texts.clear()
            text = raw.decode("utf-8")
            self._texts[raw] = text
        return text

    @cython.cfunc
    @cython.exceptval(-1.0, check=True)
    def _double(self) -> cython.double:
        if self._size - self._at < 8:
            raise ValueError("the record ends inside a double")
        value: cython.double = 0.0
        if cython.compiled:
            source: cython.p_char = self._data
            memcpy(cython.address(value), source + self._at, 8)
        else:
            (value,) = _DOUBLE_AT(self._data, self._at)
        self._at += 8
        return value

    @cython.cfunc
    @cython.exceptval(-1)
    def _boolean(self, field: str) -> cython.bint:
        byte: cython.int = self._byte()
        if byte > 1:
            raise ValueError(f"{field} is byte {byte}, not a boolean")
        return byte == 1

    @cython.cfunc
    @cython.exceptval(-1)
    def _branch(self, field: str) -> cython.bint:
        """Whether a ``["null", T]`` union holds a ``T``."""
        branch: cython.longlong = self._long()
        if branch == 0:
            return False
        if branch == 1:
            return True
        raise ValueError(f"{field}: no union branch {branch}")

    @cython.cfunc
    def _doubles(self) -> list:
        """An Avro array of doubles: blocks of (count, items), a negative count followed by the
        block's size in bytes, until a count of 0."""
        values: list = []
        count: cython.longlong
        while True:
            count = self._long()
            if count == 0:
                return values
            if count < 0:
                count = -count
                self._long()
            if count > (self._size - self._at) // 8:
                raise ValueError("an array runs past the record")
            for _ in range(count):
                values.append(self._double())


def _signed(n: int) -> int:
    """From the sources: a 64-bit pattern (``~`` of a Python int is negative) as a signed long."""
    n &= 0xFFFF_FFFF_FFFF_FFFF
    return n - (1 << 64) if n >> 63 else n


@cython.cclass
class EventDecoder(_Reader):
    """Reads an event into the dict fastavro's reader gives for it (``event_time`` as plain
    millis, as ``serde.Codec`` reads it), for the scoring operator: one per event."""

    _channels = cython.declare(tuple)

    def __init__(self, schema: dict[str, Any]) -> None:
        super().__init__()
        check_layout(schema, EVENT_LAYOUT)
        self._channels = tuple(schema["fields"][8]["type"]["symbols"])

    @cython.ccall
    def decode(self, payload: bytes) -> dict:
        self._start(payload)
        try:
            event_id = self._text()
            user_id = self._text()
            event_time = self._long()
            amount = self._double()
            currency = self._repeated()
            merchant_id = self._text()
            merchant_category = self._repeated()
            country = self._repeated()
            index: cython.longlong = self._long()
            if not 0 <= index < len(self._channels):
                raise ValueError(f"channel: no symbol {index}")
            device_id = self._text() if self._branch("device_id") else None
            self._end()
        except ValueError as exc:
            raise self._refused(exc, "an event") from None
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
        }


@cython.cclass
class LabelDecoder(_Reader):
    """Reads a label into the dict fastavro's reader gives for it (``label_time`` as plain
    millis), for the scoring operator: one per label."""

    def __init__(self, schema: dict[str, Any]) -> None:
        super().__init__()
        check_layout(schema, LABEL_LAYOUT)

    @cython.ccall
    def decode(self, payload: bytes) -> dict:
        self._start(payload)
        try:
            event_id = self._text()
            user_id = self._text()
            is_fraud = self._boolean("is_fraud")
            label_time = self._long()
            self._end()
        except ValueError as exc:
            raise self._refused(exc, "a label") from None
        return {
            "event_id": event_id,
            "user_id": user_id,
            "is_fraud": is_fraud,
            "label_time": label_time,
        }


@cython.cclass
class OutcomeDecoder(_Reader):
    """Reads a labelled outcome into the dict fastavro's reader gives for it (logical types as
    plain numbers, as ``serde.Codec`` reads them), for the learner: one per label. Any Avro
    encoding of the layout is read, not only ``OutcomeEncoder``'s (e.g. an array in several
    blocks)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        super().__init__()
        check_layout(schema, OUTCOME_LAYOUT)

    @cython.ccall
    def decode(self, payload: bytes) -> dict:
        self._start(payload)
        try:
            event_id = self._text()
            user_id = self._text()
            event_time = self._long()
            label_time = self._long()
            is_fraud = self._boolean("is_fraud")
            amount = self._double()
            score = self._double()
            decision = self._repeated()
            model_version = self._repeated()
            arm = self._repeated()
            canary_percent = self._long()
            champion_score = self._double() if self._branch("champion_score") else None
            challenger_score = self._double() if self._branch("challenger_score") else None
            challenger_version = self._repeated() if self._branch("challenger_version") else None
            feature_set_version = self._repeated()
            features = self._doubles()
            self._end()
        except ValueError as exc:
            raise self._refused(exc, "a labelled outcome") from None
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
        }
