"""Data drift (PSI, Jensen-Shannon over event-time windows) and concept drift (ADWIN)."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from streamscore.monitoring.concept import ConceptDriftMonitor
from streamscore.monitoring.drift import (
    DriftMonitor,
    Reference,
    bin_of,
    build_reference,
    js_distance,
    monitor_for,
    psi,
    reference_metadata,
    references_of,
    window_label,
)

MINUTE = 60_000
T0 = 1_800_000_000_000


def test_bins_put_each_value_between_edges_and_nan_last() -> None:
    edges = [1.0, 2.0, 5.0]
    assert [bin_of(edges, v) for v in (-1, 1, 1.5, 2, 4.9, 5, 6)] == [0, 0, 1, 1, 2, 2, 3]
    assert bin_of(edges, math.nan) == 4


def test_reference_of_a_flag_has_a_bin_per_value() -> None:
    values = np.array([0.0] * 70 + [1.0] * 30 + [math.nan] * 5)
    reference = build_reference("flag", "feature", values)
    assert reference.edges == (0.0, 1.0)
    assert reference.counts == (70, 30, 0, 5)


def test_psi_and_js_by_hand() -> None:
    # Smoothing 0.5 per bin: reference (10, 30) -> (10.5/41, 30.5/41); live (30, 10) mirrored.
    e = [10.5 / 41, 30.5 / 41]
    a = [30.5 / 41, 10.5 / 41]
    expected_psi = sum((x - y) * math.log(x / y) for y, x in zip(e, a))
    assert psi([10, 30], [30, 10]) == pytest.approx(expected_psi)
    m = [(x + y) / 2 for x, y in zip(e, a)]
    divergence = sum(
        0.5 * x * math.log2(x / z) + 0.5 * y * math.log2(y / z) for x, y, z in zip(e, a, m)
    )
    assert js_distance([10, 30], [30, 10]) == pytest.approx(math.sqrt(divergence))
    assert psi([100, 300], [100, 300]) == pytest.approx(0.0, abs=1e-9)
    assert js_distance([100, 300], [100, 300]) == pytest.approx(0.0, abs=1e-6)
    assert js_distance([1000, 0], [0, 1000]) > 0.95


def _references(rng: np.random.Generator, rows: int = 20_000) -> tuple[list[Reference], list]:
    features = np.column_stack([rng.lognormal(3, 1, rows), rng.integers(0, 2, rows)])
    scores = rng.beta(1, 20, rows)
    stored = json.loads(json.dumps(reference_metadata(["amount", "online"], features, scores)))
    return references_of({"drift_reference": stored}), [features, scores]


def test_no_drift_stays_low_and_a_shift_is_seen_in_that_feature_only() -> None:
    rng = np.random.default_rng(7)
    references, _ = _references(rng)
    monitor = DriftMonitor(references, (300, 3600), min_events=300)
    for i in range(3000):  # 5 min of events, same distributions as the reference
        vector = [rng.lognormal(3, 1), float(rng.integers(0, 2))]
        monitor.observe(T0 + i * 100, vector, float(rng.beta(1, 20)))
    calm = {(w, r.variable): p for w, r, _n, p, _js in monitor.distances()}
    assert set(calm) == {(w, v) for w in ("5m", "1h") for v in ("amount", "online", "score")}
    assert max(calm.values()) < 0.05
    for i in range(3000, 6000):  # then amounts x 2.5, as `produce --drift data@...`
        vector = [2.5 * rng.lognormal(3, 1), float(rng.integers(0, 2))]
        monitor.observe(T0 + i * 100, vector, float(rng.beta(1, 20)))
    drifted = {(w, r.variable): (p, js) for w, r, _n, p, js in monitor.distances()}
    assert drifted[("5m", "amount")][0] > 0.5
    assert drifted[("5m", "amount")][1] > 0.2
    # The 1 h window still holds the calm half: it drifts less than the 5 min one.
    assert drifted[("1h", "amount")][0] < drifted[("5m", "amount")][0]
    assert drifted[("5m", "online")][0] < 0.05 and drifted[("5m", "score")][0] < 0.05


def test_windows_slide_with_event_time_and_need_enough_events() -> None:
    rng = np.random.default_rng(3)
    references, _ = _references(rng)
    monitor = DriftMonitor(references, (300, 3600), min_events=500)
    for i in range(400):
        monitor.observe(T0 + i * 10, [10.0, 1.0], 0.01)
    assert list(monitor.distances()) == []  # 400 < min_events
    assert monitor.events_in_windows() == {"5m": 400, "1h": 400}
    for i in range(400):  # 20 minutes later
        monitor.observe(T0 + 20 * MINUTE + i * 10, [10.0, 1.0], 0.01)
    assert monitor.events_in_windows() == {"5m": 400, "1h": 800}
    assert {w for w, *_ in monitor.distances()} == {"1h"}
    # An event older than the longest window is not counted anywhere.
    monitor.observe(T0 - 2 * 3600_000, [10.0, 1.0], 0.01)
    assert monitor.events_in_windows() == {"5m": 400, "1h": 800}


def test_samples_are_prometheus_gauges_with_variable_kind_window() -> None:
    rng = np.random.default_rng(5)
    references, _ = _references(rng)
    monitor = DriftMonitor(references, (300,), min_events=10)
    for i in range(100):
        monitor.observe(T0 + i, [float(rng.lognormal(3, 1)), 0.0], 0.02)
    families = {f.name: f for f in monitor.samples()}
    psi_family = families["streamscore_drift_psi"]
    psi_labels = {tuple(sorted(s.labels.items())) for s in psi_family.samples}
    assert (("kind", "score"), ("variable", "score"), ("window", "5m")) in psi_labels
    assert (("kind", "feature"), ("variable", "online"), ("window", "5m")) in psi_labels
    assert families["streamscore_drift_window_events"].samples[0].value == 100


def test_models_without_references_get_no_monitor() -> None:
    assert monitor_for(None, (300,), 10) is None
    assert monitor_for({"version": "old"}, (300,), 10) is None


def test_window_labels() -> None:
    assert [window_label(s) for s in (300, 3600, 90, 7200)] == ["5m", "1h", "90s", "2h"]


def _outcome(is_fraud: bool, score: float) -> dict:
    return {"arm": "champion", "score": score, "champion_score": None, "is_fraud": is_fraud}


def test_adwin_detects_when_the_champion_starts_missing_fraud() -> None:
    rng = random.Random(11)
    monitor = ConceptDriftMonitor()
    for _ in range(5000):  # the model is right: fraud scored high, the rest low
        fraud = rng.random() < 0.05
        monitor.add(_outcome(fraud, 0.9 if fraud else 0.02))
    calm = monitor.detections
    for _ in range(3000):  # a new pattern: half the fraud now scores low
        fraud = rng.random() < 0.2
        monitor.add(_outcome(fraud, 0.9 if fraud and rng.random() < 0.5 else 0.02))
    assert calm == 0
    assert monitor.detections >= 1
    assert monitor.error_rate > 0.05
    # A canary user's outcome counts with the champion's shadow score; without one, not at all.
    assert (
        monitor.add({"arm": "candidate", "score": 0.5, "champion_score": None, "is_fraud": True})
        is False
    )
