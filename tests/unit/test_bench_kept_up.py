"""The benchmark's "kept up" for a rate step: all outputs arrived, at 95 % of the offered rate
or more; for read-committed output, by the operator's own pace rather than by the commits'
arrivals (``report.kept_up``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from report import kept_up, window_rate  # noqa: E402


def test_arrivals_decide_without_a_scoring_rate() -> None:
    assert kept_up(True, 5_000, 4_900, None) is True
    assert kept_up(True, 5_000, 4_600, None) is False
    assert kept_up(False, 5_000, 5_000, None) is False
    assert kept_up(True, 5_000, None, None) is None


def test_the_scoring_rate_decides_over_commit_bursts() -> None:
    """5,000 records a second scored evenly over 30 s, a barrier every 5 s, each record arriving
    when the checkpoint after it completes: a commit that completes late stretches the span
    between the window's first and last bursts, and the arrivals' rate falls below the offered
    rate, not the scoring rate."""
    scored = np.arange(0, 30, 1 / 5_000)
    barrier = (np.floor(scored / 5) + 1) * 5
    completes_after = np.where(barrier == 25, 1.8, 0.1)  # the checkpoint at 25 s took 1.8 s
    commits = barrier + completes_after
    start, end = 5.0, 29.0
    arrivals = window_rate(commits, start, end, 10.0)
    scoring = window_rate(scored, start, end, 1.0)
    assert arrivals is not None and scoring is not None
    assert arrivals < 0.95 * 5_000  # by the arrivals alone: "behind"
    assert abs(scoring - 5_000) < 10
    assert kept_up(True, 5_000, arrivals, None) is False
    assert kept_up(True, 5_000, arrivals, scoring) is True
    # An operator that scores at 90 % of the offered rate did not keep up, whatever commits.
    slow = np.arange(0, 30, 1 / 4_500)
    assert kept_up(True, 5_000, 5_800, window_rate(slow, start, end, 1.0)) is False
