"""The benchmark's count of refused labels against the real broker: the drain waits for every
label to end as an outcome or as a label dead letter (``bench/orchestrate.py``), and the
collector of those dead letters keeps only the ``label:`` reasons of the measurement's own
labels."""

from __future__ import annotations

import multiprocessing
import sys
import time
import uuid
from pathlib import Path

from streamscore.config import Settings
from streamscore.kafka_io import client_config, new_producer
from streamscore.serde import Codec

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from collect import LABEL_DEAD_LETTER, Collector  # noqa: E402
from topics import Kafka  # noqa: E402


def _dead_letter(codec: Codec, reason: str, original: bytes) -> bytes:
    return codec.encode(
        {
            "reason": reason,
            "detail": reason,
            "source_topic": "labels",
            "source_partition": 0,
            "source_offset": 0,
            "original": original,
            "dead_letter_time": int(time.time() * 1000),
        }
    )


def test_label_dead_letters_are_counted_by_their_labels_event_ids(stack: Settings) -> None:
    kafka = Kafka(stack)
    topic = f"bench-test-{uuid.uuid4().hex[:8]}-dead-letters"
    kafka.create(topic, 1)
    try:
        start = kafka.end_offsets(topic)
        dead, label = Codec("dead_letter"), Codec("label")

        def label_of(event_id: str) -> bytes:
            return label.encode(
                {"event_id": event_id, "user_id": "u1", "is_fraud": False, "label_time": 1}
            )

        producer = new_producer(stack)
        for value in (
            _dead_letter(dead, "label:expired", label_of("run1-e1")),
            _dead_letter(dead, "label:unknown_event", label_of("run1-e2")),
            _dead_letter(dead, "label:duplicate", label_of("run1-e2")),  # counted once
            _dead_letter(dead, "label:expired", label_of("run2-e1")),  # another measurement's
            _dead_letter(dead, "decode_error", b"not an event"),  # an event's dead letter
        ):
            producer.produce(topic, value=value)
        producer.flush(10)

        collector = Collector(
            multiprocessing.get_context("spawn"),
            client_config(stack),
            topic,
            start,
            LABEL_DEAD_LETTER,
            read_committed=False,
            prefix="run1-",
        )
        deadline = time.monotonic() + 30
        while collector.count.value < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # nothing more may come
        data = collector.result()
        assert data["recv"].size == 2
        assert (data["duplicates"], data["foreign"], data["undecodable"]) == (1, 2, 0)
    finally:
        kafka.delete_created()
        kafka.close()
