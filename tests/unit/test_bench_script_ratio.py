"""The benchmark puts each job's drain next to the hand-written script's of the same run
(``report.add_script_ratios``), and only the jobs: the script and the pass-through are what the
job is compared to, and neither has label totals."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from report import add_ratios, is_job  # noqa: E402
from systems import HANDWRITTEN, PASSTHROUGH  # noqa: E402


def _report(script_rate: float | None) -> dict[str, Any]:
    systems: dict[str, Any] = {
        PASSTHROUGH: {"drain": {"throughput": 100_000.0}, "steps": []},
        "exactly-once": {"drain": {"throughput": 20_000.0}, "steps": []},
        "at-least-once": {"drain": {"throughput": 25_000.0}, "steps": []},
    }
    if script_rate is not None:
        systems[HANDWRITTEN] = {"drain": {"throughput": script_rate}, "steps": []}
    return {"systems": systems}


def test_each_job_is_put_against_the_script() -> None:
    report = _report(40_000.0)
    add_ratios(report)
    systems = report["systems"]
    assert systems["exactly-once"]["drain"]["vs_script"] == {"throughput": 0.5}
    assert systems["at-least-once"]["drain"]["vs_script"] == {"throughput": 0.625}
    assert "vs_script" not in systems[HANDWRITTEN]["drain"]
    assert systems[HANDWRITTEN]["drain"]["vs_baseline"] == {"throughput": 0.4}


def test_no_script_no_ratio() -> None:
    report = _report(None)
    add_ratios(report)
    assert "vs_script" not in report["systems"]["exactly-once"]["drain"]


def test_only_the_jobs_are_jobs() -> None:
    assert is_job("exactly-once") and is_job("at-least-once")
    assert not is_job(PASSTHROUGH) and not is_job(HANDWRITTEN)
