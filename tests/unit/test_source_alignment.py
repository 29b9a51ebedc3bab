"""The events and labels source reads its partitions in step by event time; the others do not.
Every source fetches as the settings say. The watermark strategy is built in a JVM through Py4J
(the operators' jar built from the package's sources), as the job builds it."""

from __future__ import annotations

from typing import Any

import pytest

from streamscore.config import Settings
from streamscore.job.pipeline import ALIGNMENT_UPDATE_MS, event_time_watermarks, source_properties
from tests.unit.fakes import WatermarkCollector


@pytest.fixture
def jvm(operators_jvm: Any) -> Any:
    return operators_jvm


def test_the_events_source_is_aligned_with_the_configured_drift(jvm: Any) -> None:
    s = Settings().with_overrides({"source_alignment_drift_ms": 2500})
    alignment = event_time_watermarks(s, "raw_input").getAlignmentParameters()
    assert alignment.isEnabled()
    assert alignment.getWatermarkGroup() == "raw_input"
    assert alignment.getMaxAllowedWatermarkDrift() == 2500
    assert alignment.getUpdateInterval() == ALIGNMENT_UPDATE_MS


def test_no_alignment_when_off(jvm: Any) -> None:
    off = Settings().with_overrides({"source_alignment_drift_ms": 0})
    assert not event_time_watermarks(off, "raw_input").getAlignmentParameters().isEnabled()


def test_the_watermarks_lag_by_the_out_of_orderness(jvm: Any) -> None:
    s = Settings().with_overrides({"max_out_of_orderness_ms": 1234})
    clock = jvm.org.apache.flink.util.clock.SystemClock.getInstance()

    class Context:
        """What the source gives a generator (here only the clock the idleness needs)."""

        def getMetricGroup(self) -> None:  # noqa: N802 (Java's name)
            return None

        def getInputActivityClock(self) -> Any:  # noqa: N802
            return clock

        class Java:
            implements = [
                "org.apache.flink.api.common.eventtime.WatermarkGeneratorSupplier$Context"
            ]

    generator = event_time_watermarks(s, "raw_input").createWatermarkGenerator(Context())
    output = WatermarkCollector()
    generator.onEvent(None, 10_000, output)
    generator.onPeriodicEmit(output)
    assert output.watermarks == [10_000 - 1234]


def test_every_source_fetches_as_configured() -> None:
    s = Settings().with_overrides({"source_fetch_min_bytes": 32768, "source_fetch_max_wait_ms": 10})
    properties = source_properties(s)
    assert properties["fetch.min.bytes"] == "32768"
    assert properties["fetch.max.wait.ms"] == "10"
    # Exactly once: only what the job's own transactions committed.
    assert properties["isolation.level"] == "read_committed"
