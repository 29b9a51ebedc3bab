"""Avro binary of the job's hot-path outputs, written byte by byte into one buffer for their fixed
layouts: a prediction per scored event, a labelled outcome per joined label.

Why: fastavro's ``schemaless_writer`` walks the schema for every record. The mypyc-compiled
encoders before these joined a bytes object per field: about 10,600 instructions per prediction
and 13,000 per outcome, a tenth of the scoring operator's instructions (bench/HISTORY.md,
thirty-ninth session). Here each field is written unboxed into a buffer the encoder keeps, and
the record is copied out once. Strings that repeat (decisions, versions, arms, reasons) are
kept encoded, length and bytes, and copied.

The output is byte for byte what fastavro writes for the same record
(``tests/unit/test_avro_encoders.py``), so any Avro reader with the schema reads it. Each
layout is checked against its schema once, when the encoder is built (``avro_layouts``). The
inputs' decoders are ``avro_decoders``.

Compiled by Cython from this same file (its "pure Python" mode), like ``features/rings.py``: the
source runs unchanged when the package runs from its sources (``STREAMSCORE_PURE_PYTHON=1``).
Only a double's bytes and the final copy differ between the two (``memcpy`` compiled, ``struct``
and a slice from the sources); ``tests/unit/test_native.py`` compares their bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import cython

from streamscore.job.avro_layouts import OUTCOME_LAYOUT, PREDICTION_LAYOUT, check_layout
from streamscore.job.entry_records import OUTCOME_HEAD

if cython.compiled:
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.libc.string import memcpy

# Doubles are written as the machine holds them: Avro's are little-endian, as is every machine
# the job runs on (x86-64, arm64); a big-endian one would fail here, not write wrong bytes.
if struct.pack("=d", 1.0) != struct.pack("<d", 1.0):
    raise ImportError("streamscore writes Avro doubles on little-endian machines only")

# A pending outcome's head as the label join packs it, which ``encode_packed`` reads at fixed
# places: five 8-byte numbers, then three bytes.
if OUTCOME_HEAD != "<qddddBBB":
    raise ImportError(f"OutcomeEncoder.encode_packed reads another head than {OUTCOME_HEAD}")
_OUTCOME_HEAD_SIZE = cython.declare(cython.Py_ssize_t, struct.calcsize(OUTCOME_HEAD))

# The most bytes a field other than a string's or an array's items takes: a long's varint.
_MOST_FIXED = cython.declare(cython.Py_ssize_t, 10)
# Room for all fixed-size fields of a prediction or an outcome (each at most 10 bytes, 16 of them).
_FIXED_ROOM = cython.declare(cython.Py_ssize_t, 16 * 10)


@cython.cfunc
@cython.inline
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.exceptval(check=False)
def _put_long(
    view: cython.uchar[::1], at: cython.Py_ssize_t, value: cython.longlong
) -> cython.Py_ssize_t:
    """Avro's ``long`` at ``at``: zig-zag, then a little-endian base-128 varint; where it ends."""
    # Unsigned in C, so that shifting a negative value is defined; from the sources the same
    # formula gives the same non-negative number.
    n: cython.ulonglong = (cython.cast(cython.ulonglong, value) << 1) ^ cython.cast(
        cython.ulonglong, value >> 63
    )
    while n > 0x7F:
        view[at] = (n & 0x7F) | 0x80
        at += 1
        n >>= 7
    view[at] = n
    return at + 1


@cython.cfunc
@cython.inline
@cython.boundscheck(False)
@cython.wraparound(False)
def _put_bytes(view: cython.uchar[::1], at: cython.Py_ssize_t, data: bytes) -> cython.Py_ssize_t:
    """``data`` copied as it is at ``at``; where it ends."""
    size: cython.Py_ssize_t = len(data)
    if cython.compiled:
        source: cython.p_char = data  # the bytes object's own bytes
        memcpy(cython.address(view[at]), source, size)
    else:
        view[at : at + size] = data
    return at + size


@cython.cfunc
@cython.inline
@cython.boundscheck(False)
@cython.wraparound(False)
def _put_double(
    view: cython.uchar[::1], at: cython.Py_ssize_t, value: cython.double
) -> cython.Py_ssize_t:
    """Avro's ``double`` (8 bytes, little-endian) at ``at``; where it ends."""
    if cython.compiled:
        memcpy(cython.address(view[at]), cython.address(value), 8)
    else:
        struct.pack_into("<d", view, at, value)
    return at + 8


