"""The batch wait follows the scoring operator's load (``jvm/BatchWait.java``,
``jvm/OperatorLoad.java``), run in a JVM through Py4J, from the operators' jar built from the
package's sources."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def jvm(operators_jvm: Any) -> Any:
    return operators_jvm


def test_the_share_sets_the_wait(jvm: Any) -> None:
    wait = jvm.streamscore.flink.BatchWait
    assert wait.forShare(0.0, 5, 20) == 5
    assert wait.forShare(wait.IDLE_SHARE, 5, 20) == 5
    assert wait.forShare(0.375, 5, 20) == 13  # half-way between the two shares
    assert wait.forShare(wait.BUSY_SHARE, 5, 20) == 20
    assert wait.forShare(0.75, 5, 20) == 20  # past the busy share: the longest, never more
    assert wait.forShare(1.0, 5, 20) == 20
    assert wait.forShare(0.9, 0, 0) == 0  # equal waits: fixed, 0 sends every record alone


def test_reports_are_read_per_operator_and_subtask(jvm: Any) -> None:
    load = jvm.streamscore.flink.OperatorLoad
    reporter = load()
    assert load.share("test-reports", 0) == 0.0  # nothing reported yet: idle
    reporter.report("test-reports", 0, 0.8)
    reporter.report("test-reports", 1, 0.1)
    assert load.share("test-reports", 0) == pytest.approx(0.8)
    assert load.share("test-reports", 1) == pytest.approx(0.1)
    assert load.share("another-operator", 0) == 0.0
    reporter.report("test-reports", 0, 0.3)  # the newest report counts
    assert load.share("test-reports", 0) == pytest.approx(0.3)


def test_a_stale_report_reads_as_idle(jvm: Any) -> None:
    load = jvm.streamscore.flink.OperatorLoad
    load().report("test-stale", 0, 0.9)
    now = jvm.java.lang.System.nanoTime()
    assert load.share("test-stale", 0, now) == pytest.approx(0.9)
    assert load.share("test-stale", 0, now + load.STALE_NS + 1_000_000_000) == 0.0
