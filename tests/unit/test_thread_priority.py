"""The scoring thread's real-time policy: taken by the calling thread only, given back, and a
refusal logged rather than raised."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import pytest

from streamscore.job import thread_priority


def _may_take_realtime() -> bool:
    """Whether this machine lets a process take SCHED_RR at priority 1 (CAP_SYS_NICE or
    ``ulimit -r``), tried in a child so that this process keeps its policy."""
    probe = "import os; os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def _in_a_thread(body):  # type: ignore[no-untyped-def]
    """Run ``body`` in a fresh thread (never the test runner's own) and return its result and
    the thread's kernel id."""
    result: dict[str, object] = {}

    def run() -> None:
        result["id"] = threading.get_native_id()
        result["value"] = body()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result["value"], result["id"]


def test_the_calling_thread_takes_the_policy_and_gives_it_back() -> None:
    allowed = _may_take_realtime()
    observed: dict[str, int] = {}

    def take_then_release() -> bool:
        me = threading.get_native_id()
        took = thread_priority.take_realtime(1)
        observed["during"] = thread_priority.policy_of(me)
        observed["process"] = thread_priority.policy_of(os.getpid())
        child = _in_a_thread(lambda: thread_priority.policy_of(threading.get_native_id()))
        observed["child"] = child[0]
        thread_priority.release()
        observed["after"] = thread_priority.policy_of(me)
        return took

    took, _ = _in_a_thread(take_then_release)
    assert took is allowed
    assert observed["during"] == (os.SCHED_RR if allowed else os.SCHED_OTHER)
    # Only the calling thread: the process's main thread and a thread it starts stay normal.
    assert observed["process"] == os.SCHED_OTHER
    assert observed["child"] == os.SCHED_OTHER
    assert observed["after"] == os.SCHED_OTHER


def test_a_refusal_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(pid: int, policy: int, param: os.sched_param) -> None:
        raise PermissionError(1, "Operation not permitted")

    with caplog.at_level(logging.WARNING, logger=thread_priority.__name__):
        assert thread_priority.take_realtime(3, setter=refuse) is False
    assert "ulimit -r 3" in caplog.text
    assert "scoring_thread_realtime_priority=0" in caplog.text


def test_priority_zero_asks_for_nothing() -> None:
    calls: list[int] = []

    def record(pid: int, policy: int, param: os.sched_param) -> None:
        calls.append(policy)

    assert thread_priority.take_realtime(0, setter=record) is False
    assert calls == []
    assert thread_priority.take_realtime(2, setter=record) is True
    assert calls == [os.SCHED_RR | os.SCHED_RESET_ON_FORK]
