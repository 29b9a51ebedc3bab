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
always that of the newest event seen. The scoring path only appends to an in-memory queue; a
background thread sends batches in one pipelined round trip, every ``redis_flush_interval_ms``
while the job keeps up; while it catches up on a backlog, every
``redis_catch_up_flush_interval_ms``, so that each user's writes within it collapse into one
(``FlushPace``). When Redis is down the job keeps
scoring, predictions say ``degraded: ["redis"]``, and the writes that failed are not lost: the
newest one per user is kept (``PendingWrites``, at most ``redis_pending_max_users`` users, the
oldest dropped and counted past it) and written once Redis answers again, through the same
script, so a replayed write never overwrites a newer one.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any, Final, cast

import orjson
import redis
from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError

from streamscore.config import Settings
from streamscore.metrics import Metrics
from streamscore.os_thread_names import name_os_thread

log = logging.getLogger(__name__)

# One call writes a whole batch: KEYS are the users' hashes; ARGV is (now, TTL in ms,
# feature-set version) then (event time, event id, features JSON) per key. Per key it answers 1
# (written), 0 (stale: the stored event is newer) or that key's error (pcall: one bad key, e.g.
# WRONGTYPE, does not fail the others). One script call per batch instead of one per user: the
# per-command work (packing, Lua entry, reply parsing) was most of the writer's cost, in the
# job's interpreter and in Redis. The keys of a batch must live on one Redis (no Cluster).
CONDITIONAL_WRITE: Final = """
local results = {}
for i, key in ipairs(KEYS) do
  local at = 3 * i + 1
  local current = redis.pcall('HGET', key, 'event_time')
  if type(current) == 'table' and current.err then
    results[i] = current
  elseif current and tonumber(current) > tonumber(ARGV[at]) then
    results[i] = 0
  else
    local written = redis.pcall('HSET', key, 'event_time', ARGV[at], 'event_id', ARGV[at + 1],
                                'feature_set', ARGV[3], 'features', ARGV[at + 2],
                                'updated_at', ARGV[1])
    if type(written) == 'table' and written.err then
      results[i] = written
    else
      redis.call('PEXPIRE', key, ARGV[2])
      results[i] = 1
    end
  end
end
return results
"""

# (event time, event id, feature vector in the feature set's order), per user id
PendingWrite = tuple[int, str, Sequence[float]]

# Replies that mean "not now" rather than "never": the server is restarting or loading its AOF
# (a ConnectionError in redis-py), lost its script cache in a restart, is out of memory for the
# moment, or is a replica. A write that gets one is kept and replayed; any other error reply
# (WRONGTYPE, say) would fail the same way forever, so that write is counted and dropped.
TRANSIENT_ERRORS: Final = (
    redis.ConnectionError,
    redis.TimeoutError,
    OSError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
)
TRANSIENT_REPLIES: Final = ("BUSY", "MASTERDOWN", "TRYAGAIN")


def connect(settings: Settings, timeout_s: float = 2.0) -> redis.Redis:
    """The one way to a Redis client: address, database, ACL user and password from the
    settings (no user: the password is the default user's)."""
    password = settings.redis_password
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        username=settings.redis_username,
        password=password.get_secret_value() if password is not None else None,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )


def read_features(client: redis.Redis, key_prefix: str, user_id: str) -> dict[str, Any] | None:
    """A user's stored features, decoded; None if absent. For readers of the store and tests."""
    # (redis-py's sync client; its types also cover the async one)
    raw = cast(dict[bytes, bytes], client.hgetall(f"{key_prefix}{user_id}"))
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


def is_transient(error: BaseException) -> bool:
    """Whether a failed write may succeed if sent again (see ``TRANSIENT_ERRORS``)."""
    return isinstance(error, TRANSIENT_ERRORS) or str(error).startswith(TRANSIENT_REPLIES)


def newer(write: PendingWrite, current: PendingWrite | None) -> bool:
    """Whether ``write`` replaces ``current`` for the same user: the store's rule (newest event
    time wins), with the later write winning a tie, as the Lua script lets it."""
    return current is None or write[0] >= current[0]


