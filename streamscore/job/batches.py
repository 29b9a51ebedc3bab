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
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

# One input record: (key, payload or None, topic, partition, offset, Kafka timestamp).
InputRecord = tuple[str, bytes | None, str, int, int, int]
# One output record: (topic, key, value).
OutputRecord = tuple[str, bytes | None, bytes | None]

_LENGTH = struct.Struct(">i")
_POSITION = struct.Struct(">iqq")  # partition, offset, Kafka timestamp


def _int_at(batch: bytes, at: int, size: int) -> int:
    """The big-endian signed integer of ``size`` bytes at ``at``. Read byte by byte: compiled,
    each byte is a primitive read, where ``struct`` is a Python call that builds a tuple."""
    value = 0
    for i in range(at, at + size):
        value = (value << 8) | batch[i]
    if batch[at] >= 0x80:
        value -= 1 << (8 * size)
    return value


def unpack_records(batch: bytes) -> list[InputRecord]:
    """The records ``RecordBatcher`` packed, in their order: per record the key, the payload
    (length -1 for none), the topic, each a length and its bytes, then partition, offset and
    timestamp."""
    records: list[InputRecord] = []
    at, end = 0, len(batch)
    while at < end:
        n = _int_at(batch, at, 4)
        at += 4
        key = batch[at : at + n].decode()
        at += n
        n = _int_at(batch, at, 4)
        at += 4
        if n < 0:
            payload = None
        else:
            payload = batch[at : at + n]
            at += n
        n = _int_at(batch, at, 4)
        at += 4
        topic = batch[at : at + n].decode()
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


class OutputPacker:
    """Packs a call's outputs for ``OutputUnpacker``: per record the topic, the key and the
    value, each a length (-1 for none) and its bytes. Topic names are encoded once."""

    def __init__(self) -> None:
        self._topics: dict[str, bytes] = {}

    def pack(self, outputs: list[OutputRecord]) -> bytes:
        length = _LENGTH.pack
        topics = self._topics
        parts: list[bytes] = []
        append = parts.append
        for topic, key, value in outputs:
            head = topics.get(topic)
            if head is None:
                encoded = topic.encode()
                head = topics[topic] = length(len(encoded)) + encoded
            append(head)
            for field in (key, value):
                if field is None:
                    append(length(-1))
                else:
                    append(length(len(field)))
                    append(field)
        return b"".join(parts)


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
