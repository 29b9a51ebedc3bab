"""CPU time and memory of the stack's processes while a system drains a backlog, from /proc.

The drain figure says how fast; this says what it cost and where: each server's CPU seconds
(user + system, ``/proc/PID/stat``) between the start and the end of the drain, per output
event, and its peak resident memory (``VmRSS``, sampled every half second: ``VmHWM`` would
include whatever ran on the long-lived stack before). The pass-through's own process is
measured the same way, so the two rows compare like with like. The whole box's CPU shares over
the same span (``host_speed.box_shares``) say whether the drain was bound by the CPUs (idle near
0) or waited, and how much time the hypervisor gave to other tenants (steal).

The busiest threads of the stack's processes (``busiest_threads``) say the same of the thread
that bounds the drain (the scoring task's): the share of the drain it spent on a CPU, runnable
but waiting for one (the scheduler's run queue, ``/proc/PID/task/TID/schedstat``), and asleep
(waiting for input, a lock or the GIL). A thread starved of CPU waits in the run queue; a
thread that waits for its input or its output sleeps.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from streamscore.config import Settings

from host_speed import box_shares, cpu_times

_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.5


def stack_processes(s: Settings) -> dict[str, int]:
    """The running servers of the stack, by name (e.g. ``flink-taskmanager-0``, ``kafka``)."""
    from streamscore.stack import flink, kafka, prometheus, redis_server
    from streamscore.stack.stack import pid_of

    names = [
        kafka.NAME,
        redis_server.NAME,
        flink.JOBMANAGER,
        *flink.taskmanager_names(s),
        prometheus.NAME,
    ]
    found = {name: pid_of(s, name) for name in names}
    return {name: pid for name, pid in found.items() if pid}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


# A thread's readings: (process, thread id) -> (thread name, ns on a CPU, ns waiting for one).
ThreadTimes = dict[tuple[str, str], tuple[str, int, int]]


def thread_times(processes: dict[str, int], root: Path = Path("/proc")) -> ThreadTimes:
    """Every thread of ``processes`` (name -> pid): its name and scheduler times so far."""
    times: ThreadTimes = {}
    for process, pid in processes.items():
        try:
            tids = [path.name for path in (root / str(pid) / "task").iterdir()]
        except OSError:
            continue
        for tid in tids:
            task = root / str(pid) / "task" / tid
            try:
                name = (task / "comm").read_text().strip()
                on_cpu, waiting, _ = (task / "schedstat").read_text().split()
            except (OSError, ValueError):
                continue  # gone meanwhile, or a kernel without schedstat
            times[(process, tid)] = (name, int(on_cpu), int(waiting))
    return times


def busiest_threads(
    before: ThreadTimes, after: ThreadTimes, wall_s: float, top: int = 6
) -> list[dict[str, Any]]:
    """The ``top`` threads by CPU time between two readings: their shares of the wall time on a
    CPU, waiting for one, and asleep (the rest). A thread started in between counts from 0."""
    rows = []
    for key, (name, on_cpu, waiting) in after.items():
        _, on_cpu0, waiting0 = before.get(key, (name, 0, 0))
        ran = (on_cpu - on_cpu0) / 1e9 / wall_s
        queued = (waiting - waiting0) / 1e9 / wall_s
        rows.append(
            {
                "process": key[0],
                "thread": name,
                "on_cpu": round(ran, 3),
                "waiting_for_cpu": round(queued, 3),
                "asleep": round(max(0.0, 1.0 - ran - queued), 3),
            }
        )
    rows.sort(key=lambda row: -row["on_cpu"])
    return rows[:top]


def children_of(parents: dict[int, str], root: Path = Path("/proc")) -> dict[str, int]:
    """Processes started by one of ``parents`` (pid -> name), named ``<parent>/<name>`` (Redis's
    append-only-file rewrite, a process a job's operator starts): their CPU time is not in
    their parent's ``/proc/PID/stat`` until they have ended and been waited for."""
    found: dict[str, int] = {}
    for entry in root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # ppid, field 4
        if parent in parents:
            found[f"{parents[parent]}/{name}"] = int(entry.name)
    return found


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _usage(used: float, outputs: int, wall: float) -> dict[str, Any]:
    """A process's CPU seconds over the drain, per output event (µs) and as cores."""
    return {
        "cpu_seconds": round(used, 2),
        "us_per_event": round(used / outputs * 1e6, 1) if outputs else None,
        "cores": round(used / wall, 2),
    }


class ProcessCost:
    """``start()`` before the system starts, ``stop(outputs)`` once its outputs are in."""

    def __init__(self, processes: dict[str, int], observers: dict[str, int] | None = None) -> None:
        self._processes = dict(processes)
        # The bench's own processes on the same box (its output collectors): reported apart,
        # not in the total, so that a reader sees what measuring took from the system measured.
        self._observers = dict(observers or {})
        self._observer_cpu0: dict[str, float] = {}
        self._servers = {pid: name for name, pid in processes.items()}
        self._cpu0: dict[str, float] = {}
        # A child's CPU seconds when last sampled: one that ends before the drain does is
        # counted up to then.
        self._child_cpu: dict[str, float] = {}
        self._peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._t0 = 0.0
        self._box0: dict[str, int] | None = None
        self._threads0: ThreadTimes = {}

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._box0 = cpu_times()
        self._processes.update(children_of(self._servers))
        self._threads0 = thread_times(self._processes)
        for name, pid in self._processes.items():
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self._cpu0[name] = cpu
        for name, pid in self._observers.items():
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self._observer_cpu0[name] = cpu
        self._sampler.start()

    def _adopt_children(self) -> None:
        """Children of the servers started since the drain began count from 0."""
        for name, pid in children_of(self._servers).items():
            if name in self._processes and self._processes[name] != pid:
                name = f"{name}-{pid}"  # started again
            if name not in self._processes:
                self._processes[name] = pid
                self._cpu0[name] = 0.0

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._adopt_children()
            for name, pid in self._processes.items():
                rss = rss_bytes(pid)
                if rss is not None and rss > self._peak.get(name, 0):
                    self._peak[name] = rss
                if pid not in self._servers:
                    cpu = cpu_seconds(pid)
                    if cpu is not None:
                        self._child_cpu[name] = cpu

    def stop(self, outputs: int) -> dict[str, Any]:
        """Per process: CPU seconds, µs per output, share of one core, peak RSS in MiB."""
        self._stop.set()
        self._sampler.join(5)
        self._adopt_children()
        wall = max(time.monotonic() - self._t0, 1e-9)
        box = box_shares(self._box0, cpu_times())
        threads = busiest_threads(self._threads0, thread_times(self._processes), wall)
        rows: dict[str, Any] = {}
        for name, pid in self._processes.items():
            cpu = cpu_seconds(pid)
            if cpu is None:
                cpu = self._child_cpu.get(name)
            if cpu is None or name not in self._cpu0:
                rows[name] = {"note": "process gone during the drain"}
                continue
            rows[name] = {
                **_usage(cpu - self._cpu0[name], outputs, wall),
                "peak_rss_mib": round(self._peak.get(name, 0) / 2**20),
            }
        total = sum(r.get("cpu_seconds", 0.0) for r in rows.values())
        observers: dict[str, Any] = {}
        for name, pid in self._observers.items():
            cpu = cpu_seconds(pid)
            if cpu is None or name not in self._observer_cpu0:
                continue
            observers[name] = _usage(cpu - self._observer_cpu0[name], outputs, wall)
        return {
            "wall_seconds": round(wall, 1),
            "processes": rows,
            "total_cpu_seconds": round(total, 2),
            "total_us_per_event": round(total / outputs * 1e6, 1) if outputs else None,
            # All CPUs' time by kind: idle near 0 means the drain was bound by the CPUs.
            "box": box,
            "threads": threads,
            "observers": observers,
        }
