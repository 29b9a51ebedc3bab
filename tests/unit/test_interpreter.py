"""The operators' interpreter set-up: full collections rarer, startup objects frozen, and all of
it handed back when the operator closes."""

from __future__ import annotations

import gc

from streamscore.job import interpreter


def test_settle_freezes_what_is_loaded_and_release_hands_it_back() -> None:
    thresholds = gc.get_threshold()
    try:
        interpreter.settle(100)
        assert gc.get_threshold() == (thresholds[0], thresholds[1], 100)
        assert gc.get_freeze_count() > 0
        interpreter.release()
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
