"""The events and labels source reads its partitions in step by event time; the others do not.
Every source fetches as the settings say."""

from __future__ import annotations

from streamscore.config import Settings
from streamscore.job.pipeline import ALIGNMENT_UPDATE_MS, source_ddl


def test_the_events_source_is_aligned_with_the_configured_drift() -> None:
    s = Settings().with_overrides({"source_alignment_drift_ms": 2500})
    ddl = source_ddl(s, "raw_input", ["events", "labels"], "g", "earliest-offset", "event_time")
    assert "'scan.watermark.alignment.group' = 'raw_input'" in ddl
    assert "'scan.watermark.alignment.max-drift' = '2500 ms'" in ddl
    assert f"'scan.watermark.alignment.update-interval' = '{ALIGNMENT_UPDATE_MS} ms'" in ddl


def test_no_alignment_when_off_or_without_event_time() -> None:
    off = Settings().with_overrides({"source_alignment_drift_ms": 0})
    assert "alignment" not in source_ddl(off, "t", ["e"], "g", "earliest-offset", "event_time")
    assert "alignment" not in source_ddl(Settings(), "t", ["c"], "g", "earliest-offset", "none")


def test_every_source_fetches_as_configured() -> None:
    s = Settings().with_overrides({"source_fetch_min_bytes": 32768, "source_fetch_max_wait_ms": 10})
    for watermark in ("event_time", "none"):
        ddl = source_ddl(s, "t", ["e"], "g", "earliest-offset", watermark)
        assert "'properties.fetch.min.bytes' = '32768'" in ddl
        assert "'properties.fetch.max.wait.ms' = '10'" in ddl
