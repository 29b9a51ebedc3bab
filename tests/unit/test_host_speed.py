"""The bench's host-speed record: CPU shares from /proc/stat readings, and the fixed gauge."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import host_speed  # noqa: E402 (bench/ is a folder of scripts, not a package)


def _stat(tmp_path: Path, user: int, system: int, idle: int, steal: int) -> Path:
    path = tmp_path / f"stat-{user}-{idle}"
    path.write_text(
        f"cpu  {user} 0 {system} {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n"
    )
    return path


def test_box_shares_are_the_differences_between_readings(tmp_path: Path) -> None:
    before = host_speed.cpu_times(_stat(tmp_path, 1000, 100, 5000, 10))
    after = host_speed.cpu_times(_stat(tmp_path, 1700, 200, 5150, 60))
    shares = host_speed.box_shares(before, after)
    # 700 user + 100 system + 150 idle + 50 steal = 1,000 ticks
    assert shares == {"user": 70.0, "system": 10.0, "idle": 15.0, "iowait": 0.0, "steal": 5.0}


def test_box_shares_without_readings_are_empty(tmp_path: Path) -> None:
    assert host_speed.cpu_times(tmp_path / "missing") is None
    reading = host_speed.cpu_times(_stat(tmp_path, 1, 1, 1, 0))
    assert host_speed.box_shares(None, reading) == {}
    assert host_speed.box_shares(reading, reading) == {}


def test_the_gauge_does_fixed_work() -> None:
    assert host_speed.gauge_work(5000) == pytest.approx(host_speed.gauge_work(5000))
    assert host_speed.gauge_work(5000) != host_speed.gauge_work(6000)
    assert host_speed.gauge_us(rounds=3) > 0
