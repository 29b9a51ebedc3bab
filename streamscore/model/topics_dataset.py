"""The training set the job's own inputs make: events and labels read back from Kafka.

``streamscore train --from-topics`` replays the events topic through the job's feature engine,
in the order the job would see it, and keeps the rows whose label came within the horizon:

* order: each partition in offset order, the partitions merged by the records' Kafka
  timestamps (the order a source reading them in real time approximates);
* the late rule, as the job applies it: the watermark is the slowest partition's newest event
  time minus ``max_out_of_orderness_ms``, and an event at or behind it by more than
  ``allowed_lateness_ms`` is left out (the job dead-lettered it: it never updated any state);
* labels: the first label of each event, unless it came more than ``label_horizon_ms`` after
  the event (the job dead-lettered it as ``label:expired``); events without a label still update
  the features of the events after them, but give no row.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Any

from streamscore.config import Settings
from streamscore.kafka_io import read_messages
from streamscore.serde import Codec

TopicRecord = tuple[int, int, dict[str, Any]]  # (Kafka timestamp, partition, decoded record)


def job_order(records: Iterable[TopicRecord]) -> list[TopicRecord]:
    """Partitions kept in offset order, merged by Kafka timestamp (stable within a partition)."""
    by_partition: dict[int, list[TopicRecord]] = {}
    for record in records:
        by_partition.setdefault(record[1], []).append(record)
    return list(heapq.merge(*by_partition.values(), key=lambda r: r[0]))


def without_late_events(
    ordered: Iterable[TopicRecord], out_of_orderness_ms: int, allowed_lateness_ms: int
) -> Iterator[dict[str, Any]]:
    """The events the job scores, by its late rule (see the module doc)."""
    newest: dict[int, int] = {}
    for _timestamp, partition, event in ordered:
        event_time = event["event_time"]
        if newest:
            watermark = min(newest.values()) - out_of_orderness_ms
            if event_time <= watermark - allowed_lateness_ms:
                continue
        if event_time > newest.get(partition, -(2**62)):
            newest[partition] = event_time
        yield event


def first_labels(
    labels: Iterable[dict[str, Any]], event_times: dict[str, int], horizon_ms: int
) -> dict[str, bool]:
    """event_id → is_fraud: the first label of each known event, within the horizon."""
    found: dict[str, bool] = {}
    for label in labels:
        event_id = label["event_id"]
        event_time = event_times.get(event_id)
        if event_id in found or event_time is None:
            continue
        if label["label_time"] - event_time > horizon_ms:
            continue
        found[event_id] = bool(label["is_fraud"])
    return found


def read_topic(settings: Settings, topic: str, record_type: str) -> list[TopicRecord]:
    """Every decodable record of the topic (read_committed), with its timestamp and partition."""
    codec = Codec(record_type)
    records = []
    for message in read_messages(settings, topic, from_beginning=True, idle_timeout_s=5):
        try:
            record = codec.decode(message.value() or b"")
        except Exception:
            continue  # a malformed record: the job dead-lettered it too
        records.append((message.timestamp()[1], message.partition(), record))
    return records


def labelled_events_from_topics(settings: Settings) -> Iterator[tuple[dict[str, Any], bool | None]]:
    """(event, label or None) in the job's order, late events left out."""
    events = list(
        without_late_events(
            job_order(read_topic(settings, settings.topic_events, "event")),
            settings.max_out_of_orderness_ms,
            settings.allowed_lateness_ms,
        )
    )
    labels = (r[2] for r in read_topic(settings, settings.topic_labels, "label"))
    known = {e["event_id"]: e["event_time"] for e in events}
    by_id = first_labels(labels, known, settings.label_horizon_ms)
    for event in events:
        yield event, by_id.get(event["event_id"])
