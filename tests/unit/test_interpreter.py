"""The operators' interpreter set-up: full collections rarer, startup objects frozen, and all of
it handed back when the operator closes."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from streamscore.config import Settings
from streamscore.job import interpreter


def test_settle_freezes_what_is_loaded_and_release_hands_it_back() -> None:
    thresholds = gc.get_threshold()
    try:
        interpreter.settle(100)
        assert gc.get_threshold() == (thresholds[0], thresholds[1], 100)
        assert gc.get_freeze_count() > 0
        interpreter.release()
        assert gc.get_freeze_count() == 0
        interpreter.settle(100, young_threshold=50_000)
        assert gc.get_threshold() == (50_000, thresholds[1], 100)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


class _Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_survivors_are_frozen_at_each_checkpoint_and_swept_every_so_many() -> None:
    survivors = interpreter.SurvivorFreeze(sweep_every=3)
    try:
        gc.collect()
        kept = [[float(i)] for i in range(1000)]  # a checkpoint interval's new state
        survivors.checkpoint()
        assert gc.get_freeze_count() >= len(kept)
        watched = {id(o) for o in gc.get_objects()}  # out of the collector's sight:
        assert not any(id(o) in watched for o in kept)
        # Cyclic garbage frozen at a checkpoint waits for the sweep, then goes.
        cycle = _Node()
        alive = weakref.ref(cycle)
        survivors.checkpoint()
        del cycle
        gc.collect()
        assert alive() is not None
        survivors.checkpoint()  # the third: handed back and collected, then frozen again
        assert alive() is None
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()


def test_a_batch_s_survivors_are_frozen_and_its_cyclic_garbage_waits_for_the_sweep() -> None:
    survivors = interpreter.SurvivorFreeze(sweep_every=2)
    try:
        gc.collect()
        kept = [[float(i)] for i in range(1000)]  # a batch's new state
        cycle = _Node()
        alive = weakref.ref(cycle)
        del cycle
        survivors.batch()
        watched = {id(o) for o in gc.get_objects()}
        assert not any(id(o) in watched for o in kept)
        gc.collect()
        assert alive() is not None  # frozen with the batch: not collected ...
        survivors.checkpoint()
        assert alive() is not None
        survivors.checkpoint()  # ... until the sweep
        assert alive() is None
    finally:
        gc.unfreeze()


def test_a_thread_waiting_for_the_gil_asks_for_it_after_the_setting() -> None:
    before = sys.getswitchinterval()
    try:
        interpreter.hand_over_gil_within(0.5)
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        interpreter.hand_over_gil_within(Settings().python_switch_interval_ms)
        assert sys.getswitchinterval() == pytest.approx(0.0005)  # the default
    finally:
        sys.setswitchinterval(before)
