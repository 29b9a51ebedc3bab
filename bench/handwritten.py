"""The hand-written script a user could write instead of the job: the comparison the throughput
issue asks for, measured on the same box in the same run.

One Python process, one thread of our own: consume a batch of events (confluent-kafka), decode
each with fastavro, update the user's windows and compute the same feature vector as the job
(streamscore's ``FeatureEngine``, the same code the job and training use, with each user's
state in a plain dict), score the batch with one ``Booster.predict``, decide with the job's
cost model, encode each prediction with fastavro, produce it, and write each user's newest
vector to Redis in one pipeline per batch. At least once: the consumed offsets are committed
after the producer has flushed what they led to, about once a second. No durable state (a
restart starts every user empty), no label join, no challenger, no drift gauges, no dead-letter
topic (undecodable input is counted and skipped), no checkpoints and no web UI.

So it does what the issue's script did ("a single Python process with batched Redis and batched
predict, at-least-once, no durable state"), with our compiled feature engine, which a user of
this package would import rather than write windows of their own.

``script_main`` is the child's entry point in the benchmark (``systems.HandwrittenSystem``); the
child is spawned, so it must stay a top-level function of this module. ``run`` is the loop, for
the test (``tests/e2e/test_handwritten_script.py``).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import lightgbm
import numpy as np
import orjson
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from streamscore.features.definitions import FEATURE_SET
from streamscore.features.engine import FeatureEngine
from streamscore.kafka_io import PRODUCER_CONFIG
from streamscore.model.decisions import CostModel
from streamscore.serde import Codec

log = logging.getLogger("bench")

COMMIT_INTERVAL_S = 1.0


@dataclass(frozen=True)
class ScriptConfig:
    """Where the script reads and writes, and with which model (all plain values: it crosses
    into a spawned process)."""

    kafka: dict[str, Any]  # kafka_io.client_config: the brokers and, if secured, the login
    source: str
    sink: str
    redis: dict[str, Any]  # redis.Redis keyword arguments
    redis_key_prefix: str
    feature_ttl_s: int
    model_path: str
    model_version: str
    costs: dict[str, float]  # the job's cost model as configured (CostModel's fields)
    batch: int = 500
    # The longest a batch waits to fill: a backlog fills it at once; at 5,000 events/s a batch
    # of 500 would wait 100 ms, so it goes after 10 ms (the job's batches wait 5-20 ms).
    batch_wait_s: float = 0.01


class HandwrittenScript:
    """The script's state and its per-batch work, apart from the consume loop (``run``)."""

    def __init__(self, config: ScriptConfig) -> None:
        self.config = config
        self.events = Codec("event")
        self.predictions = Codec("prediction")
        self.engine = FeatureEngine(FEATURE_SET)
        self.users: dict[str, Any] = {}  # user id -> the feature engine's state
        self.booster = lightgbm.Booster(model_file=config.model_path)
        self.costs = CostModel(**config.costs)
        self.redis = redis.Redis(**config.redis)
        self.producer = Producer({**config.kafka, **PRODUCER_CONFIG})
        self.scored = 0
        self.undecodable = 0

    def process(self, messages: list[Any]) -> None:
        """Features, scores, predictions and Redis writes for one consumed batch."""
        rows: list[tuple[dict[str, Any], int, list[float]]] = []
        for message in messages:
            if message.error():
                continue
            try:
                event = self.events.decode(message.value())
            except Exception:  # noqa: BLE001 - a script counts and skips what it cannot read
                self.undecodable += 1
                continue
            user = event["user_id"]
            state = self.users.get(user)
            if state is None:
                state = self.users[user] = self.engine.new_state()
            rows.append((event, message.timestamp()[1], self.engine.update(state, event)))
        if not rows:
            return
        scores = self.booster.predict(np.array([row[2] for row in rows]), num_threads=1)
        newest: dict[str, tuple[dict[str, Any], list[float]]] = {}
        version, feature_set = self.config.model_version, FEATURE_SET.version
        for (event, ingest_time, vector), score in zip(rows, scores.tolist(), strict=True):
            value = self.predictions.encode(
                {
                    "event_id": event["event_id"],
                    "user_id": event["user_id"],
                    "event_time": event["event_time"],
                    "score": score,
                    "decision": self.costs.decide(score, event["amount"]),
                    "model_version": version,
                    "feature_set_version": feature_set,
                    "degraded": [],
                    "ingest_time": ingest_time,
                    "scored_time": int(time.time() * 1000),
                    "amount": event["amount"],
                    "arm": "champion",
                    "challenger_score": None,
                    "challenger_version": None,
                }
            )
            self._produce(event["user_id"].encode(), value)
            newest[event["user_id"]] = (event, vector)
        self._write_features(newest)
        self.scored += len(rows)

    def _produce(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(self.config.sink, value=value, key=key)
                return
            except BufferError:
                self.producer.poll(0.01)

    def _write_features(self, newest: dict[str, tuple[dict[str, Any], list[float]]]) -> None:
        """Each user's newest vector, in the job's key layout (``feature_store.read_features``
        reads it), in one pipeline."""
        names, prefix = self.engine.names, self.config.redis_key_prefix
        ttl_ms = self.config.feature_ttl_s * 1000
        now = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for user, (event, vector) in newest.items():
            key = prefix + user
            pipe.hset(
                key,
                mapping={
                    "event_time": event["event_time"],
                    "event_id": event["event_id"],
                    "feature_set": FEATURE_SET.version,
                    "features": orjson.dumps(dict(zip(names, vector, strict=True))),
                    "updated_at": now,
                },
            )
            pipe.pexpire(key, ttl_ms)
        pipe.execute()

    def commit(self, consumer: Consumer) -> None:
        """At least once: what the consumed offsets led to is on the broker before they are
        committed."""
        self.producer.flush(30)
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:  # nothing consumed yet
            log.debug("commit skipped: %s", exc)

    def close(self) -> None:
        self.producer.flush(30)
        self.redis.close()


def run(config: ScriptConfig, stop: Any, ready: Any = None, progress: Any = None) -> int:
    """Consume ``config.source`` from its earliest offset until ``stop`` is set; the number of
    events scored. ``ready`` is set once the consumer is assigned; ``progress.value`` follows the
    count."""
    script = HandwrittenScript(config)
    consumer = Consumer(
        {
            **config.kafka,
            "group.id": f"bench-handwritten-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )
    partitions = consumer.list_topics(config.source, timeout=10).topics[config.source].partitions
    consumer.assign([TopicPartition(config.source, p, OFFSET_BEGINNING) for p in partitions])
    if ready is not None:
        ready.set()
    committed = time.monotonic()
    try:
        while not stop.is_set():
            messages = consumer.consume(num_messages=config.batch, timeout=config.batch_wait_s)
            script.process(messages)
            script.producer.poll(0)
            if progress is not None:
                progress.value = script.scored
            if time.monotonic() - committed >= COMMIT_INTERVAL_S:
                script.commit(consumer)
                committed = time.monotonic()
        script.commit(consumer)
    finally:
        script.close()
        consumer.close()
    if script.undecodable:
        log.warning("hand-written script: %d undecodable events skipped", script.undecodable)
    return script.scored


# --- child process (spawned: top-level function only) -----------------------------------------
def script_main(config: ScriptConfig, ready: Any, stop: Any, progress: Any) -> None:
    run(config, stop, ready, progress)
