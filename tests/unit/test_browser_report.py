"""The health report as a browser shows it: headless Chromium screenshots its index.html.

The report is drawn from canned data (no Prometheus), so this checks what no HTML assertion
can: that the page renders, its PNGs load and fill it. A blank page is the baseline. Chromium is
a local program, so this runs with the unit tests; it is skipped where Chromium is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamscore.monitoring.report import render
from tests.e2e.browser import chromium, drawn_fraction, screenshot
from tests.unit.test_report import canned_report

pytestmark = pytest.mark.skipif(chromium() is None, reason="no Chromium on PATH")


def test_the_report_renders_in_a_browser(tmp_path: Path) -> None:
    index = render(canned_report(), tmp_path / "report")
    shot = screenshot(index, tmp_path / "report.png")
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><html><body></body></html>\n")
    blank_shot = screenshot(blank, tmp_path / "blank.png", width=1400, height=2400)

    assert shot.exists() and shot.stat().st_size > 0
    report_drawn, blank_drawn = drawn_fraction(shot), drawn_fraction(blank_shot)
    assert blank_drawn < 0.01
    # The white panel cards on the grey page cover most of the viewport.
    assert report_drawn > 0.4, report_drawn
    assert report_drawn > 20 * max(blank_drawn, 0.001)
