"""Batches across the boundary between the JVM and the scoring operator's Python.

PyFlink's thread mode calls Python once per record, and that per-record path (the call, the row
conversions, the iterator over the outputs) cost about as much as the operator's own Python
(bench/HISTORY.md, fifth session). So the JVM packs the records into batches and unpacks the
outputs:

* ``RecordBatcher`` (``jvm/RecordBatcher.java``), after the key shuffle (in the source's chain
  with one scoring subtask), packs the records of a subtask into one byte array per batch; the
  scoring operator gets it as its input, with the key of the batch's first record as Flink's
  current key (the learner gets its outcomes the same way);
* the operator switches Flink's current key to each record's user (``KeySwitch``) before it
  touches that user's state or timers, so the state stays keyed by user, exactly as before;
* it returns one packed byte array per call, which ``OutputUnpacker`` (``jvm/OutputUnpacker.java``)
  turns back into the (topic, key, value) rows of the Kafka sink.

The two layouts here must match the Java sources (big-endian lengths and numbers).

Compiled by Cython from this same file (its "pure Python" mode), like ``features/rings.py``: a
batch's records are read and its outputs written once per record, and compiled by mypyc each
field was a slice or a packed length joined with the others, about 6,900 instructions per
record for both (bench/HISTORY.md, thirty-ninth session). Here they are read and written in C.
Only the copies of bytes differ between the build and the sources (``memcpy`` and
``PyBytes_FromStringAndSize`` compiled, slices from the sources; ``tests/unit/test_batches.py``
round-trips both layouts and checks their bytes).
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

import cython

if cython.compiled:
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.libc.string import memcpy

# One input record: (key, payload or None, topic, partition, offset, Kafka timestamp).
InputRecord = tuple[str, bytes | None, str, int, int, int]
# One output record: (topic, key, value).
OutputRecord = tuple[str, bytes | None, bytes | None]

_LENGTH = struct.Struct(">i")
_POSITION = struct.Struct(">iqq")  # partition, offset, Kafka timestamp


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.exceptval(check=False)
def _int_at(batch: bytes, at: cython.Py_ssize_t, size: cython.int) -> cython.longlong:
    """The big-endian signed integer of ``size`` (4 or 8) bytes at ``at`` (``unpack_records``
    checks that they are there)."""
    value: cython.ulonglong = 0
    i: cython.Py_ssize_t
    for i in range(at, at + size):
        value = (value << 8) | cython.cast(cython.uchar, batch[i])
    if size == 4:
        return cython.cast(cython.int, value) if cython.compiled else _signed(value, 32)
    return cython.cast(cython.longlong, value) if cython.compiled else _signed(value, 64)


def _signed(value: int, bits: int) -> int:
    """From the sources: an unsigned pattern of ``bits`` as the signed number."""
    return value - (1 << bits) if value >> (bits - 1) else value


@cython.cfunc
def _slice(batch: bytes, at: cython.Py_ssize_t, size: cython.Py_ssize_t) -> bytes:
    """``batch[at:at + size]`` (a slice of a bytes object is a generic call when compiled)."""
    if cython.compiled:
        source: cython.p_char = batch
        return PyBytes_FromStringAndSize(source + at, size)
    return batch[at : at + size]


def unpack_records(batch: bytes) -> list[InputRecord]:
    """The records ``RecordBatcher`` packed, in their order: per record the key, the payload
    (length -1 for none), the topic, each a length and its bytes, then partition, offset and
    timestamp. ``ValueError`` if a length points past the batch's end."""
    records: list = []
    at: cython.Py_ssize_t = 0
    end: cython.Py_ssize_t = len(batch)
    n: cython.Py_ssize_t
    while at < end:
        if end - at < 12:
            raise ValueError("a packed record ends inside its lengths")
        n = _int_at(batch, at, 4)
        at += 4
        if n < 0 or n > end - at:
            raise ValueError("a packed key runs past the batch")
        key = batch[at : at + n].decode("utf-8")
        at += n
        if end - at < 4:
            raise ValueError("a packed record ends inside its lengths")
        n = _int_at(batch, at, 4)
        at += 4
        payload: bytes | None = None
        if n >= 0:
            if n > end - at:
                raise ValueError("a packed payload runs past the batch")
            payload = _slice(batch, at, n)
            at += n
        if end - at < 4:
            raise ValueError("a packed record ends inside its lengths")
        n = _int_at(batch, at, 4)
        at += 4
        if n < 0 or n > end - at - 20:
            raise ValueError("a packed topic runs past the batch")
        topic = batch[at : at + n].decode("utf-8")
        at += n
        partition = _int_at(batch, at, 4)
        offset = _int_at(batch, at + 4, 8)
        timestamp = _int_at(batch, at + 12, 8)
        at += 20
        records.append((key, payload, topic, partition, offset, timestamp))
    return records


