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

from collections.abc import Hashable

# What the watermark driver says before any event was seen: no progress at all.
NO_PROGRESS = -(2**62)


class PartitionProgress:
    """Keyed by any hashable partition id, e.g. ``(topic, partition)``."""

    def __init__(self, idleness_ms: int) -> None:
        self._idleness_ms = idleness_ms
        self._newest: dict[Hashable, int] = {}  # partition -> newest event time
        self._last_seen: dict[Hashable, int] = {}  # partition -> wall clock of its latest record

    def current(self, now_ms: int) -> int:
        """The progress so far without a new event: what records that carry no event time of
        their own (labels) report, so they neither advance nor hold back the watermark."""
        active_since = now_ms - self._idleness_ms
        last_seen = self._last_seen
        return min(
            (t for p, t in self._newest.items() if last_seen[p] >= active_since),
            default=NO_PROGRESS,
        )

    def observe(self, partition: Hashable, event_time: int, now_ms: int) -> int:
        """Record an event; return the time the watermark may advance to (before the
        out-of-orderness bound is subtracted): the minimum newest time over active partitions."""
        newest = self._newest.get(partition)
        if newest is None or event_time > newest:
            self._newest[partition] = event_time
        self._last_seen[partition] = now_ms
        active_since = now_ms - self._idleness_ms
        last_seen = self._last_seen
        return min(t for p, t in self._newest.items() if last_seen[p] >= active_since)
