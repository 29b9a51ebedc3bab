"""How fast the host ran during a benchmark: a fixed CPU gauge, and the whole box's CPU shares.

Our machines are virtual and shared: on some days the same work costs twice the CPU time it
cost on others, and two runs of one command minutes apart have drained at 3,000 and 6,000
events/s. The load average does not show it (it counts only this machine's own processes).
So every run records two things beside its figures:

* ``gauge_us``: the median CPU time of a fixed piece of pure-Python work (dict, list, string and
  float operations, the interpreter's kind of work, as on the scoring path), timed a few times
  before the measurements (stack idle) and again after them. The work is defined here and
  does not depend on the package, so two commits' runs, and two days' runs, time the same
  thing. A drain figure taken at a gauge twice as high was taken on a host at half speed.
* ``box``: the shares of all CPUs' time between two readings of ``/proc/stat`` (user, system,
  idle, I/O wait, steal). ``idle`` near zero says the job was bound by the CPUs, not waiting;
  ``steal`` is time the hypervisor gave to other tenants while this machine wanted to run.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

# /proc/stat's "cpu" line: user nice system idle iowait irq softirq steal (guest time is
# already counted in user).
_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
GAUGE_ROUNDS = 7


def gauge_work(n: int = 20_000) -> float:
    """The fixed work: build, look up and fold dicts keyed by strings, as a feature engine
    does. Returns a number so that nothing can be optimised away."""
    buckets: dict[str, list[float]] = {}
    total = 0.0
    for i in range(n):
        key = f"u{i % 997:05d}"
        slot = buckets.get(key)
        if slot is None:
            slot = buckets[key] = [0.0, 0.0, 0.0]
        amount = (i * 7919 % 10_007) / 100.0
        slot[0] += 1.0
        slot[1] += amount
        if amount > slot[2]:
            slot[2] = amount
        total += slot[1] / slot[0]
    return total + len(buckets)


def gauge_us(rounds: int = GAUGE_ROUNDS) -> float:
    """Median CPU µs of ``gauge_work`` over ``rounds`` timings. CPU time of this thread, not
    wall-clock time: the stack's own processes, still busy after a run, take turns on the
    CPUs with it and would move a wall-clock timing; a slower host makes the work itself cost
    more CPU time. The median, so that one burst moves one timing, not the figure."""
    timings = []
    for _ in range(rounds):
        started = time.thread_time()
        gauge_work()
        timings.append((time.thread_time() - started) * 1e6)
    return round(statistics.median(timings), 1)


def cpu_times(stat: Path = Path("/proc/stat")) -> dict[str, int] | None:
    """All CPUs' time so far by kind, in clock ticks (None where /proc/stat is missing)."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[0] != "cpu":
        return None
    values = [int(v) for v in first[1 : 1 + len(_FIELDS)]]
    return dict(zip(_FIELDS, values + [0] * (len(_FIELDS) - len(values)), strict=True))


def box_shares(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, Any]:
    """Each kind's share (%) of all CPUs' time between two ``cpu_times`` readings; user
    includes nice, system includes irq and softirq."""
    if before is None or after is None:
        return {}
    used = {kind: after[kind] - before[kind] for kind in _FIELDS}
    total = sum(used.values())
    if total <= 0:
        return {}

    def share(*kinds: str) -> float:
        return round(100.0 * sum(used[k] for k in kinds) / total, 1)

    return {
        "user": share("user", "nice"),
        "system": share("system", "irq", "softirq"),
        "idle": share("idle"),
        "iowait": share("iowait"),
        "steal": share("steal"),
    }


class HostSpeed:
    """``start()`` before the measurements, ``stop()`` after them."""

    def __init__(self) -> None:
        self._before: dict[str, int] | None = None
        self._gauge_start = 0.0

    def start(self) -> None:
        self._gauge_start = gauge_us()
        self._before = cpu_times()

    def stop(self) -> dict[str, Any]:
        after = cpu_times()
        return {
            "gauge_us_start": self._gauge_start,
            "gauge_us_end": gauge_us(),
            "box_during_run": box_shares(self._before, after),
        }
