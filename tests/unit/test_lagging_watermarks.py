"""The events source's watermarks (``jvm/LaggingWatermarks.java``), run in a JVM through Py4J
from the operators' jar built from the package's sources: a fixed lag behind the newest record
timestamp, where the Table API's ``WATERMARK FOR t AS t - INTERVAL`` drew the line before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamscore.job.jvm_jar import operators_jar


@pytest.fixture(scope="module")
def jvm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from pyflink.java_gateway import get_gateway
    from pyflink.util.java_utils import add_jars_to_context_class_loader

    jar = operators_jar(Path(tmp_path_factory.mktemp("jvm")))
    add_jars_to_context_class_loader([jar.as_uri()])
    return get_gateway().jvm


class _Output:
    """A ``WatermarkOutput`` in Python (through Py4J's callback server): what was emitted."""

    def __init__(self) -> None:
        self.watermarks: list[int] = []

    def emitWatermark(self, watermark: Any) -> None:  # noqa: N802 (Java's name)
        self.watermarks.append(watermark.getTimestamp())

    def markIdle(self) -> None:  # noqa: N802
        pass

    def markActive(self) -> None:  # noqa: N802
        pass

    class Java:
        implements = ["org.apache.flink.api.common.eventtime.WatermarkOutput"]


def _emitted(jvm: Any, lag_ms: int, timestamps: list[int]) -> list[int]:
    """The watermarks a generator emits at a periodic emit before any record and after each."""
    generator = jvm.streamscore.flink.LaggingWatermarks.strategy(lag_ms).createWatermarkGenerator(
        None
    )
    output = _Output()
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
