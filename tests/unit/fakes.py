"""Small fakes shared by the unit tests of pure logic."""

from __future__ import annotations


class ManualClock:
    """A clock (seconds, as ``time.monotonic`` or ``time.perf_counter``) the test moves by hand:
    ``clock.now += 1.5``."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now
