"""The TaskManager's Python interpreter, set up for a long-running operator.

In thread mode one interpreter per TaskManager runs one operator for days, holding its caches
of users' state and pending outcomes, each cached user dozens of tracked objects. CPython's
cyclic garbage collector walks all of them in each full (generation 2) collection, during which
the operator stands still. Timed with ``gc.callbacks`` in a copy of ``bench/operator_cost.py``
(``--events 60000``, 10,000 users; its heap also holds the probe's pre-encoded input rows; the
feature-store writer held idle): nine full collections of ~170 ms each were ~1.5 s of ~1.9 s of
collector time; making them ten times rarer took the operator from ~74 to ~64 µs per event.
The state is plain data without reference cycles, so collecting cycles less often costs no
memory that matters; young generations are still collected as usual.
"""

from __future__ import annotations

import gc
import logging
import sys

log = logging.getLogger(__name__)


def settle(full_collection_every: int) -> None:
    """Once the operator is open: move everything loaded so far (modules, models) out of the
    collector's sight (``gc.freeze``), and run a full collection only every
    ``full_collection_every`` generation-1 collections (CPython's default is 10)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, full_collection_every)
    log.info(
        "garbage collector: %d objects frozen, thresholds %s", gc.get_freeze_count(),
        gc.get_threshold(),
    )  # fmt: skip


def hand_over_gil_within(interval_ms: float) -> None:
    """How long a thread waiting for the GIL waits before it asks the holder to hand it over
    (``sys.setswitchinterval``; CPython's default is 5 ms).

    In thread mode every call from the operator into the JVM (a key switch, a state write, the
    iterator over its outputs) releases the GIL, and the feature store's writer thread, which
    wants it for each batch it sends, takes it meanwhile: back from the JVM, the scoring thread
    waited until the writer's interval ran out. An off-CPU profile of the scoring thread in an
    exactly-once drain found it waiting for the GIL about a sixth of the time, in waits of 3.7
    ms on average (bench/HISTORY.md, eighteenth session). A shorter interval bounds each wait;
    the writer's own work is the same, in shorter turns."""
    sys.setswitchinterval(interval_ms / 1000.0)
    log.info("threads waiting for the GIL ask for it after %.2f ms", interval_ms)


def release() -> None:
    """When the operator closes: hand the frozen objects back to the collector, so that what a
    cancelled job leaves behind in reference cycles is freed before the next job on this
    TaskManager freezes its own (thread mode keeps the interpreter across jobs)."""
    gc.unfreeze()


class SurvivorFreeze:
    """At each checkpoint, move every object that survived so far out of the collector's
    sight (``gc.freeze``, a constant-time splice of its lists); every ``sweep_every``
    checkpoints, hand them all back and collect once.

    Between two checkpoints the interpreter makes the new buckets, sets and join entries of the
    users it saw; most live on in the caches. Without the freeze, every full collection walked
    all cached users again (~100 ms at 10,000 users, several per 60,000 events in
    ``bench/operator_cost.py``), and the young ones walked the survivors of the interval. A
    frozen object is still freed by its reference count as usual; only a reference cycle that
    is garbage when frozen waits for the next sweep (the state is plain data without cycles:
    what could leak so is an exception's traceback or the like, for at most one sweep interval).
    """

    def __init__(self, sweep_every: int) -> None:
        self._sweep_every = sweep_every
        self._checkpoints = 0

    def checkpoint(self) -> None:
        self._checkpoints += 1
        if self._checkpoints % self._sweep_every == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
