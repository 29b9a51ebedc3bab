"""The packed state writes: what ``StateWriter`` stages is what the JVM side applies.

``PythonStateWrites`` reads the packed form as ``jvm/StateWrites.java`` does (the end-to-end
``tests/e2e/test_batches.py`` runs the Java class itself against Flink's RocksDB state)."""

from __future__ import annotations

import pickle
from typing import Any

from streamscore.job.state_writes import PythonStateWrites, StateWriter


class _Keys:
    def __init__(self) -> None:
        self.current: str | None = None
        self.forgotten = 0

    def to(self, user: str) -> None:
        self.current = user

    def forget_current(self) -> None:
        self.current = None
        self.forgotten += 1

    def assume(self, user: str) -> None:
        self.current = user


class _Value:
    def __init__(self, keys: _Keys) -> None:
        self.keys, self.stored = keys, {}  # type: ignore[var-annotated]

    def update(self, value: Any) -> None:
        self.stored[self.keys.current] = value

    def clear(self) -> None:
        self.stored.pop(self.keys.current, None)


class _Map:
    def __init__(self, keys: _Keys) -> None:
        self.keys, self.entries = keys, {}  # type: ignore[var-annotated]

    def put(self, key: str, value: Any) -> None:
        self.entries[(self.keys.current, key)] = value

    def remove(self, key: str) -> None:
        self.entries.pop((self.keys.current, key), None)

    def items(self) -> list[tuple[str, Any]]:
        return [(k, v) for (u, k), v in self.entries.items() if u == self.keys.current]


class _Counting:
    """The JVM side, counting its calls (a wrapper: compiled classes take no subclasses)."""

    def __init__(self, *args: Any) -> None:
        self._writes = PythonStateWrites(*args)
        self.calls: list[bytes] = []

    def write(self, packed: bytes) -> int:
        self.calls.append(packed)
        return self._writes.write(packed)

    def joinEntriesOf(self, user: str) -> bytes:  # noqa: N802 (the Java method's name)
        return self._writes.joinEntriesOf(user)


def test_one_flush_writes_every_staged_user_in_one_call() -> None:
    keys = _Keys()
    users, join = _Value(keys), _Map(keys)
    jvm = _Counting(keys, users, join)
    writer = StateWriter(jvm, keys)
    users.stored["gone"] = ["old"]
    join.entries[("ü-1", "e0")] = ("stale",)
    writer.stage_value("ü-1", {"n": 1})
    writer.stage_entries("ü-1", {"e1": (0, 1.5), "e0": None})
    writer.stage_value("ü-1", {"n": 2})  # the latest value wins
    writer.stage_entries("ü-1", {"e2": (1, "x")})  # entries add up
    writer.stage_entries("u-2", {"e3": (2,)})  # entries alone: the value is left as it is
    writer.stage_clear("gone")
    keys.current = "somebody"
    assert writer.flush() == 3 and len(jvm.calls) == 1 and writer.flushes == 1
    assert keys.current is None and keys.forgotten == 1  # Flink's current key moved
    assert users.stored == {"ü-1": {"n": 2}}
    assert join.entries == {("ü-1", "e1"): (0, 1.5), ("ü-1", "e2"): (1, "x"), ("u-2", "e3"): (2,)}
    assert writer.flush() == 0 and len(jvm.calls) == 1  # nothing staged: no call


def test_values_are_pickled_as_pyflinks_state_api_pickles_them() -> None:
    keys = _Keys()
    raw_users, raw_join = _Value(keys), _Map(keys)
    writer = StateWriter(PythonStateWrites(keys, raw_users, raw_join, raw=True), keys)
    writer.stage_value("a", (1, [2.5]))
    writer.stage_entries("a", {"e": (0, "p")})
    writer.flush()
    # PyFlink's PickleDataConverter: pickle.dumps(value), its default protocol.
    assert raw_users.stored == {"a": pickle.dumps((1, [2.5]))}
    assert raw_join.entries == {("a", "e"): pickle.dumps((0, "p"))}


def test_a_users_entries_are_read_back_in_one_call_under_its_key() -> None:
    keys = _Keys()
    users, join = _Value(keys), _Map(keys)
    writer = StateWriter(PythonStateWrites(keys, users, join), keys)
    writer.stage_entries("a", {"e1": (0, 1.0, "x"), "é2": (1, None)})
    writer.stage_entries("b", {"e3": (2,)})
    writer.flush()
    assert writer.entries_of("a") == {"e1": (0, 1.0, "x"), "é2": (1, None)}
    assert keys.current == "a"
    assert writer.entries_of("nobody") == {}


def test_entries_packed_when_made_are_written_in_order_the_later_winning() -> None:
    from streamscore.job.state_writes import entry_record

    keys = _Keys()
    users, join = _Value(keys), _Map(keys)
    writer = StateWriter(PythonStateWrites(keys, users, join), keys)
    join.entries[("a", "old")] = (1,)
    writer.stage_records("a", [entry_record("e", (0, "pending")), entry_record("old", None)])
    writer.stage_records("a", [entry_record("e", (1, "closed"))])
    assert writer.flush() == 1
    assert join.entries == {("a", "e"): (1, "closed")}
