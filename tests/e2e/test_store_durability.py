"""The online store survives Redis crashes and can be rebuilt from the event log.

* A writer's writes while Redis is down (killed with SIGKILL) are kept and written once it is
  back on the same port and dir: each user's newest vector, never older than what Redis held.
* Redis's AOF keeps acknowledged writes across a SIGKILL, and the stack runs Redis with it.
* ``streamscore store backfill`` after a FLUSHALL writes exactly the users of the events topic,
  each with the vector the offline replay computes for their newest event.

The crash tests run redis-server with the stack's own command (``redis_server.program``) on a
port and dir of their own: the stack's Redis is supervised and would be back within a second,
too soon to hold writes pending on purpose, and other tests use it.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from streamscore.cli import main
from streamscore.config import Settings
from streamscore.feature_store import FeatureStoreWriter, connect, read_features
from streamscore.features.engine import FeatureEngine
from streamscore.metrics import Metrics
from streamscore.model.dataset import replay_features
from streamscore.produce import malform
from streamscore.serde import Codec
from streamscore.stack import redis_server
from streamscore.stack import stack as stack_module
from streamscore.stack.kafka import create_topics
from streamscore.stack.layout import StackLayout
from streamscore.store_backfill import backfill
from tests.e2e.helpers import as_overrides, recent_events, send

pytestmark = pytest.mark.e2e
PREFIX = "durability:"
NAMES = ("t", "i")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class OwnRedis:
    """redis-server as the stack runs it (its command, AOF in its layout's redis dir), on a free
    port and a dir of this test's, killed and restarted by the test."""

    def __init__(self, base: Settings, directory: Path) -> None:
        self.settings = base.with_overrides({"redis_port": _free_port()})
        layout = StackLayout(directory)
        redis_server.prepare(self.settings, layout)
        self.command = redis_server.program(self.settings, layout).command
        self.data_dir = layout.redis_dir
        self._log = directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self._log, "ab") as out:
            self._process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        _wait_for(self._answers, "redis-server to answer (AOF loaded)")

    def _answers(self) -> bool:
        try:
            return redis_server.ping(self.settings)
        except (redis.RedisError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync, like a crash of the process."""
        assert self._process is not None
        self._process.kill()
        self._process.wait(10)
        self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self.kill()


@pytest.fixture()
def own_redis(stack: Settings, tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(stack, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _wait_aof_written(client: redis.Redis) -> None:
    """Until everything acknowledged is in the AOF file (write and fsync both done)."""

    def written() -> bool:
        info = client.info("persistence")
        assert info["aof_enabled"] == 1
        return info["aof_buffer_length"] == 0 and info["aof_pending_bio_fsync"] == 0

    _wait_for(written, "the AOF to be written")


def _count(writer: FeatureStoreWriter, result: str) -> float:
    sample = writer._metrics.registry.get_sample_value(
        "streamscore_feature_store_writes_total", {"result": result}
    )
    return sample or 0.0


def test_writes_while_redis_is_down_reach_it_when_it_is_back(own_redis: OwnRedis) -> None:
    users = [f"u{i:03d}" for i in range(60)]
    newest: dict[str, tuple[int, str]] = {}  # user -> (event time, event id) Redis must end with
    writer = FeatureStoreWriter(
        connect(own_redis.settings, timeout_s=0.5),
        PREFIX,
        "fs-v1",
        NAMES,
        600,
        Metrics(),
        flush_interval_ms=10,
        retry_interval_s=0.2,
    )

    def write(user_id: str, event_time: int) -> None:
        event_id = f"{user_id}@{event_time}"
        vector = [float(event_time), float(users.index(user_id))]
        writer.submit(user_id, event_time, event_id, vector)
        if event_time >= newest.get(user_id, (-1, ""))[0]:
            newest[user_id] = (event_time, event_id)

    try:
        for i, user_id in enumerate(users):
            write(user_id, 1_000)
            if i % 2 == 0:
                write(user_id, 2_000)
        writer.flush()  # waits for the thread's batch in flight, then sends the rest
        client = connect(own_redis.settings)
        before = {u: read_features(client, PREFIX, u) for u in users}
        assert {u: (s["event_time"], s["event_id"]) for u, s in before.items() if s} == newest
        _wait_aof_written(client)

        own_redis.kill()
        # While Redis is down: newer events for a third of the users, older ones (which Redis
        # must refuse in the end) for another third, nothing for the rest.
        for i, user_id in enumerate(users):
            if i % 3 == 0:
                write(user_id, 3_000 + i)
            elif i % 3 == 1:
                write(user_id, 500)
        _wait_for(lambda: not writer.healthy, "the writer to notice the outage")
        writer.flush()
        assert writer.pending_users == sum(1 for i in range(len(users)) if i % 3 != 2)
        assert _count(writer, "failed") > 0

        own_redis.start()  # same port, same dir: the AOF brings back what was written
        _wait_for(lambda: writer.healthy and writer.pending_users == 0, "the pending writes")
        for user_id in users:
            stored = read_features(client, PREFIX, user_id)
            assert stored is not None, user_id
            assert (stored["event_time"], stored["event_id"]) == newest[user_id], user_id
            assert stored["event_time"] >= before[user_id]["event_time"]  # type: ignore[index]
            assert stored["features"] == {
                "t": float(stored["event_time"]),
                "i": float(users.index(user_id)),
            }
        assert _count(writer, "stale") >= sum(1 for i in range(len(users)) if i % 3 == 1)
        assert _count(writer, "dropped_pending") == 0
    finally:
        writer.close()


def test_acknowledged_writes_survive_a_sigkill(own_redis: OwnRedis) -> None:
    """The AOF, not a snapshot (``--save ""``): everything Redis acknowledged before the crash
    and wrote to its AOF is there after a restart on the same dir."""
    client = connect(own_redis.settings)
    writer = FeatureStoreWriter(client, PREFIX, "fs-v1", NAMES, 600, Metrics(), background=False)
    for i in range(200):
        writer.submit(f"u{i}", 1_000 + i, f"e{i}", [float(i), 0.0])
    writer.flush()
    assert _count(writer, "written") == 200
    stored = {f"u{i}": read_features(client, PREFIX, f"u{i}") for i in range(200)}
    _wait_aof_written(client)
    assert any(own_redis.data_dir.rglob("*.aof"))

    own_redis.kill()
    own_redis.start()

    client = connect(own_redis.settings)
    assert {u: read_features(client, PREFIX, u) for u in stored} == stored
    assert 0 < client.ttl(f"{PREFIX}u0") <= 600


def test_the_stack_runs_redis_with_that_aof_in_its_dir(stack: Settings) -> None:
    config = connect(stack).config_get("*")
    assert (config["appendonly"], config["appendfsync"], config["save"]) == ("yes", "everysec", "")
    assert Path(config["dir"]) == stack_module.layout_of(stack).redis_dir


def _offline_store(events: list[dict[str, Any]]) -> dict[str, tuple[int, str, dict[str, float]]]:
    """Per user: their newest event (the later on a tie) and its vector from replay_features."""
    engine = FeatureEngine()
    newest: dict[str, tuple[int, str, dict[str, float]]] = {}
    for event, vector in replay_features(events, engine):
        current = newest.get(event["user_id"])
        if current is None or event["event_time"] >= current[0]:
            features = dict(zip(engine.names, vector))
            newest[event["user_id"]] = (event["event_time"], event["event_id"], features)
    return newest


def test_backfill_after_flushall_writes_the_offline_replay(
    stack: Settings, job_settings: dict[str, str]
) -> None:
    run = job_settings["job_name"]
    overrides = {**job_settings, "topic_events": f"events-{run}", "redis_key_prefix": f"{run}:"}
    settings = Settings().with_overrides(overrides)
    assert create_topics(settings) == [settings.topic_events]  # a log of this test's own
    codec = Codec("event")
    valid = recent_events(seed=303, count=400, users=40)
    records = [(e["user_id"].encode(), codec.encode(e)) for e in valid]
    # What the job refuses never reaches the store: a record it cannot decode, an invalid event
    # (of a user with no other event), and one stamped an hour ahead of its arrival.
    invalid = {**valid[0], "user_id": "u-invalid-only", "event_id": "invalid"}
    future = {**valid[1], "event_id": "from-the-future"}
    future["event_time"] = int(time.time() * 1000) + 3_600_000
    records += [
        (b"bad", malform(codec, valid[2], "truncated", random.Random(1))),
        (b"u-invalid-only", malform(codec, invalid, "negative_amount", random.Random(2))),
        (future["user_id"].encode(), codec.encode(future)),
    ]
    send(settings, records)
    expected = _offline_store(valid)

    client = connect(settings)
    client.flushall()  # the data loss
    args = [item for pair in as_overrides(overrides) for item in ("--set", pair)]
    result = CliRunner().invoke(main, [*args, "store", "backfill"])
    assert result.exit_code == 0, result.output
    assert f"backfilled {len(expected)} users' features from {len(valid)} events" in result.output
    assert "(0 skipped" in result.output

    prefix = settings.redis_key_prefix
    keys = {key.decode().removeprefix(prefix) for key in client.scan_iter(f"{prefix}*")}
    assert keys == set(expected)
    for user_id, (event_time, event_id, features) in expected.items():
        stored = read_features(client, prefix, user_id)
        assert stored is not None, user_id
        assert (stored["event_time"], stored["event_id"]) == (event_time, event_id)
        assert stored["feature_set"] == "fs-v1"
        assert stored["features"] == pytest.approx(features, rel=1e-9)
        assert 0 < client.ttl(f"{prefix}{user_id}") <= settings.feature_ttl_s

    # Again, with one user's stored vector newer than the log's: that user is skipped.
    newer_user = next(iter(expected))
    client.hset(f"{prefix}{newer_user}", "event_time", expected[newer_user][0] + 60_000)
    again = backfill(settings)
    assert (again.written, again.skipped) == (len(expected) - 1, 1)
    assert read_features(client, prefix, newer_user)["event_time"] == (  # type: ignore[index]
        expected[newer_user][0] + 60_000
    )
