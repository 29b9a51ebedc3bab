"""The scoring operator's keyed-state writes, many users per call into the JVM.

In thread mode each switch of Flink's current key, each value written and each map entry
written or read is a call into the JVM. ``StateWriter`` stages the changes that wait for a
checkpoint barrier (``state.UserStateCache``, ``state.JoinMap``), pickled as PyFlink's state API
pickles them, and hands them over packed in one call to ``StateWrites``
(``jvm/StateWrites.java``), which writes them through the Java state objects behind the
operator's own keyed states: the same state, serializers and bytes as the Python state API would
have written. A timer's walk of a user's join map is one call too. Measured (bench/HISTORY.md,
ninth session), the crossings were a small part of the write-out, which still holds
up every record behind it (about 230 ms per checkpoint at 5,000 events/s over 10,000 users):
about half is pickling the users' state, the rest RocksDB's writes. Since the tenth session
join entry changes are packed when made (``entry_records.entry_record``), and since the
eleventh, while the operator keeps up, the changes are written after each batch in the last
stretch before a barrier is due (``ScoringOperator.write_ahead``), so little waits for the
barrier.

``PythonStateWrites`` is that Java class in Python, over PyFlink-like state objects: for tests
and probes outside Flink, and the reference for the packed form.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, Final, Protocol

from streamscore.job.batches import CurrentKey
from streamscore.job.entry_records import UNCHANGED, entry_record

# The join map's entries (event id → entry), tagged tuples that pickle small (state.py makes
# and reads them; it imports this module, so the alias lives here).
JoinEntry = tuple[Any, ...]

_INT: Final = struct.Struct(">i")
# A value's length in the packed form when it is not a value: unchanged (``UNCHANGED``, from
# entry_records, where it also marks a removed join entry), and cleared.
CLEARED: Final = -2
# What ``StateWriter`` stages for a cleared value.
_CLEAR: Final = b""
_UNCHANGED_LENGTH: Final = _INT.pack(UNCHANGED)
_CLEARED_LENGTH: Final = _INT.pack(CLEARED)
_NO_ENTRIES: Final = _INT.pack(0)


def pickled(value: object) -> bytes:
    """``value`` as PyFlink's state API pickles it (and reads it back)."""
    return pickle.dumps(value)


class JvmStateWrites(Protocol):
    """What ``StateWrites.java`` offers Python (``PythonStateWrites`` outside Flink)."""

    def write(self, packed: bytes) -> int: ...

    def joinEntriesOf(self, user: str) -> bytes: ...  # noqa: N802 (the Java method's name)

    def startFlush(self) -> bool: ...  # noqa: N802 (the Java method's name)

    def userKeys(self, state_name: str) -> bytes | None: ...  # noqa: N802 (the Java method's name)


