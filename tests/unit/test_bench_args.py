"""The benchmark's backlog spacing: explicit when asked for, else as before the option (the
highest offered rate, or 1,000 events/s without rate steps), and in the report's table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from report import _labels_after_lines, _spacing  # noqa: E402 (bench/ is a folder of scripts)
from run_bench import parse_args  # noqa: E402


def test_the_backlog_is_spaced_at_the_highest_rate_unless_told() -> None:
    assert parse_args(["--rates", "1000,5000"]).backlog_rate == 5000.0
    assert parse_args(["--rates", ""]).backlog_rate == 1000.0
    assert parse_args(["--rates", "5000", "--backlog-rate", "1000"]).backlog_rate == 1000.0


def test_a_backlog_rate_of_zero_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--backlog-rate", "0"])


def test_the_drain_title_names_the_spacing() -> None:
    assert _spacing({"backlog_rate": 5000.0}) == " spaced at 5,000/s of event time"
    assert _spacing({}) == ""  # a report from before the option


def test_the_drain_says_how_much_label_work_fell_after_the_last_prediction() -> None:
    systems = {
        "exactly-once": {"drain": {"labels": 1_000, "labels_after_events": 180}},
        "passthrough": {"drain": {"labels": 0}},
    }
    lines = [line for line in _labels_after_lines(systems) if line]
    assert len(lines) == 1
    assert lines[0].startswith("exactly-once: 180 of the 1,000 labels (18 %) were read after")