def pack_records(records: list[InputRecord]) -> bytes:
    """What ``RecordBatcher`` makes of ``records`` (for tests and probes outside Flink)."""
    parts: list[bytes] = []
    for key, payload, topic, partition, offset, timestamp in records:
        for field in (key.encode(), payload, topic.encode()):
            if field is None:
                parts.append(_LENGTH.pack(-1))
            else:
                parts += (_LENGTH.pack(len(field)), field)
        parts.append(_POSITION.pack(partition, offset, timestamp))
    return b"".join(parts)


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.exceptval(check=False)
def _put_length(
    view: cython.uchar[::1], at: cython.Py_ssize_t, length: cython.int
) -> cython.Py_ssize_t:
    """A 4-byte big-endian length at ``at``; where it ends."""
    k: cython.int
    for k in range(4):
        view[at + k] = (length >> (24 - 8 * k)) & 0xFF
    return at + 4


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
def _put_field(
    view: cython.uchar[::1], at: cython.Py_ssize_t, field: bytes | None
) -> cython.Py_ssize_t:
    """A length (-1 for None) and the bytes at ``at``; where they end."""
    if field is None:
        return _put_length(view, at, -1)
    size: cython.Py_ssize_t = len(field)
    at = _put_length(view, at, size)
    if cython.compiled:
        memcpy(cython.address(view[at]), PyBytes_AS_STRING(field), size)
    else:
        view[at : at + size] = field
    return at + size


@cython.cclass
class OutputPacker:
    """Packs a call's outputs for ``OutputUnpacker``: per record the topic, the key and the
    value, each a length (-1 for none) and its bytes. Topic names are encoded once."""

    _topics = cython.declare(dict)

    def __init__(self) -> None:
        self._topics = {}

    @cython.ccall
    def pack(self, outputs: list) -> bytes:
        topics = self._topics
        size: cython.Py_ssize_t = 0
        topic: str
        key: bytes | None
        value: bytes | None
        for topic, key, value in outputs:
            head = topics.get(topic)
            if head is None:
                head = topics[topic] = topic.encode("utf-8")
            size += 12 + len(head)
            if key is not None:
                size += len(key)
            if value is not None:
                size += len(value)
        packed = bytearray(size)
        view: cython.uchar[::1] = packed
        at: cython.Py_ssize_t = 0
        for topic, key, value in outputs:
            at = _put_field(view, at, topics[topic])
            at = _put_field(view, at, key)
            at = _put_field(view, at, value)
        return bytes(packed)


def unpack_outputs(packed: bytes) -> list[OutputRecord]:
    """What ``OutputUnpacker`` makes of ``packed`` (for tests and probes outside Flink)."""
    out: list[OutputRecord] = []
    at = 0
    while at < len(packed):
        fields: list[bytes | None] = []
        for _ in range(3):
            (n,) = _LENGTH.unpack_from(packed, at)
            at += 4
            if n < 0:
                fields.append(None)
            else:
                fields.append(packed[at : at + n])
                at += n
        topic, key, value = fields
        out.append(((topic or b"").decode(), key, value))
    return out


class CurrentKey(Protocol):
    """What the scoring operator needs of Flink's current key: ``KeySwitch`` in a TaskManager,
    a fake in probes outside Flink (a protocol, so compiled code takes either)."""

    def to(self, user: str) -> None: ...

    def forget_current(self) -> None: ...

    def assume(self, user: str) -> None: ...


class KeySwitch:
    """Sets Flink's current key to a user, so that keyed state and timers act on that user.

    ``backend`` is the operator's Java keyed state backend (in thread mode, Python holds it as a
    Java object); the operator's timer service reads the current key from it too. Keys are rows
    of one string, as ``KeyByKeySelector`` makes them; the Java row of each user is kept, so a
    switch is one call into the JVM. At most ``capacity`` rows are kept (then they are made
    again)."""

    def __init__(self, backend: Any, capacity: int = 100_000) -> None:
        from pemja import findClass  # only inside a TaskManager's embedded interpreter

        self._row_class = findClass("org.apache.flink.types.Row")
        self._backend = backend
        self._capacity = capacity
        self._keys: dict[str, Any] = {}
        self._current: str | None = None

    def to(self, user: str) -> None:
        if user == self._current:
            return
        key = self._keys.get(user)
        if key is None:
            if len(self._keys) >= self._capacity:
                self._keys.clear()
            key = self._row_class(1)
            key.setField(0, user)
            self._keys[user] = key
        self._backend.setCurrentKey(key)
        self._current = user

    def forget_current(self) -> None:
        """Flink changed the current key behind our back (a timer, another batch)."""
        self._current = None

    def assume(self, user: str) -> None:
        """Flink itself made ``user`` the current key (a timer of that user)."""
        self._current = user


def java_keyed_state_backend(runtime_context: Any) -> Any:
    """The Java keyed state backend behind PyFlink 2.3's thread-mode runtime context (a private
    attribute: the end-to-end tests fail at once if a PyFlink upgrade moves it)."""
    return runtime_context._keyed_state_backend._keyed_state_backend
