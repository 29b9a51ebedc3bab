"""The scoring operator's busy share, as it reports it to its batcher (``job/load.py``)."""

from __future__ import annotations

import pytest

from streamscore.job.load import LoadMeter
from tests.unit.fakes import ManualClock


def test_the_share_of_each_period_is_reported_once_it_has_passed() -> None:
    clock, reports = ManualClock(), []
    meter = LoadMeter(reports.append, period_s=1.0, clock=clock)
    for _ in range(4):  # four calls of 0.1 s, 0.2 s apart
        started = meter.now()
        clock.now += 0.1
        meter.called(started)
        clock.now += 0.1
    assert reports == []  # 0.7 s into the period
    started = meter.now()
    clock.now += 0.3
    meter.called(started)  # ends at 1.1 s: 0.7 s busy
    assert reports == [pytest.approx(0.7 / 1.1)]
    clock.now += 0.8  # the next period: idle, then one call of 0.3 s
    started = meter.now()
    clock.now += 0.3
    meter.called(started)
    assert reports[-1] == pytest.approx(0.3 / 1.1)


def test_a_quiet_stretch_lowers_the_share() -> None:
    clock, reports = ManualClock(), []
    meter = LoadMeter(reports.append, period_s=1.0, clock=clock)
    clock.now += 9.0  # no call for nine seconds
    started = meter.now()
    clock.now += 0.5
    meter.called(started)
    assert reports == [pytest.approx(0.5 / 9.5)]


def test_a_share_never_exceeds_one() -> None:
    clock, reports = ManualClock(), []
    meter = LoadMeter(reports.append, period_s=1.0, clock=clock)
    started = meter.now() - 5.0  # a call begun before the meter (the first after a restore)
    clock.now += 1.0
    meter.called(started)
    assert reports == [1.0]