class ConditionalWriter:
    """The store's one write path: ``CONDITIONAL_WRITE`` for a batch of users, in one script
    call. The job's writer and ``store backfill`` both write through it, so they share the key
    layout, the TTL and the newest-event-wins rule."""

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        feature_set_version: str,
        feature_names: tuple[str, ...],
        ttl_s: int,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._version = feature_set_version.encode()
        self._names = feature_names
        self._ttl_ms = str(ttl_s * 1000).encode()
        self._sha: str | None = None

    def send(self, batch: Mapping[str, PendingWrite]) -> list[Any]:
        """One result per write, in the batch's order: 1 (written), 0 (stale: Redis holds a newer
        event's features) or the error Redis answered for that write. A failure of the whole
        call raises ``redis.RedisError`` or ``OSError``.

        The JSON is built here, once per user per batch, not once per event on the scoring path.
        """
        if not batch:
            return []
        prefix, names = self._prefix, self._names
        keys = [prefix + user_id for user_id in batch]
        args: list[Any] = [str(int(time.time() * 1000)).encode(), self._ttl_ms, self._version]
        for event_time, event_id, vector in batch.values():
            args += (event_time, event_id, orjson.dumps(dict(zip(names, vector))))
        for attempt in (1, 2):
            if self._sha is None:
                self._sha = cast(str, self._client.script_load(CONDITIONAL_WRITE))
            try:
                replies = self._client.evalsha(self._sha, len(keys), *keys, *args)
                return list(cast(list[Any], replies))
            except NoScriptError:
                # Redis restarted and lost the script: load it again, once.
                self._sha = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class PendingWrites:
    """The newest write per user that Redis has not taken yet, bounded in users.

    Kept in the order users last changed: replays go oldest first, and past ``max_users`` the
    user untouched the longest is dropped (their next event, or a backfill, writes them again).
    Vectors are kept as ``array("d")``: about 0.6 KB per user instead of 1.1 KB as a list of
    float objects, which matters at 100,000 users per scoring subtask. Not thread-safe: the
    writer thread alone touches it."""

    def __init__(self, max_users: int) -> None:
        self._max = max_users
        self._writes: OrderedDict[str, PendingWrite] = OrderedDict()

    def __len__(self) -> int:
        return len(self._writes)

    def get(self, user_id: str) -> PendingWrite | None:
        return self._writes.get(user_id)

    def merge(self, writes: Mapping[str, PendingWrite]) -> int:
        """Keep each user's newest write (an older one than kept is ignored); returns how many
        users were dropped, oldest first, to stay within the bound."""
        kept = self._writes
        for user_id, write in writes.items():
            current = kept.get(user_id)
            if not newer(write, current):
                continue
            if current is not None:
                kept.move_to_end(user_id)
            kept[user_id] = (write[0], write[1], array("d", write[2]))
        dropped = max(0, len(kept) - self._max)
        for _ in range(dropped):
            kept.popitem(last=False)
        return dropped

    def oldest(self, count: int) -> dict[str, PendingWrite]:
        """Up to ``count`` writes, the oldest first (they stay until ``remove``)."""
        return dict(islice(self._writes.items(), count))

    def remove(self, user_ids: Iterable[str]) -> None:
        for user_id in user_ids:
            del self._writes[user_id]


