"""The scoring task thread's CPU priority: a real-time round-robin policy, where allowed.

A drain is bound by one thread, the scoring subtask's, which runs the Python operator in the
TaskManager (thread mode). On two cores it shares them with forty-odd threads of the stack
(Kafka, Redis, the sources, the learner, Flink's own). Under the normal policy, in 300,000-event
drains it was on a CPU 64-67 % of the time and runnable but waiting for one 24-26 %, while the
box was 14-17 % idle (bench/HISTORY.md, sixteenth session): the kernel kept putting woken
threads on its core rather than the idle one. Under ``SCHED_RR`` no thread of the normal policy
takes its core while it has work, and the others run on the other core; it sleeps as before
when its input is empty, and the kernel's real-time throttling (``kernel.sched_rt_runtime_us``,
95 % of each second by default) still leaves the others a share of its core. The box's idle
share fell to about 1 % and the drains ran about a fifth faster at the same CPU per event.

The priority is taken at the job's first checkpoint, not when the operator opens: while the
job starts, the scoring subtask already drains its backlog, and at a real-time priority from
its start the first checkpoint came 24-30 s after submission instead of 17-18 (the job's other
tasks started on one core). A checkpoint is triggered only once every task runs.

The threads that feed it take the policy too (``feeders``): the Kafka source tasks of its
TaskManager, which read, watermark and batch its records, and their fetchers. With the scoring
thread at a real-time priority, the source tasks' threads were on a CPU 0.06-0.07 of a drain
and waiting for one 0.45-0.55, behind the learner, Kafka and Redis on the other core, while the
scoring thread slept 0.15-0.24 of the drain waiting for batches; with the policy they wait
0.00 and it sleeps 0.12-0.21 (bench/HISTORY.md, seventeenth session). They are the JVM's
threads, found by their names: Flink names a task's thread after its vertex (``Source: ...``)
and a source reader's fetcher ``Source Data Fetcher for ...``.

Changing the policy needs ``CAP_SYS_NICE`` (root has it) or a real-time priority limit
(``ulimit -r``, ``RLIMIT_RTPRIO``; docker-compose.yml sets it for the TaskManagers) at least
``priority``. Without either the threads keep the normal policy and the refusal is logged: the
job runs as before.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence

from streamscore.model.compiled_forest import COMPILE_THREAD_NAME

log = logging.getLogger(__name__)

# os.sched_setscheduler's signature: (pid, policy, param); pid 0 is the calling thread on Linux.
Setter = Callable[[int, int, os.sched_param], None]


# The names (as Linux keeps them, 15 bytes) of the JVM threads that feed the scoring task in its
# TaskManager: source tasks' threads and their Kafka fetchers.
FEEDER_NAME_PREFIXES = ("Source: ", "Source Data Fet")


def policy_of(thread_id: int) -> int:
    """The scheduling policy of a thread (its kernel id), without the reset-on-fork flag."""
    return os.sched_getscheduler(thread_id) & ~os.SCHED_RESET_ON_FORK


def take_realtime(priority: int, setter: Setter | None = None, feeders: Sequence[int] = ()) -> bool:
    """Put the calling thread, every other thread of this interpreter and the ``feeders``
    (kernel ids: see ``os_thread_names.threads_named``) under ``SCHED_RR`` at ``priority``
    (1-99; 0 leaves them as they are). True when it took effect; a refusal (no permission, no
    such policy) is logged, not raised.

    The interpreter's other threads (the feature store's writer, the metrics endpoint) share
    the GIL with the scoring thread: one of them waiting for a CPU behind the real-time thread
    while it wants the GIL would hold that thread up. (In the first measurements the policy was
    set from outside as the task started, and the writer thread, started by the task thread
    afterwards, inherited it.) A model's compile (``compiled_forest``), a second or two of CPU
    off the scoring path, keeps the normal policy, as it does when it starts later."""
    if priority <= 0:
        return False
    set_policy = setter if setter is not None else os.sched_setscheduler
    # Reset on fork: a thread that one of these starts later (a JVM thread started from the
    # task thread, a metrics request's) gets the normal policy, not theirs.
    policy = os.SCHED_RR | os.SCHED_RESET_ON_FORK
    me = threading.get_native_id()
    others = [
        t.native_id
        for t in threading.enumerate()
        if t.native_id not in (None, me) and t.name != COMPILE_THREAD_NAME
    ]
    try:
        set_policy(0, policy, os.sched_param(priority))
    except (PermissionError, OSError) as error:
        log.warning(
            "the scoring thread keeps the normal CPU policy: SCHED_RR at priority %d was "
            "refused (%s). Allow it with CAP_SYS_NICE or `ulimit -r %d`, or set "
            "scoring_thread_realtime_priority=0 to stop asking.",
            priority,
            error,
            priority,
        )
        return False
    _set_each(set_policy, [*others, *feeders], policy, priority)
    log.info(
        "the scoring thread, %d other threads of its interpreter and %d threads that feed it "
        "run under SCHED_RR at priority %d",
        len(others),
        len(feeders),
        priority,
    )
    return True


def _set_each(set_policy: Setter, thread_ids: Sequence[int], policy: int, priority: int) -> None:
    """The policy for each thread; one that ended meanwhile is skipped, a refusal logged."""
    for thread_id in thread_ids:
        try:
            set_policy(thread_id, policy, os.sched_param(priority))
        except ProcessLookupError:
            pass  # it ended meanwhile
        except OSError as error:  # never raised into the operator's batch
            log.warning("thread %d keeps its CPU policy: %s", thread_id, error)


def release(setter: Setter | None = None, feeders: Sequence[int] = ()) -> None:
    """Every thread of this interpreter, and the ``feeders``, back to the normal policy (the
    operator closes: its threads may outlive it, and the TaskManager's next job takes the
    priority anew)."""
    set_policy = setter if setter is not None else os.sched_setscheduler
    me = threading.get_native_id()
    ids = [0] + [t.native_id for t in threading.enumerate() if t.native_id not in (None, me)]
    # Never raised from close(): see ScoreEvents.close.
    _set_each(set_policy, [*ids, *feeders], os.SCHED_OTHER, 0)
