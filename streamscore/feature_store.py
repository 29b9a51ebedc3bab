"""The online feature store in Redis, written behind the scoring path.

Key layout: one hash per user, ``<prefix><user_id>`` (default ``streamscore:features:u000042``):
  event_time    epoch millis of the event the features are as of (just before it)
  event_id      that event
  feature_set   feature-set version, e.g. ``fs-v1``
  features      JSON object {feature name: value}
  updated_at    epoch millis of the write
with a TTL (``feature_ttl_s``) refreshed on every write.

Writes go through a Lua script that refuses to replace a newer event's features with an older
one's, so replays after a failure and out-of-order events are harmless: the stored vector is
always that of the newest event seen. The scoring path only appends to an in-memory buffer; a
background thread sends batches in one pipelined round trip. When Redis is down the buffer is
dropped (and counted), the job keeps scoring, and predictions say ``degraded: ["redis"]``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import orjson
import redis

from streamscore.config import Settings
from streamscore.metrics import Metrics

log = logging.getLogger(__name__)

CONDITIONAL_WRITE = """
local current = redis.call('HGET', KEYS[1], 'event_time')
if current and tonumber(current) > tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'event_time', ARGV[1], 'event_id', ARGV[2], 'feature_set', ARGV[3],
           'features', ARGV[4], 'updated_at', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
"""

# user id -> (event time, event id, feature vector in the feature set's order)
PendingWrite = tuple[int, str, list[float]]


def connect(settings: Settings, timeout_s: float = 2.0) -> redis.Redis:
    """The one way to a Redis client: address, database and password from the settings."""
    password = settings.redis_password
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        password=password.get_secret_value() if password is not None else None,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )


def read_features(client: redis.Redis, key_prefix: str, user_id: str) -> dict[str, Any] | None:
    """A user's stored features, decoded; None if absent. For readers of the store and tests."""
    raw = client.hgetall(f"{key_prefix}{user_id}")
    if not raw:
        return None
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    return {
        "event_time": int(fields["event_time"]),
        "event_id": fields["event_id"],
        "feature_set": fields["feature_set"],
        "features": orjson.loads(fields["features"]),
        "updated_at": int(fields["updated_at"]),
    }


class FeatureStoreWriter:
    """Buffers the newest feature vector per user and flushes batches from a daemon thread."""

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        feature_set_version: str,
        feature_names: tuple[str, ...],
        ttl_s: int,
        metrics: Metrics,
        flush_max_records: int = 2000,
        flush_interval_ms: int = 20,
        max_pending: int = 200_000,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._version = feature_set_version.encode()
        self._names = feature_names
        self._ttl_ms = str(ttl_s * 1000).encode()
        self._metrics = metrics
        self._flush_max = flush_max_records
        self._interval_s = flush_interval_ms / 1000.0
        self._max_pending = max_pending
        self._pending: deque[tuple[str, PendingWrite]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sha: str | None = None
        self.healthy = True
        self._thread = threading.Thread(target=self._run, name="feature-store-writer", daemon=True)
        self._thread.start()

    def submit(self, user_id: str, event_time: int, event_id: str, vector: list[float]) -> None:
        """Queue a write; never blocks. Oldest writes are dropped if Redis cannot keep up.

        Only the vector is queued: the JSON is built at flush time, once per user per batch on
        the writer thread, instead of once per event on the scoring path."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self._metrics.feature_store_writes.labels("dropped").inc()
        self._pending.append((user_id, (event_time, event_id, vector)))
        if len(self._pending) >= self._flush_max:
            self._wake.set()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def flush(self) -> None:
        """Send everything queued so far (also called by the thread)."""
        while self._pending:
            batch: dict[str, PendingWrite] = {}
            for _ in range(min(len(self._pending), self._flush_max * 4)):
                user_id, write = self._pending.popleft()
                current = batch.get(user_id)
                if current is None or write[0] >= current[0]:
                    batch[user_id] = write
            self._send(batch)

    def _send(self, batch: dict[str, PendingWrite]) -> None:
        writes = self._metrics.feature_store_writes
        try:
            if self._sha is None:
                self._sha = self._client.script_load(CONDITIONAL_WRITE)
            now = str(int(time.time() * 1000)).encode()
            pipe = self._client.pipeline(transaction=False)
            names = self._names
            for user_id, (event_time, event_id, vector) in batch.items():
                features = orjson.dumps(dict(zip(names, vector)))
                pipe.execute_command(
                    "EVALSHA",
                    self._sha,
                    1,
                    self._prefix + user_id,
                    event_time,
                    event_id,
                    self._version,
                    features,
                    now,
                    self._ttl_ms,
                )
            results = pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError) as exc:
            self._mark_unhealthy(exc, len(batch))
            return
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            if any("NOSCRIPT" in str(e) for e in errors):
                self._sha = None  # Redis restarted and lost the script: reload on next flush
            self._mark_unhealthy(errors[0], len(errors))
        written = sum(1 for r in results if r == 1)
        writes.labels("written").inc(written)
        writes.labels("stale").inc(len(results) - written - len(errors))
        if not errors and not self.healthy:
            log.info("feature store reachable again")
            self.healthy = True

    def _mark_unhealthy(self, exc: BaseException, lost: int) -> None:
        self._metrics.feature_store_writes.labels("failed").inc(lost)
        if self.healthy:
            log.warning("feature store write failed (%s); scoring continues without it", exc)
        self.healthy = False

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval_s if self.healthy else 1.0)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the thread must survive anything to keep the store fresh
                log.exception("feature store flush failed")
        self.flush()