class StateWriter:
    """Stages users' value and join-entry changes, and writes them in one call (``flush``).

    Per user, big-endian: user length (int) and UTF-8 bytes; the pickled value (length, or
    ``UNCHANGED``, or ``CLEARED``, then the bytes); the number of changed join entries, then per
    entry its event id (length and UTF-8 bytes) and its pickled entry (length, or ``UNCHANGED``
    to remove it, then the bytes). A flush leaves Flink's current key at the last user written,
    so it tells ``keys`` to forget which key is current."""

    def __init__(self, jvm: JvmStateWrites, keys: CurrentKey) -> None:
        self._jvm = jvm
        self._keys = keys
        # user -> [pickled value, _CLEAR or None (unchanged); packed entry changes or None]
        self._staged: dict[str, list[Any]] = {}
        self.flushes = 0

    def stage_value(self, user: str, value: object) -> None:
        """``user``'s value, pickled now (a later change needs another ``stage_value``)."""
        self._slot(user)[0] = pickled(value)

    def stage_pickled(self, user: str, raw: bytes) -> None:
        """``user``'s value, already pickled (``state.pickled_scoring_state``)."""
        self._slot(user)[0] = raw

    def stage_clear(self, user: str) -> None:
        self._slot(user)[0] = _CLEAR

    def stage_entries(self, user: str, changes: dict[str, JoinEntry | None]) -> None:
        """Changed join entries of ``user`` by event id; None removes the entry."""
        self.stage_records(user, [entry_record(k, entry) for k, entry in changes.items()])

    def stage_records(self, user: str, records: list[bytes]) -> None:
        """Changed join entries of ``user``, packed (``entry_records.entry_record``); written in
        order, so of two changes of one entry the later wins."""
        slot = self._slot(user)
        if slot[1] is None:
            slot[1] = records
        else:
            slot[1].extend(records)

    def start_flush(self) -> bool:
        """Start a flush of the state backend's memtables in its background threads, not
        waiting for it (``StateWrites.startFlush``); False if the backend cannot (not RocksDB's
        own)."""
        return bool(self._jvm.startFlush())

    def flush(self) -> int:
        """Writes what is staged in one call into the JVM; returns the number of users."""
        staged = self._staged
        if not staged:
            return 0
        # The parts joined once: one allocation of the write-out's size and no copy, where a
        # growing bytearray was reallocated as it grew and copied into bytes at the end (its
        # growth and copy were most of the page faults in a drain's profile of the scoring
        # thread; the whole TaskManager's page faults stayed as many: bench/HISTORY.md,
        # twenty-fourth session).
        parts: list[bytes] = []
        pack_int = _INT.pack
        for user, (value, records) in staged.items():
            name = user.encode()
            parts.append(pack_int(len(name)))
            parts.append(name)
            if value is None:
                parts.append(_UNCHANGED_LENGTH)
            elif not value:
                parts.append(_CLEARED_LENGTH)
            else:
                parts.append(pack_int(len(value)))
                parts.append(value)
            if not records:
                parts.append(_NO_ENTRIES)
                continue
            parts.append(pack_int(len(records)))
            parts.extend(records)
        self._staged = {}
        self.flushes += 1
        try:
            return self._jvm.write(b"".join(parts))
        finally:
            self._keys.forget_current()

    def entries_of(self, user: str) -> dict[str, JoinEntry]:
        """``user``'s join entries as Flink's state holds them (made the current key)."""
        raw = self._jvm.joinEntriesOf(user)
        self._keys.assume(user)
        entries: dict[str, JoinEntry] = {}
        at, size, unpack_int = 0, len(raw), _INT.unpack_from
        while at < size:
            length = unpack_int(raw, at)[0]
            event_id = raw[at + 4 : at + 4 + length].decode()
            at += 4 + length
            length = unpack_int(raw, at)[0]
            entries[event_id] = pickle.loads(raw[at + 4 : at + 4 + length])
            at += 4 + length
        return entries

    def _slot(self, user: str) -> list[Any]:
        slot = self._staged.get(user)
        if slot is None:
            slot = self._staged[user] = [None, None]
        return slot


class PythonStateWrites:
    """``StateWrites.java`` over PyFlink-like keyed state objects (``value``/``update``/``clear``;
    ``get``/``put``/``remove``/``items``) whose current key ``keys`` sets: for tests and probes
    outside Flink. They take and give objects, as PyFlink's state API does, unless ``raw``: then
    they take and give the pickled bytes."""

    def __init__(self, keys: Any, user_state: Any, join_state: Any, raw: bool = False) -> None:
        self._keys = keys
        self._users = user_state
        self._join = join_state
        self._raw = raw

    def startFlush(self) -> bool:  # noqa: N802 (the Java method's name)
        """Nothing to flush outside Flink."""
        return False

    def userKeys(self, state_name: str) -> bytes | None:  # noqa: N802 (the Java method's name)
        """The users with a value, packed as ``StateWrites.userKeys`` packs them; None when the
        value state cannot list them (a state object without ``keys()``)."""
        listed = getattr(self._users, "keys", None)
        if listed is None:
            return None
        out = bytearray()
        for user in listed():
            raw = user.encode()
            out += _INT.pack(len(raw)) + raw
        return bytes(out)

    def write(self, packed: bytes) -> int:
        at, written, unpack_int = 0, 0, _INT.unpack_from
        while at < len(packed):
            length = unpack_int(packed, at)[0]
            self._keys.to(packed[at + 4 : at + 4 + length].decode())
            at += 4 + length
            length = unpack_int(packed, at)[0]
            at += 4
            if length == CLEARED:
                self._users.clear()
            elif length != UNCHANGED:
                self._users.update(self._value(packed[at : at + length]))
                at += length
            entries = unpack_int(packed, at)[0]
            at += 4
            for _ in range(entries):
                length = unpack_int(packed, at)[0]
                event_id = packed[at + 4 : at + 4 + length].decode()
                at += 4 + length
                length = unpack_int(packed, at)[0]
                at += 4
                if length == UNCHANGED:
                    self._join.remove(event_id)
                else:
                    self._join.put(event_id, self._value(packed[at : at + length]))
                    at += length
            written += 1
        return written

    def joinEntriesOf(self, user: str) -> bytes:  # noqa: N802 (the Java method's name)
        self._keys.to(user)
        out = bytearray()
        for event_id, entry in self._join.items():
            key = event_id.encode()
            raw = entry if self._raw else pickled(entry)
            out += _INT.pack(len(key)) + key + _INT.pack(len(raw)) + raw
        return bytes(out)

    def _value(self, raw: bytes) -> Any:
        return raw if self._raw else pickle.loads(raw)
