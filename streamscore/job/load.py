"""How busy the scoring operator is, reported to the JVM batcher that feeds it.

``RecordBatcher`` (``jvm/RecordBatcher.java``) lets a batch wait for more records longer while
the operator is busy (``jvm/BatchWait.java``): near the box's capacity, fewer and larger
batches leave more CPU for the records; at light load a short wait keeps latency down. The
batcher runs in another task than the operator, so it cannot time it: the operator times its
own calls and reports the share of the wall-clock time they took, once per period, through
``jvm/OperatorLoad.java``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# The name the scoring operator reports its load under, and its batcher reads it by.
SCORING_LOAD = "scoring"
REPORT_PERIOD_S = 1.0


class LoadMeter:
    """Sums the time of the operator's calls and reports its share of each period's wall-clock
    time to ``report`` once the period has passed (at the end of the call that ends it; an
    operator with no call for a while reports nothing, and the batcher then reads it as
    idle)."""

    def __init__(
        self,
        report: Callable[[float], None],
        period_s: float = REPORT_PERIOD_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._report = report
        self._period_s = period_s
        self._clock = clock
        self._period_start = clock()
        self._busy_s = 0.0

    def now(self) -> float:
        """A reading of the meter's clock, to pass to ``called`` when the call ends."""
        return self._clock()

    def called(self, started: float) -> None:
        """A call that began at ``started`` (``now()``) has ended."""
        ended = self._clock()
        self._busy_s += ended - started
        elapsed = ended - self._period_start
        if elapsed >= self._period_s:
            self._report(min(1.0, self._busy_s / elapsed))
            self._period_start = ended
            self._busy_s = 0.0