@cython.cfunc
@cython.inline
def _put_optional_double(
    view: cython.uchar[::1], at: cython.Py_ssize_t, value: object
) -> cython.Py_ssize_t:
    """Avro's ``["null", "double"]``: the branch, then (not None) the double."""
    if value is None:
        view[at] = 0
        return at + 1
    view[at] = 2
    return _put_double(view, at + 1, value)


@cython.cfunc
@cython.inline
def _put_string(view: cython.uchar[::1], at: cython.Py_ssize_t, data: bytes) -> cython.Py_ssize_t:
    """Avro's ``string`` of UTF-8 bytes at ``at``: their length, then them; where it ends."""
    return _put_bytes(view, _put_long(view, at, len(data)), data)


@cython.cfunc
@cython.inline
def _put_optional_bytes(
    view: cython.uchar[::1], at: cython.Py_ssize_t, data: bytes | None
) -> cython.Py_ssize_t:
    """Avro's ``["null", T]`` of a ``T`` already encoded: the branch, then (not None) its
    bytes."""
    if data is None:
        view[at] = 0
        return at + 1
    view[at] = 2
    return _put_bytes(view, at + 1, data)


def avro_long(value: int) -> bytes:
    """Avro's ``long`` on its own: zig-zag, then a little-endian base-128 varint."""
    out = bytearray(_MOST_FIXED)
    end = _put_long(out, 0, value)
    return bytes(out[:end])


def avro_string(text: str) -> bytes:
    """Avro's ``string`` on its own: the length of its UTF-8 bytes, then the bytes."""
    data = text.encode()
    return avro_long(len(data)) + data


@cython.cclass
class _Buffer:
    """The bytes of the record being written, reused from one record to the next, grown when a
    record needs more room (long strings), and copied out once per record."""

    _data = cython.declare(bytearray)
    view = cython.declare(cython.uchar[::1])

    def __init__(self) -> None:
        self._data = bytearray(1024)
        self.view = self._data

    @cython.cfunc
    def reserve(self, size: cython.Py_ssize_t) -> cython.uchar[::1]:
        """The view, at least ``size`` bytes long."""
        if size > len(self._data):
            self._data = bytearray(max(size, 2 * len(self._data)))
            self.view = self._data
        return self.view

    @cython.cfunc
    def copy(self, size: cython.Py_ssize_t) -> bytes:
        """The first ``size`` bytes written, as a new bytes object."""
        if cython.compiled:
            return PyBytes_FromStringAndSize(
                cython.cast(cython.p_char, cython.address(self.view[0])), size
            )
        return bytes(self._data[:size])


@cython.cclass
class _RepeatedStrings:
    """Strings that repeat (versions, arms, decisions, reasons), each kept encoded as Avro's
    ``string`` (length and UTF-8 bytes), bounded: versions come and go."""

    _strings = cython.declare(dict)
    _capacity = cython.declare(cython.Py_ssize_t)

    def __init__(self, capacity: int = 1000) -> None:
        self._strings = {}
        self._capacity = capacity

    @cython.cfunc
    def encoded(self, text: str) -> bytes:
        encoded = self._strings.get(text)
        if encoded is None:
            if len(self._strings) > self._capacity:
                self._strings.clear()
            encoded = avro_string(text)
            self._strings[text] = encoded
        return encoded


