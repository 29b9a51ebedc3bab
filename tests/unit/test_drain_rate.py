"""The drain's rate: exactly once, the first commit's outputs were made before the span began
and are not counted; at least once every output after the first is."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from drain_rate import drain_rate, scoring_rate  # noqa: E402 (bench/ is a folder of scripts)


def _commits(sizes: list[int], interval_s: float, first_s: float) -> np.ndarray:
    """Arrival times of exactly-once outputs: one burst of ``sizes[i]`` outputs per commit,
    spread over 200 ms, one commit every ``interval_s`` from ``first_s``."""
    bursts = [
        first_s + i * interval_s + np.linspace(0.0, 0.2, size) for i, size in enumerate(sizes)
    ]
    return np.concatenate(bursts)


def test_a_late_first_commit_does_not_inflate_the_rate() -> None:
    # 5,000 outputs/s made over 10 commits of 5 s; the first commit came late, holding 60 s of
    # work (300,000 outputs) instead of one interval's 25,000.
    recv = _commits([300_000] + [25_000] * 9, 5.0, first_s=100.0)
    rate = drain_rate(recv, committed=True, checkpoint_s=5.0)
    assert rate.first_commit == 300_000
    assert rate.counted == 225_000
    assert abs(rate.rate - 225_000 / 45.2) < 1e-6  # 9 intervals and the last burst's 0.2 s
    # Counting the first commit would have read 2.3 times the rate at which outputs were made.
    assert (recv.size - 1) / rate.span_s > 2.3 * rate.rate


def test_at_least_once_counts_every_output_after_the_first() -> None:
    recv = np.linspace(10.0, 20.0, 50_001)
    rate = drain_rate(recv, committed=False, checkpoint_s=5.0)
    assert rate.first_commit == 1
    assert rate.counted == 50_000
    assert abs(rate.rate - 5_000.0) < 1e-6


def test_too_few_outputs_have_no_rate() -> None:
    assert drain_rate(np.array([3.0]), committed=True, checkpoint_s=5.0).rate is None
    one_commit = _commits([1_000], 5.0, first_s=1.0)
    assert drain_rate(one_commit, committed=True, checkpoint_s=5.0).rate is None


def test_the_scoring_rate_reads_the_jobs_clock_not_the_commits() -> None:
    # 9,000 predictions/s scored over 30 s, after 2 s of a slow start (1,000/s) and before a
    # trickle of 50 stragglers 3 s later; read committed, they arrive in one burst per 5 s commit.
    start = np.linspace(0.0, 2.0, 2_000, endpoint=False)
    steady = np.linspace(2.0, 32.0, 270_000, endpoint=False)
    late = np.linspace(35.0, 35.5, 50)
    scored_s = np.concatenate([start, steady, late]) + 1_000.0
    scored_ms = np.floor(scored_s * 1000).astype(np.int64)
    assert abs(scoring_rate(scored_ms) - 9_000) < 9_000 * 0.002
    # The commits every 5 s: each output arrives at the first commit after it was scored.
    recv = np.ceil((scored_s - 1_000.0) / 5.0) * 5.0 + 1_000.2
    committed = drain_rate(recv, committed=True, checkpoint_s=5.0)
    assert abs(committed.rate - 9_000) > 9_000 * 0.05  # what the commits do to the other rate


def test_too_few_or_simultaneous_predictions_give_no_scoring_rate() -> None:
    assert scoring_rate(np.arange(99, dtype=np.int64)) is None
    assert scoring_rate(np.full(1_000, 5, dtype=np.int64)) is None