class FlushPace:
    """When the writer thread sends what is queued.

    While the job keeps up, every ``interval_s``: the store trails the job by about that much.
    While it catches up on a backlog, every ``catch_up_interval_s``: a drain scores each user
    many times a second, and writing each of those vectors, soon replaced, cost the writer's CPU
    and Redis's and, through the GIL, the scoring thread's (bench/HISTORY.md, thirty-third
    session). The store then trails the job by up to that interval, while the job trails its
    input by more. The job catches up from the moment the scoring operator reports a full batch
    (``behind``: its input was waiting, the same sign by which it stops writing state ahead of
    the barrier) until ``catch_up_interval_s`` has passed without one. With ``max_queued`` half
    full it sends at once, so that catching up never drops a write."""

    def __init__(
        self,
        interval_s: float,
        catch_up_interval_s: float,
        max_queued: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._catch_up_s = max(catch_up_interval_s, interval_s)
        self._queue_limit = max(1, max_queued // 2)
        self._clock = clock
        self._sent_at = clock()
        self._behind_at: float | None = None
        self.catching_up = False

    def behind(self) -> None:
        """The scoring operator had a full batch: its input is waiting."""
        self._behind_at = self._clock()

    def due(self, queued: int) -> bool:
        """Whether to send the ``queued`` writes now; notes a change of pace in the log."""
        now = self._clock()
        behind_at = self._behind_at
        catching_up = behind_at is not None and now - behind_at < self._catch_up_s
        if catching_up != self.catching_up:
            self.catching_up = catching_up
            if catching_up:
                log.info(
                    "catching up on a backlog: feature writes sent every %.0f ms, each user's "
                    "newest",
                    self._catch_up_s * 1000,
                )
            else:
                log.info("caught up: feature writes sent every %.0f ms", self.interval_s * 1000)
        if catching_up and queued < self._queue_limit and now - self._sent_at < self._catch_up_s:
            return False
        self._sent_at = now
        return True

    def wait_s(self) -> float:
        """How long the writer thread sleeps before its next ``due``: the flush interval, or
        while catching up the rest of the catch-up interval. Each wake takes the GIL from the
        scoring thread (most of what woke it in a drain: bench/HISTORY.md, thirty-third
        session), so it does not wake to find nothing due; it finds the job caught up at most
        that much later."""
        if not self.catching_up:
            return self.interval_s
        return max(self.interval_s, self._catch_up_s - (self._clock() - self._sent_at))


def _default_pending_max_users() -> int:
    return int(Settings.model_fields["redis_pending_max_users"].default)


class FeatureStoreWriter:
    """Queues the newest feature vector per user and flushes batches from a daemon thread.

    Writes whose batch fails go to ``PendingWrites`` and are replayed, oldest first, once
    ``retry_interval_s`` has passed since the last failure; queued writes are merged into them
    meanwhile, so memory is bounded by users, not by the length of the outage.

    Metrics (``streamscore_feature_store_writes_total{result}``): ``written``; ``superseded``
    (a newer write of the same user was queued before it was sent: only the newest goes);
    ``stale`` (Redis had a newer event); ``failed`` (a first attempt failed: the write is kept
    pending); ``rejected`` (Redis refused it for good, e.g. WRONGTYPE: not retried); ``dropped``
    (more than ``max_queued`` users waiting: scoring outran the writer); ``dropped_pending`` (past
    ``max_pending_users``). ``streamscore_feature_store_catch_ups_total``: the times the writer
    went to its catch-up pace (``FlushPace``)."""

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
        max_queued: int = 200_000,
        max_pending_users: int | None = None,
        retry_interval_s: float = 1.0,
        background: bool = True,
        catch_up_flush_interval_ms: int = 1000,
    ) -> None:
        """``background=False`` starts no thread: the caller flushes (tests, batch tools)."""
        self._writer = ConditionalWriter(
            client, key_prefix, feature_set_version, feature_names, ttl_s
        )
        self._metrics = metrics
        self._flush_max = flush_max_records
        self._pace = FlushPace(
            flush_interval_ms / 1000.0, catch_up_flush_interval_ms / 1000.0, max_queued
        )
        self._max_queued = max_queued
        # The newest write per user not yet taken by the writer: the scoring thread puts, the
        # writer pops (``_take``), each in steps the GIL keeps whole, so neither takes a lock.
        # Oldest first, and an ordered dict: both sides take from its head, which on a plain
        # dict walks every slot deleted before it (15.5 us per submit past ``max_queued``
        # against 0.7; bench/HISTORY.md, thirty-seventh session).
        self._queue: OrderedDict[str, PendingWrite] = OrderedDict()
        # Writes replaced before they were taken: counted by the scoring thread alone, reported
        # by the writer (the difference since its last report).
        self._superseded = 0
        self._superseded_reported = 0
        self._pending = PendingWrites(max_pending_users or _default_pending_max_users())
        self._retry_interval_s = retry_interval_s
        self._retry_at = 0.0  # time.monotonic() before which pending writes are not retried
        self._dropped_this_outage = 0
        self._flush_lock = threading.Lock()  # the thread and an explicit flush() never overlap
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.healthy = True
        self._flush_thread: threading.Thread | None = None
        if background:
            self._flush_thread = threading.Thread(
                target=self._run, name="feature-store-writer", daemon=True
            )
            self._flush_thread.start()
            name_os_thread(self._flush_thread, "store-writer")

    @property
    def pending_users(self) -> int:
        """Users whose newest write waits for Redis to answer again."""
        return len(self._pending)

    def submit(self, user_id: str, event_time: int, event_id: str, vector: list[float]) -> None:
        """Queue a write; never blocks. Past ``max_queued`` users waiting, the user queued
        longest ago is dropped.

        Only the vector is queued, and only the user's newest (the store's rule, ``newer``): a
        write the writer has not taken yet is replaced in place, so a drain's many writes of a
        user between two flushes cost the writer nothing (it used to take each from a queue
        and drop all but the newest). The JSON is built at flush time, on the writer thread."""
        queue = self._queue
        write = (event_time, event_id, vector)
        current = queue.get(user_id)
        if current is not None:
            self._superseded += 1
            if newer(write, current):
                queue[user_id] = write
            return
        if len(queue) >= self._max_queued:
            try:
                queue.popitem(last=False)
            except KeyError:  # the writer took them all meanwhile
                pass
            self._metrics.feature_store_writes.labels("dropped").inc()
        queue[user_id] = write
        if len(queue) == self._flush_max:
            # Once, when the queue fills: threading.Event.set() is Python (a lock and a
            # notify), and called for every record while the writer had not yet taken the
            # queue it cost the scoring thread more than the record's submit itself. Missed
            # (the writer took records meanwhile), the writer flushes on its interval anyway.
            self._wake.set()

    def behind(self) -> None:
        """The job is catching up on a backlog (``FlushPace``): called by the scoring operator
        after each full batch."""
        self._pace.behind()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._flush_thread is not None:
            self._flush_thread.join(timeout_s)
        else:
            self.flush(retry_now=True)
        if self._pending:
            log.warning(
                "%d users' feature writes were still pending (Redis unreachable): run "
                "`streamscore store backfill` once it is back",
                len(self._pending),
            )

    def flush(self, retry_now: bool = False) -> None:
        """Send everything queued so far (also called by the thread).

        While writes are pending, the queue is merged into them and the lot is replayed once the
        retry interval has passed (at once with ``retry_now``)."""
        with self._flush_lock:
            if self._pending:
                self._keep(self._take(len(self._queue)))
                if not retry_now and time.monotonic() < self._retry_at:
                    return
                if not self._replay():
                    return
            while self._queue:
                failed = self._send(self._take(self._flush_max * 4), first_attempt=True)
                if failed:
                    self._keep(failed)
                    return

    def _take(self, count: int) -> dict[str, PendingWrite]:
        """Up to ``count`` queued writes (one per user, its newest)."""
        batch: dict[str, PendingWrite] = {}
        queue = self._queue
        # The users in the order they were queued (a replay after an outage keeps it). The
        # slice is copied in one step under the GIL; each write is then popped, so that one the
        # scoring thread replaced meanwhile goes in its newest form, and a user queued again
        # after the pop waits for the next flush.
        for user_id, _ in list(islice(queue.items(), count)):
            write = queue.pop(user_id, None)
            if write is not None:
                batch[user_id] = write
        superseded = self._superseded
        if superseded != self._superseded_reported:
            self._metrics.feature_store_writes.labels("superseded").inc(
                superseded - self._superseded_reported
            )
            self._superseded_reported = superseded
        return batch

    def _keep(self, writes: Mapping[str, PendingWrite]) -> None:
        dropped = self._pending.merge(writes)
        if dropped:
            self._metrics.feature_store_writes.labels("dropped_pending").inc(dropped)
            if not self._dropped_this_outage:
                log.warning(
                    "more users' feature writes pending than redis_pending_max_users: dropping "
                    "the oldest (run `streamscore store backfill` once Redis is back)"
                )
            self._dropped_this_outage += dropped

    def _replay(self) -> bool:
        """Send the pending writes, oldest first; False if Redis failed again."""
        pending = self._pending
        while pending:
            batch = pending.oldest(self._flush_max * 4)
            failed = self._send(batch, first_attempt=False)
            pending.remove(user_id for user_id in batch if user_id not in failed)
            if failed:
                return False
        if self._dropped_this_outage:
            log.warning(
                "pending feature writes replayed; %d users' writes were dropped on the way",
                self._dropped_this_outage,
            )
            self._dropped_this_outage = 0
        return True

    def _send(self, batch: dict[str, PendingWrite], first_attempt: bool) -> dict[str, PendingWrite]:
        """Write a batch; returns the writes to keep for a retry (empty when all went through).

        ``failed`` counts a write once, on its first attempt, not on every retry."""
        writes = self._metrics.feature_store_writes
        try:
            results = self._writer.send(batch)
        except (redis.RedisError, OSError) as exc:
            if first_attempt:
                writes.labels("failed").inc(len(batch))
            self._mark_unhealthy(exc)
            return batch
        retry: dict[str, PendingWrite] = {}
        written = rejected = 0
        error: BaseException | None = None
        for (user_id, write), result in zip(batch.items(), results):
            if isinstance(result, Exception):
                error = error or result
                if is_transient(result):
                    retry[user_id] = write
                else:
                    rejected += 1
            elif result == 1:
                written += 1
        writes.labels("written").inc(written)
        writes.labels("stale").inc(len(results) - written - len(retry) - rejected)
        if rejected:
            writes.labels("rejected").inc(rejected)
        if retry and first_attempt:
            writes.labels("failed").inc(len(retry))
        if error is not None:
            self._mark_unhealthy(error)
        elif not self.healthy:
            log.info("feature store reachable again")
            self.healthy = True
        return retry

    def _mark_unhealthy(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + self._retry_interval_s
        if self.healthy:
            log.warning(
                "feature store write failed (%s); scoring continues, the newest write per user "
                "is kept for when Redis is back",
                exc,
            )
        self.healthy = False

    def _run(self) -> None:
        pace = self._pace
        while not self._stop.is_set():
            self._wake.wait(
                pace.wait_s() if self.healthy else max(self._retry_interval_s, pace.interval_s)
            )
            self._wake.clear()
            was_catching_up = pace.catching_up
            due = pace.due(len(self._queue))
            if pace.catching_up and not was_catching_up:
                self._metrics.feature_store_catch_ups.inc()
            if not due:
                continue
            try:
                self.flush()
            except Exception:  # the thread must survive anything to keep the store fresh
                log.exception("feature store flush failed")
        self.flush(retry_now=True)