@cython.cclass
class PredictionEncoder:
    """A prediction (``schemas/prediction.avsc``) per call of ``encode``."""

    _decisions = cython.declare(dict)
    _cached = cython.declare(_RepeatedStrings)
    _buffer = cython.declare(_Buffer)

    def __init__(self, schema: dict[str, Any]) -> None:
        check_layout(schema, PREDICTION_LAYOUT)
        symbols = schema["fields"][4]["type"]["symbols"]
        self._decisions = {symbol: avro_long(i) for i, symbol in enumerate(symbols)}
        self._cached = _RepeatedStrings()
        self._buffer = _Buffer()

    @cython.ccall
    def encode(
        self,
        event_id: str,
        user_id: str,
        event_time: cython.longlong,
        score: cython.double,
        decision: str,
        model_version: str,
        feature_set_version: str,
        degraded: list,
        ingest_time: cython.longlong,
        scored_time: cython.longlong,
        amount: object,
        arm: str,
        challenger_score: object,
        challenger_version: object,
    ) -> bytes:
        cached = self._cached
        event_bytes: bytes = event_id.encode()
        user_bytes: bytes = user_id.encode()
        decision_bytes: bytes = self._decisions[decision]
        model_bytes = cached.encoded(model_version)
        feature_set_bytes = cached.encoded(feature_set_version)
        arm_bytes = cached.encoded(arm)
        challenger_bytes: bytes | None = (
            None if challenger_version is None else cached.encoded(challenger_version)
        )
        reasons: list = [cached.encoded(why) for why in degraded]
        size: cython.Py_ssize_t = (
            _FIXED_ROOM
            + len(event_bytes)
            + len(user_bytes)
            + len(model_bytes)
            + len(feature_set_bytes)
            + len(arm_bytes)
            + (0 if challenger_bytes is None else len(challenger_bytes))
        )
        reason: bytes
        for reason in reasons:
            size += len(reason)
        view = self._buffer.reserve(size)
        at: cython.Py_ssize_t = _put_string(view, 0, event_bytes)
        at = _put_string(view, at, user_bytes)
        at = _put_long(view, at, event_time)
        at = _put_double(view, at, score)
        at = _put_bytes(view, at, decision_bytes)
        at = _put_bytes(view, at, model_bytes)
        at = _put_bytes(view, at, feature_set_bytes)
        if reasons:
            at = _put_long(view, at, len(reasons))
            for reason in reasons:
                at = _put_bytes(view, at, reason)
        view[at] = 0  # the array's end
        at = _put_long(view, at + 1, ingest_time)
        at = _put_long(view, at, scored_time)
        at = _put_optional_double(view, at, amount)
        at = _put_bytes(view, at, arm_bytes)
        at = _put_optional_double(view, at, challenger_score)
        at = _put_optional_bytes(view, at, challenger_bytes)
        return self._buffer.copy(at)


