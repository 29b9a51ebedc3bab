"""When the learner publishes a challenger snapshot (model/publish_cadence.py)."""

from __future__ import annotations

from itertools import accumulate

from hypothesis import given
from hypothesis import strategies as st

from streamscore.model.publish_cadence import PublishCadence


class Clock:
    """Monotonic seconds that the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def publish_points(cadence: PublishCadence, clock: Clock, gaps_s: list[float]) -> list[int]:
    """Feed one label per gap (the clock moved by it first); the label counts it published at."""
    points = []
    for label, gap in enumerate(gaps_s, start=1):
        clock.now += gap
        if cadence.learned():
            cadence.published()
            points.append(label)
    return points


def test_slow_labels_publish_on_the_count_alone() -> None:
    clock = Clock()
    cadence = PublishCadence(200, 1.0, clock)
    # 100 labels a second: 200 labels take 2 s, longer than the interval.
    assert publish_points(cadence, clock, [0.01] * 1000) == [200, 400, 600, 800, 1000]


def test_a_backlog_publishes_at_most_once_per_interval() -> None:
    clock = Clock()
    cadence = PublishCadence(200, 1.0, clock)
    # 8,000 labels a second for 3 s: the first snapshot at once, then one a second.
    points = publish_points(cadence, clock, [1 / 8000] * 24_000)
    assert points[0] == 200
    assert len(points) == 3
    assert all(b - a >= 7_990 for a, b in zip(points, points[1:]))


def test_a_zero_interval_is_the_count_alone() -> None:
    clock = Clock()
    cadence = PublishCadence(3, 0.0, clock)
    assert publish_points(cadence, clock, [0.0] * 10) == [3, 6, 9]


def test_a_restored_tail_counts_towards_the_next_snapshot() -> None:
    clock = Clock()
    cadence = PublishCadence(200, 1.0, clock, learned=150)
    assert publish_points(cadence, clock, [0.0] * 60) == [50]
    assert cadence.since_snapshot == 10


@given(
    every=st.integers(1, 50),
    interval=st.floats(0.0, 2.0),
    gaps=st.lists(st.floats(0.0, 0.5), max_size=400),
)
def test_snapshots_are_never_closer_than_the_count_or_the_interval(
    every: int, interval: float, gaps: list[float]
) -> None:
    clock = Clock()
    cadence = PublishCadence(every, interval, clock)
    # The clock's readings as it moves, one gap added at a time (a sum of the gaps rounds
    # differently, by enough to fail an exact comparison with the interval).
    times = list(accumulate(gaps, initial=clock.now))[1:]
    points = publish_points(cadence, clock, gaps)
    for a, b in zip(points, points[1:]):
        assert b - a >= every
        assert times[b - 1] - times[a - 1] >= interval
    # And none is held back longer than it must be: a label that was due published.
    last = points[-1] if points else 0
    for label in range(last + every, len(gaps) + 1):
        since_last = times[label - 1] - (times[last - 1] if last else float("-inf"))
        assert since_last < interval
