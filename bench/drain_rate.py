"""A drain's throughput from the times its outputs arrived.

At least once, outputs arrive as they are made: the rate is the outputs over the time from the
first to the last. Exactly once, a read-committed consumer sees nothing until the first
checkpoint completes and then, at once, everything the job made since it started: counting
that first commit over the span from the first output to the last credits the job with work
done before the span began. By how much depends on when the first checkpoint completes, which
is not the drain's speed: on a 60 s drain with 5 s checkpoints about one interval's worth
(≈ +8 %), and far more when the job's other tasks are slow to start and the first checkpoint
comes late (a scoring thread given a real-time priority took the first checkpoint from 18 s to
30–117 s after submission while it drained, and the old figure read 3–5 times its true rate).
So, exactly once, the first commit's outputs are left out: the rate counts what was made
between the first commit and the last.

That rate still moves with the commits: the last output arrives with the first commit after
the job scored the last event, up to a checkpoint interval later, which on a 30 s drain with
5 s checkpoints is up to a sixth of the span. ``scoring_rate`` reads the job's own clock
instead: each prediction carries the wall-clock time it was scored (``scored_time``), and the
rate over the middle 80 % of the drain's predictions by that time is the pace of the scoring
operator itself, without the commits, the first batches' warm-up or the last stragglers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DrainRate:
    """``rate``: outputs per second; ``counted``: the outputs it counts; ``span_s``: first to
    last output; ``first_commit``: outputs of the first commit, left out of ``counted``
    (exactly once; 1 at least once, the output that opens the span)."""

    rate: float | None
    counted: int
    span_s: float
    first_commit: int


def drain_rate(recv: np.ndarray, committed: bool, checkpoint_s: float) -> DrainRate:
    """The drain's rate from its outputs' arrival times (seconds). ``committed``: the outputs
    were read committed (exactly once), so they arrive in one burst per checkpoint; the first
    burst is every output within half a checkpoint interval of the first one (the next commit
    comes about an interval later)."""
    if recv.size < 2:
        return DrainRate(None, 0, 0.0, int(recv.size))
    first, last = float(recv.min()), float(recv.max())
    span = last - first
    if committed:
        first_commit = int(np.count_nonzero(recv <= first + checkpoint_s / 2))
    else:
        first_commit = 1
    counted = int(recv.size) - first_commit
    rate = counted / span if span > 0 and counted > 0 else None
    return DrainRate(rate, counted, span, first_commit)


def scoring_rate(scored_ms: np.ndarray, share: float = 0.8) -> float | None:
    """Predictions per second over the middle ``share`` of the drain's predictions, ordered by
    the time each was scored (``scored_time``, epoch ms): ``share × n`` predictions over the time
    from the first to the last of them. None when fewer than 100 predictions or no time passed
    (the job stamps whole milliseconds)."""
    n = int(scored_ms.size)
    if n < 100:
        return None
    times = np.sort(scored_ms.astype(np.float64)) / 1000.0
    low = int(n * (1 - share) / 2)
    high = n - 1 - low
    span = float(times[high] - times[low])
    return (high - low) / span if span > 0 else None