@cython.cclass
class OutcomeEncoder:
    """A labelled outcome (``schemas/outcome.avsc``) per call of ``encode``: its features as one
    block of doubles, as fastavro writes an array."""

    _cached = cython.declare(_RepeatedStrings)
    _buffer = cython.declare(_Buffer)

    def __init__(self, schema: dict[str, Any]) -> None:
        check_layout(schema, OUTCOME_LAYOUT)
        self._cached = _RepeatedStrings()
        self._buffer = _Buffer()

    @cython.cfunc
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def _head(
        self,
        event_id: str,
        user_id: str,
        event_time: cython.longlong,
        label_time: cython.longlong,
        is_fraud: cython.bint,
        amount: cython.double,
        score: cython.double,
        decision: str,
        model_version: str,
        arm: str,
        canary_percent: cython.longlong,
        champion_score: object,
        challenger_score: object,
        challenger_version: object,
        feature_set_version: str,
        vector_size: cython.Py_ssize_t,
    ) -> cython.Py_ssize_t:
        """Every field up to the features' array into the buffer, with room for
        ``vector_size`` bytes of features after them; where they end."""
        cached = self._cached
        event_bytes: bytes = event_id.encode()
        user_bytes: bytes = user_id.encode()
        decision_bytes = cached.encoded(decision)
        model_bytes = cached.encoded(model_version)
        arm_bytes = cached.encoded(arm)
        challenger_bytes: bytes | None = (
            None if challenger_version is None else cached.encoded(challenger_version)
        )
        feature_set_bytes = cached.encoded(feature_set_version)
        size: cython.Py_ssize_t = (
            _FIXED_ROOM
            + len(event_bytes)
            + len(user_bytes)
            + len(decision_bytes)
            + len(model_bytes)
            + len(arm_bytes)
            + (0 if challenger_bytes is None else len(challenger_bytes))
            + len(feature_set_bytes)
            + vector_size
        )
        view = self._buffer.reserve(size)
        at: cython.Py_ssize_t = _put_string(view, 0, event_bytes)
        at = _put_string(view, at, user_bytes)
        at = _put_long(view, at, event_time)
        at = _put_long(view, at, label_time)
        view[at] = 1 if is_fraud else 0
        at = _put_double(view, at + 1, amount)
        at = _put_double(view, at, score)
        at = _put_bytes(view, at, decision_bytes)
        at = _put_bytes(view, at, model_bytes)
        at = _put_bytes(view, at, arm_bytes)
        at = _put_long(view, at, canary_percent)
        at = _put_optional_double(view, at, champion_score)
        at = _put_optional_double(view, at, challenger_score)
        at = _put_optional_bytes(view, at, challenger_bytes)
        return _put_bytes(view, at, feature_set_bytes)

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def encode(
        self,
        event_id: str,
        user_id: str,
        event_time: cython.longlong,
        label_time: cython.longlong,
        is_fraud: cython.bint,
        amount: cython.double,
        score: cython.double,
        decision: str,
        model_version: str,
        arm: str,
        canary_percent: cython.longlong,
        champion_score: object,
        challenger_score: object,
        challenger_version: object,
        feature_set_version: str,
        features: list,
    ) -> bytes:
        count: cython.Py_ssize_t = len(features)
        at: cython.Py_ssize_t = self._head(
            event_id, user_id, event_time, label_time, is_fraud, amount, score, decision,
            model_version, arm, canary_percent, champion_score, challenger_score,
            challenger_version, feature_set_version, 8 * count,
        )  # fmt: skip
        view = self._buffer.view
        if count:
            at = _put_long(view, at, count)
            i: cython.Py_ssize_t
            for i in range(count):
                at = _put_double(view, at, features[i])
        view[at] = 0  # the array's end
        return self._buffer.copy(at + 1)

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def encode_packed(
        self,
        event_id: str,
        user_id: str,
        label_time: cython.longlong,
        is_fraud: cython.bint,
        packed: bytes,
        model_version: str,
        challenger_version: object,
        feature_set_version: str,
        decisions: tuple,
        arms: tuple,
    ) -> bytes:
        """``encode`` of a pending outcome as the label join stores it (``packed``: the layout
        of ``entry_records.OUTCOME_HEAD``, then the vector's doubles; ``decisions`` and ``arms``
        name the head's indices), without unpacking it: the vector's doubles are Avro's
        already, little-endian, and are copied in one piece. NaN in the head's champion or
        challenger score stands for none. Unpacking each labelled outcome and encoding it again
        was about 3 % of the scoring thread in a drain (bench/HISTORY.md, forty-second
        session)."""
        size_of_packed: cython.Py_ssize_t = len(packed)
        if size_of_packed < _OUTCOME_HEAD_SIZE or (size_of_packed - _OUTCOME_HEAD_SIZE) % 8:
            raise ValueError(f"a packed outcome of {size_of_packed} bytes")
        event_time: cython.longlong = 0
        amount: cython.double = 0.0
        score: cython.double = 0.0
        champion: cython.double = 0.0
        challenger: cython.double = 0.0
        if cython.compiled:
            head: cython.p_char = PyBytes_AS_STRING(packed)
            memcpy(cython.address(event_time), head, 8)
            memcpy(cython.address(amount), head + 8, 8)
            memcpy(cython.address(score), head + 16, 8)
            memcpy(cython.address(champion), head + 24, 8)
            memcpy(cython.address(challenger), head + 32, 8)
            decision: cython.Py_ssize_t = cython.cast(cython.uchar, head[40])
            arm: cython.Py_ssize_t = cython.cast(cython.uchar, head[41])
            percent: cython.longlong = cython.cast(cython.uchar, head[42])
        else:
            (event_time, amount, score, champion, challenger, decision, arm,
             percent) = struct.unpack_from(OUTCOME_HEAD, packed)  # fmt: skip
        vector_size: cython.Py_ssize_t = size_of_packed - _OUTCOME_HEAD_SIZE
        at: cython.Py_ssize_t = self._head(
            event_id, user_id, event_time, label_time, is_fraud, amount, score,
            decisions[decision], model_version, arms[arm], percent,
            None if champion != champion else champion,
            None if challenger != challenger else challenger,
            challenger_version, feature_set_version, vector_size,
        )  # fmt: skip
        view = self._buffer.view
        if vector_size:
            at = _put_long(view, at, vector_size // 8)
            if cython.compiled:
                memcpy(cython.address(view[at]), head + _OUTCOME_HEAD_SIZE, vector_size)
            else:
                view[at : at + vector_size] = packed[_OUTCOME_HEAD_SIZE:]
            at += vector_size
        view[at] = 0  # the array's end
        return self._buffer.copy(at + 1)
