"""The writer's pending writes while Redis is unreachable: bounded, newest wins, replayed.

A fake client stands in for Redis (this is the buffer's logic, not Redis's): it applies the
store's rule as the Lua script does (a write older than the stored event time is refused) and
fails every call while ``down``. tests/e2e/test_store_durability.py runs the same against a
real Redis killed and restarted."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis
from redis.exceptions import NoScriptError, ResponseError

from streamscore.feature_store import FeatureStoreWriter, PendingWrites
from streamscore.metrics import Metrics

PREFIX = "fs:"


class FakeRedis:
    """Just what ``ConditionalWriter`` calls: SCRIPT LOAD and one EVALSHA per batch."""

    def __init__(self) -> None:
        self.down = False
        self.stored: dict[str, int] = {}  # user id -> event time
        self.features: dict[str, dict[str, float]] = {}  # user id -> the stored features
        self.sent: list[str] = []  # user ids, in the order their writes reached "Redis"
        self.calls = 0
        self.scripts_loaded = 0
        self.script_cache: set[str] = set()
        self.next_errors: dict[str, Exception] = {}  # user id -> error for their next write

    def script_load(self, script: str) -> str:
        self._call()
        self.scripts_loaded += 1
        sha = f"sha{self.scripts_loaded}"
        self.script_cache.add(sha)
        return sha

    def restart(self) -> None:
        """A restarted Redis has lost its scripts."""
        self.script_cache.clear()

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise redis.ConnectionError("Connection refused")

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> list[Any]:
        self._call()
        if sha not in self.script_cache:
            raise NoScriptError("No matching script. Please use EVAL.")
        keys, args = keys_and_args[:numkeys], keys_and_args[numkeys:]
        results: list[Any] = []
        for i, key in enumerate(keys):
            user_id = key.removeprefix(PREFIX)
            event_time, _event_id, features = args[3 + 3 * i : 6 + 3 * i]
            error = self.next_errors.pop(user_id, None)
            if error is not None:
                results.append(error)
                continue
            self.sent.append(user_id)
            if self.stored.get(user_id, -1) > event_time:
                results.append(0)
            else:
                self.stored[user_id] = event_time
                self.features[user_id] = orjson.loads(features)
                results.append(1)
        return results


def make_writer(
    client: FakeRedis,
    max_pending_users: int = 100,
    retry_interval_s: float = 0.0,
    max_queued: int = 200_000,
) -> FeatureStoreWriter:
    return FeatureStoreWriter(
        client,  # type: ignore[arg-type]
        PREFIX,
        "fs-v1",
        ("a",),
        60,
        Metrics(),
        max_queued=max_queued,
        max_pending_users=max_pending_users,
        retry_interval_s=retry_interval_s,
        background=False,
    )


def count(writer: FeatureStoreWriter, result: str) -> float:
    sample = writer._metrics.registry.get_sample_value(
        "streamscore_feature_store_writes_total", {"result": result}
    )
    return sample or 0.0


def submit(writer: FeatureStoreWriter, user_id: str, event_time: int) -> None:
    writer.submit(user_id, event_time, f"{user_id}@{event_time}", [float(event_time)])


# --- the buffer ------------------------------------------------------------------------------


def test_pending_keeps_the_newest_write_per_user() -> None:
    pending = PendingWrites(max_users=10)

    def kept() -> tuple[int, str, list[float]] | None:
        write = pending.get("u1")
        return None if write is None else (write[0], write[1], list(write[2]))

    pending.merge({"u1": (5, "e5", [5.0])})
    pending.merge({"u1": (3, "e3", [3.0])})  # older: ignored
    assert kept() == (5, "e5", [5.0])
    pending.merge({"u1": (5, "e5b", [6.0])})  # same time: the later write wins, as in Redis
    assert kept() == (5, "e5b", [6.0])
    assert len(pending) == 1


def test_pending_drops_the_user_untouched_longest_past_the_bound() -> None:
    pending = PendingWrites(max_users=2)
    assert pending.merge({"u1": (1, "e", []), "u2": (1, "e", [])}) == 0
    pending.merge({"u1": (2, "e", [])})  # u1 changed last: u2 is now the oldest
    assert pending.merge({"u3": (1, "e", [])}) == 1
    assert list(pending.oldest(10)) == ["u1", "u3"]


def test_pending_replays_in_the_order_users_last_changed() -> None:
    pending = PendingWrites(max_users=10)
    pending.merge({"u1": (1, "e", []), "u2": (1, "e", []), "u3": (1, "e", [])})
    pending.merge({"u1": (2, "e", [])})
    pending.merge({"u2": (0, "e", [])})  # older than kept: changes nothing, moves nothing
    assert list(pending.oldest(2)) == ["u2", "u3"]
    pending.remove(["u2"])
    assert list(pending.oldest(10)) == ["u3", "u1"]


# --- the writer ------------------------------------------------------------------------------


def test_writes_that_fail_are_kept_and_written_when_redis_is_back() -> None:
    client = FakeRedis()
    writer = make_writer(client)
    client.down = True
    submit(writer, "u1", 1)
    submit(writer, "u2", 1)
    writer.flush()
    assert not writer.healthy and writer.pending_users == 2
    assert count(writer, "failed") == 2
    submit(writer, "u1", 3)  # newer: replaces the pending one
    submit(writer, "u1", 2)  # older than it: ignored
    writer.flush()
    assert writer.pending_users == 2 and count(writer, "failed") == 2  # counted once

    client.down = False
    writer.flush()
    assert writer.healthy and writer.pending_users == 0
    assert client.stored == {"u1": 3, "u2": 1}
    assert client.features == {"u1": {"a": 3.0}, "u2": {"a": 1.0}}
    assert sorted(client.sent) == ["u1", "u2"]  # one write per user
    assert count(writer, "written") == 2


def test_a_replayed_write_never_overwrites_a_newer_one() -> None:
    client = FakeRedis()
    writer = make_writer(client)
    client.down = True
    submit(writer, "u1", 5)
    writer.flush()
    client.down = False
    client.stored["u1"] = 10  # e.g. another writer got a newer event there meanwhile
    writer.flush()
    assert client.stored == {"u1": 10}
    assert count(writer, "stale") == 1 and writer.pending_users == 0


def test_past_the_bound_the_oldest_pending_user_is_dropped_and_counted() -> None:
    client = FakeRedis()
    writer = make_writer(client, max_pending_users=2)
    client.down = True
    for user_id in ("u1", "u2", "u3"):
        submit(writer, user_id, 1)
        writer.flush()
    assert writer.pending_users == 2
    assert count(writer, "dropped_pending") == 1
    client.down = False
    writer.flush()
    assert client.sent == ["u2", "u3"]


def test_replay_goes_in_the_order_users_last_changed() -> None:
    client = FakeRedis()
    writer = make_writer(client)
    client.down = True
    for user_id in ("u1", "u2", "u3"):
        submit(writer, user_id, 1)
    writer.flush()
    submit(writer, "u1", 2)  # u1 changed last
    client.down = False
    submit(writer, "u4", 1)
    writer.flush()
    assert client.sent == ["u2", "u3", "u1", "u4"]


def test_retries_wait_for_the_retry_interval() -> None:
    client = FakeRedis()
    writer = make_writer(client, retry_interval_s=3600)
    client.down = True
    submit(writer, "u1", 1)
    writer.flush()
    calls = client.calls
    client.down = False
    submit(writer, "u2", 1)
    writer.flush()  # within the interval: merged into the pending writes, nothing sent
    assert client.calls == calls and writer.pending_users == 2
    writer.flush(retry_now=True)
    assert client.stored == {"u1": 1, "u2": 1} and writer.healthy


def test_a_lost_script_is_loaded_again_and_the_batch_sent_at_once() -> None:
    """A restarted Redis has no scripts: EVALSHA answers NOSCRIPT until it is loaded again."""
    client = FakeRedis()
    writer = make_writer(client)
    submit(writer, "u0", 1)
    writer.flush()
    client.restart()
    submit(writer, "u1", 1)
    writer.flush()
    assert client.scripts_loaded == 2
    assert client.stored == {"u0": 1, "u1": 1} and writer.healthy
    assert writer.pending_users == 0


@pytest.mark.parametrize(
    ("error", "kept"),
    [
        (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), 0),
        (ResponseError("BUSY Redis is busy running a script"), 1),
        (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), 1),
    ],
)
def test_only_transient_errors_are_retried(error: Exception, kept: int) -> None:
    client = FakeRedis()
    writer = make_writer(client)
    client.next_errors["u1"] = error
    submit(writer, "u1", 1)
    writer.flush()
    assert writer.pending_users == kept
    assert count(writer, "rejected") == 1 - kept
    writer.flush()
    assert client.stored == ({"u1": 1} if kept else {})
