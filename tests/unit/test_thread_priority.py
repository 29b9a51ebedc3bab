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
from streamscore.os_thread_names import name_os_thread, threads_named


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


def test_the_interpreters_threads_take_the_policy_and_give_it_back() -> None:
    allowed = _may_take_realtime()
    observed: dict[str, int] = {}
    idle = threading.Event()
    waiting = threading.Thread(target=idle.wait)  # like the feature store's writer, asleep
    waiting.start()

    def take_then_release() -> bool:
        me = threading.get_native_id()
        took = thread_priority.take_realtime(1)
        observed["during"] = thread_priority.policy_of(me)
        observed["other"] = thread_priority.policy_of(waiting.native_id or 0)
        observed["main"] = thread_priority.policy_of(os.getpid())
        started = _in_a_thread(lambda: thread_priority.policy_of(threading.get_native_id()))
        observed["started after"] = started[0]
        thread_priority.release()
        observed["after"] = thread_priority.policy_of(me)
        observed["other after"] = thread_priority.policy_of(waiting.native_id or 0)
        observed["main after"] = thread_priority.policy_of(os.getpid())
        return took

    try:
        took, _ = _in_a_thread(take_then_release)
    finally:
        idle.set()
        waiting.join()
    realtime = os.SCHED_RR if allowed else os.SCHED_OTHER
    assert took is allowed
    # Every thread of the interpreter at once: they share the GIL.
    assert (observed["during"], observed["other"], observed["main"]) == (realtime,) * 3
    # A thread started afterwards does not inherit it (reset on fork).
    assert observed["started after"] == os.SCHED_OTHER
    assert (observed["after"], observed["other after"], observed["main after"]) == (
        os.SCHED_OTHER,
    ) * 3


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
    assert calls[0] == os.SCHED_RR | os.SCHED_RESET_ON_FORK  # the calling thread, then others
    assert set(calls) == {os.SCHED_RR | os.SCHED_RESET_ON_FORK}


def test_the_feeders_take_the_policy_with_the_interpreter_and_give_it_back() -> None:
    calls: list[tuple[int, int, int]] = []

    def record(pid: int, policy: int, param: os.sched_param) -> None:
        calls.append((pid, policy, param.sched_priority))

    feeders = [10_001, 10_002]
    assert thread_priority.take_realtime(2, setter=record, feeders=feeders) is True
    realtime = os.SCHED_RR | os.SCHED_RESET_ON_FORK
    assert [c for c in calls if c[0] in feeders] == [(f, realtime, 2) for f in feeders]
    calls.clear()
    thread_priority.release(setter=record, feeders=feeders)
    assert [c for c in calls if c[0] in feeders] == [(f, os.SCHED_OTHER, 0) for f in feeders]
    # Refused for the calling thread: nobody is asked, the feeders neither.
    calls.clear()

    def refuse_own(pid: int, policy: int, param: os.sched_param) -> None:
        if pid == 0:
            raise PermissionError(1, "Operation not permitted")
        record(pid, policy, param)

    assert thread_priority.take_realtime(2, setter=refuse_own, feeders=feeders) is False
    assert calls == []


def test_a_feeder_that_ended_or_refuses_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    asked: list[int] = []

    def some_refuse(pid: int, policy: int, param: os.sched_param) -> None:
        asked.append(pid)
        if pid == 10_001:
            raise ProcessLookupError(3, "No such process")
        if pid == 10_002:
            raise PermissionError(1, "Operation not permitted")

    with caplog.at_level(logging.WARNING, logger=thread_priority.__name__):
        assert thread_priority.take_realtime(1, some_refuse, [10_001, 10_002, 10_003]) is True
    assert asked[-3:] == [10_001, 10_002, 10_003]
    assert "thread 10002 keeps its CPU policy" in caplog.text
    assert "10001" not in caplog.text


def test_threads_are_found_by_the_start_of_their_name() -> None:
    release = threading.Event()
    feeder = threading.Thread(target=release.wait, daemon=True)
    feeder.start()
    try:
        name_os_thread(feeder, "Source: probe-thread")
        found = threads_named(("Source: ", "Source Data Fet"))
        assert feeder.native_id in found
        assert threading.get_native_id() not in found
        assert threads_named(("no thread is named so",)) == []
    finally:
        release.set()
        feeder.join()
