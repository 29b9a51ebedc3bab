"""The canary readout: sample-ratio mismatch, the value difference, and the rollback rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamscore.model.decisions import CostModel
from streamscore.quality.ab import ab_readout, sample_ratio_mismatch, should_roll_back
from streamscore.quality.window import QualityWindow


def test_srm_hand_computed() -> None:
    # 1000 labels, 10 % expected on the candidate: E = 100 / 900, observed 120 / 880.
    r = sample_ratio_mismatch(880, 120, 0.1)
    assert r.chi2 == pytest.approx(400 / 100 + 400 / 900)
    assert r.p_value == pytest.approx(0.03501, abs=1e-4)  # chi2.sf(4.444, df=1)
    assert r.observed_candidate_share == pytest.approx(0.12)
    assert not r.srm  # suspicious, but not below 0.001


def test_srm_flags_a_60_40_split_where_90_10_was_expected() -> None:
    assert sample_ratio_mismatch(600, 400, 0.1).srm
    assert sample_ratio_mismatch(60, 40, 0.1).srm
    exact = sample_ratio_mismatch(900, 100, 0.1)
    assert (exact.chi2, exact.p_value, exact.srm) == (0.0, 1.0, False)
    assert not sample_ratio_mismatch(0, 0, 0.1).srm
    with pytest.raises(ValueError):
        sample_ratio_mismatch(1, 1, 1.0)


def test_srm_p_value_is_the_chi_square_tail() -> None:
    """P(χ²₁ > x) by the definition: the square of a standard normal exceeds x."""
    z = np.random.default_rng(0).standard_normal(2_000_000)
    r = sample_ratio_mismatch(500, 540, 0.5)
    assert r.p_value == pytest.approx(float((z**2 > r.chi2).mean()), abs=2e-3)


def test_readout_of_samples() -> None:
    rng = np.random.default_rng(1)
    champion, candidate = rng.normal(0.2, 3.0, 9000), rng.normal(0.6, 3.0, 1000)
    r = ab_readout(champion, candidate, 0.1, resamples=400)
    assert not r.sample_ratio.srm
    assert r.difference == pytest.approx(candidate.mean() - champion.mean())
    assert r.difference_ci[0] < r.difference < r.difference_ci[1]
    assert (r.champion_labels, r.candidate_labels) == (9000, 1000)
    assert r.as_dict()["sample_ratio"]["candidate"] == 1000


def test_readout_of_snapshots_uses_the_labels_ever_added() -> None:
    """Both windows are full (equal size), but 90 % of the labels went to the champion."""
    costs = CostModel.defaults()
    champion, candidate = QualityWindow(500, 3_600_000), QualityWindow(500, 3_600_000)
    for i in range(9000):
        champion.add(i, False, 0.01, "APPROVE", 10.0)
    for i in range(1000):
        candidate.add(i, i % 100 == 0, 0.5 if i % 100 == 0 else 0.01, "DECLINE", 10.0)
    r = ab_readout(champion.snapshot(costs), candidate.snapshot(costs), 0.1)
    assert (r.sample_ratio.champion, r.sample_ratio.candidate) == (9000, 1000)
    assert not r.sample_ratio.srm
    assert (r.champion_labels, r.candidate_labels) == (500, 500)
    # Candidate declines everything: 5 frauds of 10 € stopped, 495 honest declines at 3 €.
    assert r.candidate_value_per_label == pytest.approx((50.0 - 495 * 3.0) / 500)
    assert r.champion_value_per_label == 0.0


def test_should_roll_back() -> None:
    champion = np.full(600, 1.0)
    assert should_roll_back(champion, np.full(600, 0.9), margin=0.05, min_labels=500)
    assert not should_roll_back(champion, np.full(600, 0.96), margin=0.05, min_labels=500)
    assert not should_roll_back(champion, np.full(600, 1.5), margin=0.05, min_labels=500)
    # Too few labels in either arm: no verdict yet.
    assert not should_roll_back(champion, np.full(499, -10.0), margin=0.05, min_labels=500)
    assert not should_roll_back(champion[:499], np.full(600, -10.0), margin=0.05, min_labels=500)


def test_empty_readout_is_nan_not_an_error() -> None:
    r = ab_readout([], [], 0.1)
    assert math.isnan(r.difference) and not r.sample_ratio.srm
    assert not should_roll_back([], [], margin=0.0, min_labels=0)


def test_roll_back_with_confidence_ignores_noise() -> None:
    """Heavy-tailed values: a few large frauds among many small costs, as in card payments."""
    rng = np.random.default_rng(2)

    def arm(n: int, shift: float = 0.0) -> np.ndarray:
        return np.where(rng.random(n) < 0.005, rng.exponential(150.0, n), -0.02) + shift

    noisy = sum(
        should_roll_back(arm(500), arm(500), margin=0.05, min_labels=500) for _ in range(200)
    )
    confident = sum(
        should_roll_back(arm(500), arm(500), margin=0.05, min_labels=500, confidence=0.95)
        for _ in range(200)
    )
    assert noisy > 40 and confident < 10
    # A clearly worse candidate is still rolled back.
    champion, candidate = np.full(600, 1.0), np.full(600, 0.5) + rng.normal(0, 0.1, 600)
    assert should_roll_back(champion, candidate, margin=0.05, min_labels=500, confidence=0.95)
