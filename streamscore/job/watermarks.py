"""Per-partition event-time progress for the watermark, tracked where the event time is known.

Flink's Kafka source keeps a watermark per partition and emits the minimum, so a partition that
is read faster than another (routine when catching up on a backlog) cannot push the watermark
past events still waiting in the slower one. It can do that only when it can read the timestamp
itself; ours is inside the Avro payload. So the decode step tracks the newest event time per
partition and hands the JVM's bounded-out-of-orderness generator the minimum over the partitions
that are not idle, instead of each event's own time. The resulting watermark is the one Flink's
per-partition watermarking would give.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

# What the watermark driver says before any event was seen: no progress at all.
NO_PROGRESS = -(2**62)


class PartitionProgress:
    """Keyed by any hashable partition id, e.g. ``(topic, partition)``."""

    def __init__(self, idleness_ms: int) -> None:
        self._idleness_ms = idleness_ms
        self._newest: dict[Hashable, int] = {}  # partition -> newest event time
        self._last_seen: dict[Hashable, int] = {}  # partition -> wall clock of its latest record
        self._last_any = NO_PROGRESS  # wall clock of the latest record of any partition

    def expect(self, partitions: Iterable[Hashable], now_ms: int) -> None:
        """Partitions this reader was assigned, before any of their records arrived: each holds
        the watermark back until its first record, or until it has been idle for
        ``idleness_ms``, as Flink's per-partition watermarks do. Without this, a partition whose
        backlog happens to be read first would set the watermark alone, and the other
        partitions' older events would arrive late (seen: most of a 5-minute backlog
        dead-lettered as late). Their idleness counts from the first record of any partition
        (see ``observe``), not from now: a job often starts before its input does."""
        for partition in partitions:
            if partition not in self._newest:
                self._newest[partition] = NO_PROGRESS
                self._last_seen[partition] = now_ms

    def current(self, now_ms: int) -> int:
        """The progress so far without a new event: what records that carry no event time of
        their own (labels) report, so they neither advance nor hold back the watermark."""
        active_since = now_ms - self._idleness_ms
        last_seen = self._last_seen
        return min(
            (t for p, t in self._newest.items() if last_seen[p] >= active_since),
            default=NO_PROGRESS,
        )

    def observe(
        self, partition: Hashable, event_time: int, now_ms: int, appended_ms: int | None = None
    ) -> int:
        """Record an event; return the time the watermark may advance to (before the
        out-of-orderness bound is subtracted): the minimum newest time over active partitions.

        ``appended_ms`` is the record's Kafka timestamp. While the reader is behind (the record
        waited in Kafka longer than ``idleness_ms``) no partition ages towards idle: a silent
        partition's records are most likely waiting behind the others' (the Kafka consumer
        hands out one partition's fetched batch before the next), not missing. This is what
        Flink's own idleness does with a clock that pauses while the source is behind."""
        catching_up = appended_ms is not None and now_ms - appended_ms > self._idleness_ms
        if catching_up or now_ms - self._last_any > self._idleness_ms:
            # Behind, or the whole input was silent (a new job, a paused producer): every
            # partition gets a fresh idleness period to deliver, so the one whose records happen
            # to come first cannot carry the watermark past the others' waiting records.
            for known in self._last_seen:
                self._last_seen[known] = now_ms
        self._last_any = now_ms
        newest = self._newest.get(partition)
        if newest is None or event_time > newest:
            self._newest[partition] = event_time
        self._last_seen[partition] = now_ms
        active_since = now_ms - self._idleness_ms
        last_seen = self._last_seen
        return min(t for p, t in self._newest.items() if last_seen[p] >= active_since)


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (as a signed 32-bit int), for strings of BMP characters."""
    h = 0
    for char in text:
        h = (31 * h + ord(char)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def kafka_split_owner(topic: str, partition: int, readers: int) -> int:
    """The source reader (subtask) that Flink's Kafka source assigns a partition to: the rule of
    ``KafkaSourceEnumerator.getSplitOwner`` (round robin from a start index given by the topic
    name's hash)."""
    start_index = ((java_string_hash(topic) * 31) & 0x7FFFFFFF) % readers
    return (start_index + partition) % readers
