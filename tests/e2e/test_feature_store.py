"""The Redis writer against a real Redis server: newest event wins, outages degrade, not fail."""

from __future__ import annotations

import time

import pytest

from streamscore.config import Settings
from streamscore.feature_store import FeatureStoreWriter, connect, read_features
from streamscore.metrics import Metrics

pytestmark = pytest.mark.e2e
NAMES = ("a", "b")


def _writer(settings: Settings, port: int | None = None) -> FeatureStoreWriter:
    if port is not None:
        settings = settings.with_overrides({"redis_port": port})
    client = connect(settings, timeout_s=0.5)
    return FeatureStoreWriter(
        client, "fs-test:", "fs-v1", NAMES, 60, Metrics(), flush_interval_ms=10
    )


def _sample(metrics: Metrics, result: str) -> float:
    return (
        metrics.registry.get_sample_value(
            "streamscore_feature_store_writes_total", {"result": result}
        )
        or 0.0
    )


def test_newest_event_wins_across_batches(stack: Settings) -> None:
    writer = _writer(stack)
    try:
        writer.submit("u1", 2_000, "e2", [2.0, 20.0])
        writer.submit("u1", 1_000, "e1", [1.0, 10.0])  # older, same batch: deduplicated away
        writer.flush()
        writer.submit("u1", 1_500, "e-old", [9.0, 9.0])  # older, later batch: refused by Redis
        writer.flush()
        client = connect(stack)
        stored = read_features(client, "fs-test:", "u1")
        assert stored is not None
        assert (stored["event_id"], stored["event_time"]) == ("e2", 2_000)
        assert stored["features"] == {"a": 2.0, "b": 20.0}
        assert 0 < client.ttl("fs-test:u1") <= 60
        assert _sample(writer._metrics, "stale") == 1.0
        assert _sample(writer._metrics, "written") == 1.0
    finally:
        writer.close()


def test_redis_outage_marks_unhealthy_without_blocking(stack: Settings) -> None:
    closed_port = 1  # nothing listens there
    writer = _writer(stack, port=closed_port)
    try:
        started = time.monotonic()
        for i in range(1000):
            writer.submit(f"u{i}", i, f"e{i}", [0.0, 0.0])
        assert time.monotonic() - started < 0.5  # submit never waits for Redis
        deadline = time.monotonic() + 5
        while writer.healthy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not writer.healthy
        assert _sample(writer._metrics, "failed") > 0
    finally:
        writer.close()


def test_one_bad_key_fails_alone_and_a_lost_script_is_reloaded(stack: Settings) -> None:
    """A batch is one script call: a key Redis refuses (WRONGTYPE) is rejected on its own, the
    rest of the batch is written, and a Redis that lost its scripts gets the script again at
    once (not after the retry interval)."""
    client = connect(stack)
    client.set("fs-test:wrongtype", "not a hash")
    writer = _writer(stack)
    try:
        writer.submit("wrongtype", 1_000, "e1", [1.0, 1.0])
        writer.submit("u-ok", 1_000, "e2", [2.0, 2.0])
        writer.flush()
        assert _sample(writer._metrics, "rejected") == 1.0
        assert _sample(writer._metrics, "written") == 1.0
        stored = read_features(client, "fs-test:", "u-ok")
        assert stored is not None and stored["event_id"] == "e2"
        assert writer.pending_users == 0  # refused for good: not kept for a retry

        client.script_flush()  # what a restarted Redis looks like to the writer
        writer.submit("u-ok", 2_000, "e3", [3.0, 3.0])
        writer.flush()
        stored = read_features(client, "fs-test:", "u-ok")
        assert stored is not None and stored["event_id"] == "e3"
        assert writer.healthy and writer.pending_users == 0
    finally:
        writer.close()
        client.delete("fs-test:wrongtype", "fs-test:u-ok")
