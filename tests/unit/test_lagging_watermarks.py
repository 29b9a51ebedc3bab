"""The events source's watermarks (``jvm/LaggingWatermarks.java``), run in a JVM through Py4J
from the operators' jar built from the package's sources: a fixed lag behind the newest record
timestamp, where the Table API's ``WATERMARK FOR t AS t - INTERVAL`` drew the line before."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.fakes import WatermarkCollector


@pytest.fixture
def jvm(operators_jvm: Any) -> Any:
    return operators_jvm


def _emitted(jvm: Any, lag_ms: int, timestamps: list[int]) -> list[int]:
    """The watermarks a generator emits at a periodic emit before any record and after each."""
    generator = jvm.streamscore.flink.LaggingWatermarks.strategy(lag_ms).createWatermarkGenerator(
        None
    )
    output = WatermarkCollector()
    generator.onPeriodicEmit(output)
    for timestamp in timestamps:
        generator.onEvent(None, timestamp, output)
        generator.onPeriodicEmit(output)
    return output.watermarks


def test_the_watermark_lags_the_newest_timestamp(jvm: Any) -> None:
    # Nothing before the first record; then the newest minus the lag, never the last record's
    # when an older one comes after it.
    assert _emitted(jvm, 5000, [100_000, 103_000, 101_000, 110_000]) == [
        95_000, 98_000, 98_000, 105_000,
    ]  # fmt: skip


def test_an_event_the_lag_behind_the_newest_is_at_the_watermark(jvm: Any) -> None:
    # The late rule (event_time <= watermark) makes it late, as before: one millisecond more
    # than Flink's forBoundedOutOfOrderness, which emits newest - lag - 1.
    newest = 1_700_000_000_000
    assert _emitted(jvm, 5000, [newest]) == [newest - 5000]
    assert _emitted(jvm, 0, [newest]) == [newest]


def test_a_negative_lag_is_refused(jvm: Any) -> None:
    from py4j.protocol import Py4JJavaError

    with pytest.raises(Py4JJavaError, match="cannot be negative"):
        jvm.streamscore.flink.LaggingWatermarks.strategy(-1)
