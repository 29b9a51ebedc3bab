"""``streamscore store backfill``: the online feature store rebuilt from the event log.

For a new Redis, or one that lost data (a crash within the AOF's last second, a FLUSHALL, an
outage longer than the job's pending writes could hold). The events topic is read from the
beginning in the job's order, with the events the job refuses left out as it leaves them out:
stamped too far ahead of their arrival (``validate_event``, with the record's Kafka timestamp
as the clock) and late (``model/topics_dataset.py``, which ``train --from-topics`` reads with).
What is left is replayed through the job's feature engine (``model/dataset.replay_features``).

Each user gets the vector of their newest event: the features as of just before it, windows
evaluated at its time, which is what the job's writer leaves in Redis. It is written through the
same conditional script (``feature_store.ConditionalWriter``), so a user whose stored vector is
newer is skipped and counted: the backfill is idempotent and safe while the job runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from streamscore.config import Settings
from streamscore.errors import Rejection, StackError
from streamscore.feature_store import ConditionalWriter, PendingWrite, connect, newer
from streamscore.features.definitions import FEATURE_SET
from streamscore.features.engine import FeatureEngine
from streamscore.model.dataset import replay_features
from streamscore.model.topics_dataset import (
    TopicRecord,
    job_order,
    read_topic,
    without_late_events,
)
from streamscore.validation import validate_event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackfillResult:
    events: int  # events replayed through the feature engine
    written: int  # users whose vector was written
    skipped: int  # users for whom Redis already held a newer event's vector

    def summary(self) -> str:
        return (
            f"backfilled {self.written} users' features from {self.events} events "
            f"({self.skipped} skipped: Redis already had a newer event's)"
        )


def arrived_in_time(records: Iterable[TopicRecord], max_ahead_ms: int) -> Iterator[TopicRecord]:
    """The records whose event time was not too far ahead of their arrival (Kafka timestamp),
    by the job's rule: one that was went to the dead letters and never touched any state."""
    for timestamp, partition, event in records:
        try:
            validate_event(event, timestamp, max_ahead_ms)
        except Rejection:
            continue
        yield timestamp, partition, event


def newest_vectors(
    events: Iterable[dict[str, Any]], engine: FeatureEngine
) -> tuple[dict[str, PendingWrite], int]:
    """Per user, the write the job leaves in Redis: their newest event's (by event time, the
    later one on a tie, as the store's rule has it) feature vector; and how many events were
    replayed."""
    newest: dict[str, PendingWrite] = {}
    replayed = 0
    for event, vector in replay_features(events, engine):
        replayed += 1
        write = (event["event_time"], event["event_id"], vector)
        if newer(write, newest.get(event["user_id"])):
            newest[event["user_id"]] = write
    return newest, replayed


def job_events(settings: Settings) -> Iterator[dict[str, Any]]:
    """The events topic from the beginning, in the job's order, as far as the job scores it."""
    records = read_topic(settings, settings.topic_events, "event")
    log.info("read %d events from %s", len(records), settings.topic_events)
    ordered = arrived_in_time(job_order(records), settings.max_event_ahead_ms)
    return without_late_events(
        ordered, settings.max_out_of_orderness_ms, settings.allowed_lateness_ms
    )


def backfill(settings: Settings, client: redis.Redis | None = None) -> BackfillResult:
    """Rebuild the store from the events topic (see the module doc)."""
    client = client if client is not None else connect(settings)
    _check_reachable(settings, client)  # before reading the whole topic for nothing
    engine = FeatureEngine(FEATURE_SET)
    newest, replayed = newest_vectors(job_events(settings), engine)
    log.info("replayed %d events; writing %d users' features", replayed, len(newest))
    writer = ConditionalWriter(
        client, settings.redis_key_prefix, FEATURE_SET.version, engine.names, settings.feature_ttl_s
    )
    written = skipped = 0
    users = list(newest)
    step = settings.redis_flush_max_records
    for start in range(0, len(users), step):
        batch = {user_id: newest[user_id] for user_id in users[start : start + step]}
        try:
            results = writer.send(batch)
        except (redis.RedisError, OSError) as exc:
            raise _failed(settings, written + skipped, exc) from None
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise _failed(settings, written + skipped, errors[0])
        done = sum(1 for r in results if r == 1)
        written += done
        skipped += len(results) - done
    return BackfillResult(replayed, written, skipped)


def _check_reachable(settings: Settings, client: redis.Redis) -> None:
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise StackError(
            f"Redis is not reachable at {settings.redis_host}:{settings.redis_port} ({exc}); "
            "start it with `streamscore stack up` or set redis_host/redis_port"
        ) from None


def _failed(settings: Settings, done: int, exc: BaseException) -> StackError:
    return StackError(
        f"Redis at {settings.redis_host}:{settings.redis_port} failed after {done} users "
        f"({exc}); run the backfill again: it rewrites only what is not newer in Redis"
    )
