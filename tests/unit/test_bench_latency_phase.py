"""The benchmark's latency by where records entered the checkpoint interval: each record in the
tenth of the interval since the last trigger before it, none before the first trigger, a late
trigger's stragglers in the last tenth."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from report import _checkpoint_phase_lines, latency_by_checkpoint_phase  # noqa: E402


def test_records_are_placed_by_the_time_since_the_last_trigger() -> None:
    triggers = [10_000.0, 15_000.0]
    # ingest times (ms) and their latencies: one before the first trigger (left out), two in
    # the first tenth after a trigger, one in the last tenth, one 7 s after the last trigger.
    ingest = np.array([9_000.0, 10_100.0, 15_200.0, 14_900.0, 22_000.0])
    latency = np.array([999.0, 30.0, 90.0, 50.0, 40.0])
    rows = latency_by_checkpoint_phase(ingest, latency, triggers, 5_000.0)
    assert [row[:2] for row in rows] == [[500 * b, 2 if b in (0, 9) else 0] for b in range(10)]
    first, last = rows[0], rows[9]
    assert rows[1][2:] == [None, None, None]  # a tenth without records keeps its place
    assert first[4] == 90.0  # the max of the first tenth: both records after a trigger
    assert last[4] == 50.0  # 14,900 (0.9 of the interval) and the late one, 7 s after


def test_nothing_to_place_gives_no_rows() -> None:
    ingest, latency = np.array([1.0]), np.array([2.0])
    assert latency_by_checkpoint_phase(ingest, latency, [], 5_000.0) == []
    assert latency_by_checkpoint_phase(np.array([]), np.array([]), [0.0], 5_000.0) == []


def test_the_report_shows_each_step_p99_per_tenth() -> None:
    step = {
        "offered_rate": 5000.0,
        "latency_by_checkpoint_phase": [[0, 10, 20.0, 80.0, 90.0], [500, 10, 20.0, 35.0, 40.0]],
    }
    lines = _checkpoint_phase_lines({"at-least-once": {"steps": [step]}})
    assert lines[-2] == "| at-least-once | 5,000/s | 80 (0) | 35 (500) |"
    assert _checkpoint_phase_lines({"at-least-once": {"steps": [{"offered_rate": 1.0}]}}) == []


def test_the_report_shows_the_part_until_scored_under_each_step() -> None:
    step = {
        "offered_rate": 5000.0,
        "latency_by_checkpoint_phase": [[0, 10, 20.0, 80.0, 90.0], [500, 10, 20.0, 35.0, 40.0]],
        "latency_to_scored_by_checkpoint_phase": [[0, 10, 9.0, 60.0, 70.0], [500, 0] + [None] * 3],
    }
    lines = _checkpoint_phase_lines({"at-least-once": {"steps": [step]}})
    assert lines[-3:-1] == [
        "| at-least-once | 5,000/s | 80 (0) | 35 (500) |",
        "| at-least-once | 5,000/s, until scored | 60 | – |",
    ]


def test_the_latency_splits_at_the_scoring_operator_for_predictions_only() -> None:
    from orchestrate import latency_split

    ingest = np.array([1_000, 2_000, 3_000])
    scored = np.array([1_010.0, 2_030.0, 3_000.0])
    recv = np.array([1.025, 2.040, 3.5])  # seconds
    measured = np.array([True, True, False])
    split = latency_split(scored, ingest, recv, measured)
    assert split["latency_to_scored_ms"]["max"] == 30.0
    assert split["latency_after_scored_ms"]["max"] == 15.0
    assert split["latency_after_scored_ms"]["p50"] == 12.5
    assert latency_split(np.array([]), ingest, recv, measured) == {}  # the pass-through


def test_a_record_at_the_trigger_itself_starts_the_new_interval() -> None:
    rows = latency_by_checkpoint_phase(
        np.array([15_000.0]), np.array([70.0]), [10_000.0, 15_000.0], 5_000.0
    )
    assert rows[0][:2] == [0, 1]  # the first tenth after 15,000, not the last one after 10,000
    assert rows[9][1] == 0
