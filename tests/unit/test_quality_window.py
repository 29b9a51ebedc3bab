"""The live window: the last N labels within the last hour of event time, summarised on demand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamscore.model.decisions import CostModel
from streamscore.quality.bootstrap import auc_ci
from streamscore.quality.metrics import roc_auc
from streamscore.quality.value import business_value
from streamscore.quality.window import QualityWindow

COSTS = CostModel.defaults()
HOUR = 3_600_000


def kept_times(window: QualityWindow) -> list[int]:
    return [o[0] for o in window._outcomes]


def test_keeps_the_last_n() -> None:
    window = QualityWindow(max_labels=3, max_age_ms=HOUR)
    for t in range(5):
        window.add(t, False, 0.1, "APPROVE", 10.0)
    assert kept_times(window) == [2, 3, 4]
    assert (len(window), window.labels_total) == (3, 5)


def test_keeps_the_last_hour_of_event_time() -> None:
    window = QualityWindow(max_labels=100, max_age_ms=HOUR)
    window.add(0, False, 0.1, "APPROVE", 10.0)
    window.add(HOUR // 2, True, 0.9, "DECLINE", 10.0)
    window.add(HOUR, False, 0.1, "APPROVE", 10.0)  # exactly an hour: still in
    assert kept_times(window) == [0, HOUR // 2, HOUR]
    window.add(HOUR + 1, False, 0.1, "APPROVE", 10.0)
    assert kept_times(window) == [HOUR // 2, HOUR, HOUR + 1]
    # A label for an event already older than the window is counted, not kept.
    window.add(0, True, 0.9, "DECLINE", 10.0)
    assert kept_times(window) == [HOUR // 2, HOUR, HOUR + 1]
    assert window.labels_total == 5


def test_out_of_order_labels_are_aged_out_exactly_in_the_snapshot() -> None:
    window = QualityWindow(max_labels=100, max_age_ms=HOUR)
    window.add(HOUR, False, 0.1, "APPROVE", 10.0)
    window.add(HOUR // 4, True, 0.9, "DECLINE", 10.0)  # older event, labelled later
    window.add(HOUR, False, 0.1, "APPROVE", 10.0)
    window.add(HOUR + HOUR // 2, False, 0.1, "APPROVE", 10.0)
    # The front (HOUR) is young enough, so the old one stays in the deque ...
    assert HOUR // 4 in kept_times(window)
    # ... but not in the figures.
    snap = window.snapshot(COSTS, resamples=0)
    assert (snap.labels, snap.positives, snap.labels_total) == (3, 0, 4)
    # The caller's clock (e.g. the watermark) can age the window further.
    assert window.snapshot(COSTS, now_ms=2 * HOUR + 1, resamples=0).labels == 1


def test_snapshot_equals_the_metrics_of_its_outcomes() -> None:
    rng = np.random.default_rng(8)
    n = 2000
    is_fraud = rng.random(n) < 0.05
    scores = np.clip(rng.normal(0.2 + 0.5 * is_fraud, 0.15), 0, 1)
    amounts = rng.lognormal(3.3, 1.0, n)
    decisions = [COSTS.decide(float(s), float(a)) for s, a in zip(scores, amounts)]
    window = QualityWindow(max_labels=1500, max_age_ms=HOUR)
    for i in range(n):
        window.add(i, bool(is_fraud[i]), float(scores[i]), decisions[i], float(amounts[i]))
    snap = window.snapshot(COSTS, resamples=200, seed=3)
    last = slice(n - 1500, n)
    assert (snap.labels, snap.labels_total) == (1500, n)
    assert snap.positives == int(is_fraud[last].sum())
    assert snap.auc == pytest.approx(roc_auc(is_fraud[last].astype(int), scores[last]))
    assert snap.auc_ci == auc_ci(is_fraud[last].astype(int), scores[last], 200, seed=3)
    assert snap.auc_ci[0] < snap.auc < snap.auc_ci[1]
    assert snap.value == business_value(is_fraud[last], decisions[-1500:], amounts[last], COSTS)
    lo, hi = snap.net_value_per_label_ci
    assert lo < snap.net_value_per_label < hi
    assert snap.values.sum() == pytest.approx(snap.value.net_value)
    assert 0 <= snap.ece <= 1 and snap.log_loss > 0
    assert set(snap.precision_recall) == {"review_or_worse", "decline"}
    assert "values" not in snap.as_dict() and snap.as_dict()["labels"] == 1500


def test_empty_window_snapshot() -> None:
    snap = QualityWindow(max_labels=10, max_age_ms=HOUR).snapshot(COSTS)
    assert (snap.labels, snap.positives, snap.value.net_value) == (0, 0, 0.0)
    assert all(math.isnan(x) for x in (snap.auc, snap.log_loss, snap.ece, snap.net_value_per_label))
    assert all(math.isnan(x) for x in (*snap.auc_ci, *snap.net_value_per_label_ci))


def test_add_is_cheap() -> None:
    import timeit

    window = QualityWindow(max_labels=10_000, max_age_ms=HOUR)
    clock = iter(range(10**9))
    best = min(
        timeit.repeat(
            lambda: window.add(next(clock), False, 0.1, "APPROVE", 12.0), number=20_000, repeat=3
        )
    )
    assert best / 20_000 < 5e-6  # ≈ 0.3 µs measured; O(1) whatever the window holds


def test_snapshot_while_another_thread_adds() -> None:
    """The learner adds outcomes while a metrics scrape, on its own thread, takes snapshots: the
    snapshot copies the window first (it had filtered the deque in Python, and an append in
    between failed the readout with "deque mutated during iteration")."""
    import sys
    import threading

    window = QualityWindow(max_labels=50_000, max_age_ms=HOUR)
    for t in range(20_000):
        window.add(t, t % 7 == 0, 0.5, "APPROVE", 10.0)
    stop = threading.Event()

    def add() -> None:
        t = 20_000
        while not stop.is_set():
            window.add(t, t % 7 == 0, 0.5, "APPROVE", 10.0)
            t += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as the interpreter can
    adder = threading.Thread(target=add)
    adder.start()
    try:
        for _ in range(20):
            window.snapshot(COSTS, resamples=0)
    finally:
        stop.set()
        adder.join()
        sys.setswitchinterval(interval)
