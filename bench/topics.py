"""The benchmark run's Kafka topics: create them fresh, read their offsets, delete them after.

Every system under test gets topics of its own (``bench-<run>-<system>-…``) so that neither
earlier runs nor the other systems can leak records into a measurement. The helper remembers
what it created, so the end of the run (also after Ctrl-C or SIGTERM) deletes exactly those.
"""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamscore.config import Settings
from streamscore.kafka_io import client_config

# One logger for the whole benchmark, as before the split (its name is in every log line).
log = logging.getLogger("bench")


class Kafka:
    """Admin and metadata client of the stack's broker, keeping the list of topics it created."""

    def __init__(self, s: Settings) -> None:
        self.bootstrap = s.kafka_bootstrap
        self.admin = AdminClient(client_config(s))
        self.meta = Consumer({**client_config(s), "group.id": f"bench-meta-{uuid.uuid4().hex}"})
        self.created: list[str] = []

    def create(self, topic: str, partitions: int, config: dict[str, str] | None = None) -> None:
        """Create ``topic`` and wait until its metadata is complete, so that a consumer assigned
        right after sees every partition."""
        for _, future in self.admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
            request_timeout=15,
        ).items():
            future.result()
        self.created.append(topic)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # until the metadata shows every partition
            t = self.meta.list_topics(topic, timeout=5).topics.get(topic)
            if t is not None and t.error is None and len(t.partitions) == partitions:
                return
            time.sleep(0.2)
        raise RuntimeError(f"topic {topic} did not appear")

    def end_offsets(self, topic: str) -> dict[int, int]:
        """The high watermark of every partition: where a measurement's output consumer starts,
        so it never sees the outputs of an earlier step."""
        partitions = self.meta.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: self.meta.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }

    def size(self, topic: str) -> int:
        """Records currently in ``topic`` (e.g. the job's dead letters so far), from the
        partitions' offsets: in a topic written in transactions (exactly-once) the commit markers
        and any aborted records count too, so it is an upper bound there."""
        partitions = self.meta.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            hi - lo
            for lo, hi in (
                self.meta.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in partitions
            )
        )

    def delete_created(self) -> None:
        """Delete the topics this helper created (best effort: a failure is only logged)."""
        if not self.created:
            return
        for topic, future in self.admin.delete_topics(self.created, operation_timeout=30).items():
            try:
                future.result()
            except Exception as exc:  # best effort
                log.warning("could not delete topic %s: %s", topic, exc)
        self.created = []

    def close(self) -> None:
        self.meta.close()
