"""Small fakes shared by the unit tests of pure logic."""

from __future__ import annotations

from typing import Any


class ManualClock:
    """A clock (seconds, as ``time.monotonic`` or ``time.perf_counter``) the test moves by hand:
    ``clock.now += 1.5``."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class WatermarkCollector:
    """A Java ``WatermarkOutput`` in Python (through Py4J's callback server): the watermarks a
    generator emitted, in order."""

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
