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


def settle(full_collection_every: int, young_threshold: int | None = None) -> None:
    """Once the operator is open: move everything loaded so far (modules, models) out of the
    collector's sight (``gc.freeze``), and run a full collection only every
    ``full_collection_every`` generation-1 collections (CPython's default is 10); with
    ``young_threshold``, a young collection only after that many more tracked objects were made
    than freed (CPython's default is 700; see ``SurvivorFreeze`` for why the scoring operator
    raises it)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young if young_threshold is None else young_threshold, middle,
                     full_collection_every)  # fmt: skip
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
    """After each batch, move every object that survived it out of the collector's sight
    (``gc.freeze``, a constant-time splice of its lists); every ``sweep_every`` checkpoints,
    hand them all back and collect once.

    Each batch makes the new buckets, sets and join entries of the users it saw; most live on
    in the caches. Without the freeze, every full collection walked all cached users again
    (~100 ms at 10,000 users, several per 60,000 events in ``bench/operator_cost.py``). Frozen
    only at checkpoints, as until the twenty-fifth session, the young collections (every 700
    tracked objects made) still walked each survivor of the interval once in generation 0 and
    once more in generation 1: 6-8 % of the operator's time in ``bench/operator_cost.py`` and
    in ``perf`` profiles of the scoring thread draining (bench/HISTORY.md, twenty-fifth
    session). Frozen after each batch, with the young threshold (``python_gc_young_threshold``)
    above what one batch makes, the collector walks none of them.

    A frozen object is still freed by its reference count as usual; only a reference cycle that
    is garbage when frozen waits for the next sweep. The operator's records make none: events,
    labels, bad records, late ones, timers and a feature store that is down leave no cyclic
    garbage (``tests/unit/test_cyclic_garbage.py``). What else could leak so (an exception's
    traceback kept by a library, say) waits at most one sweep interval.
    """

    def __init__(self, sweep_every: int) -> None:
        self._sweep_every = sweep_every
        self._checkpoints = 0

    def batch(self) -> None:
        """A batch's survivors, frozen (its young objects are freed or frozen with it)."""
        gc.freeze()

    def checkpoint(self) -> None:
        self._checkpoints += 1
        if self._checkpoints % self._sweep_every == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
