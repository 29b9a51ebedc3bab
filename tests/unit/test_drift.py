"""Drift injection (``GeneratorConfig.drifts``), checked on the generator alone, without Kafka.

Data drift moves the inputs (amounts x2.5, unseen categories and countries) at its time and not
before. Concept drift moves the fraud pattern: a LightGBM trained before it loses most of its
AUC after it, while a river model that keeps learning on the same 21 features recovers.

The concept test's stream: seed 1, 500 users, 50 events/s (800 s of event time), fraud burst
probability 0.01 (2.6 % fraud before the drift, 3.4 % after: enough positives in 40,000 events),
drift at 400 s. Measured: LightGBM (60 rounds, trained on the first 75 % of the pre-drift events)
has AUC 0.89 on the pre-drift holdout and 0.56 after the drift; over the last half of the
post-drift events the frozen model has 0.49 and a river StandardScaler | LogisticRegression,
learning prequentially from the drift on, 0.76. About 3 s on 2 cores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import lightgbm
import numpy as np
import pytest
from river import linear_model, preprocessing

from streamscore.features.definitions import FEATURE_SET, MERCHANT_CATEGORIES
from streamscore.generator import (
    CONCEPT_FRAUD_MIX,
    COUNTRIES,
    DATA_DRIFT_AMOUNT_FACTOR,
    NEW_CATEGORIES,
    NEW_COUNTRIES,
    Drift,
    GeneratorConfig,
    Transaction,
    TransactionGenerator,
)
from streamscore.model.dataset import TrainingSet, build_training_set
from streamscore.model.train import roc_auc

CONFIG = GeneratorConfig(users=500, events_per_second=50, fraud_burst_probability=0.01, seed=1)
EVENTS = 40_000
DRIFT_S = 400.0


def _take(config: GeneratorConfig, n: int = EVENTS) -> list[Transaction]:
    return TransactionGenerator(config).take(n)


def _time(t: Transaction) -> int:
    return int(str(t.event["event_time"]))


def _drift_ms(stream: list[Transaction], at_s: float) -> int:
    return _time(stream[0]) + int(at_s * 1000)


# --- determinism ---------------------------------------------------------------------------------
def test_a_drift_changes_nothing_before_its_time_and_is_seeded() -> None:
    base = _take(CONFIG, 10_000)  # 200 s
    drifted_config = replace(CONFIG, drifts=(Drift("data", 60.0), Drift("concept", 120.0)))
    drifted = _take(drifted_config, 10_000)
    assert drifted == _take(drifted_config, 10_000)  # same seed, same stream
    cut = _drift_ms(base, 60.0)
    before = sum(_time(t) < cut for t in base)
    assert 2_000 < before < 4_000
    assert drifted[:before] == base[:before]
    assert drifted[before:] != base[before:]
    # A drift after the stream's end, or none at all: the very same stream.
    late = _take(replace(CONFIG, drifts=(Drift("data", 10_000.0),)), 10_000)
    assert late == base


# --- data drift ----------------------------------------------------------------------------------
def test_data_drift_shifts_amounts_and_brings_unseen_values_at_its_time() -> None:
    stream = _take(replace(CONFIG, drifts=(Drift("data", DRIFT_S),)))  # 400 s each side
    cut = _drift_ms(stream, DRIFT_S)
    before = [t.event for t in stream if _time(t) < cut]
    after = [t.event for t in stream if _time(t) >= cut]
    assert all(e["merchant_category"] in MERCHANT_CATEGORIES for e in before)
    assert all(e["country"] in COUNTRIES for e in before)
    new_category = sum(e["merchant_category"] in NEW_CATEGORIES for e in after) / len(after)
    assert 0.05 < new_category < 0.15  # 10 % of legitimate events
    assert {e["country"] for e in after} & set(NEW_COUNTRIES)
    ratio = np.median([float(str(e["amount"])) for e in after]) / np.median(
        [float(str(e["amount"])) for e in before]
    )
    assert ratio == pytest.approx(DATA_DRIFT_AMOUNT_FACTOR, rel=0.15)


# --- concept drift -------------------------------------------------------------------------------
@dataclass
class _Split:
    stream: list[Transaction]
    data: TrainingSet
    train: np.ndarray
    holdout: np.ndarray
    post: np.ndarray


@pytest.fixture(scope="module")
def concept() -> _Split:
    stream = _take(replace(CONFIG, drifts=(Drift("concept", DRIFT_S),)))
    data = build_training_set((t.event, t.is_fraud) for t in stream)
    pre = data.event_times < _drift_ms(stream, DRIFT_S)
    first_holdout = np.flatnonzero(pre)[int(pre.sum() * 0.75)]
    train = pre & (np.arange(len(data)) < first_holdout)
    return _Split(stream, data, train, pre & ~train, ~pre)


def _frozen_model(split: _Split) -> lightgbm.Booster:
    params = {
        "objective": "binary",
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "seed": 7,
        "deterministic": True,
        "num_threads": 1,  # 2 threads on 2 shared, busy cores: several times slower
        "verbose": -1,
    }
    train_set = lightgbm.Dataset(
        split.data.features[split.train],
        split.data.labels[split.train],
        feature_name=list(split.data.feature_names),
        categorical_feature=list(FEATURE_SET.categorical_features),
    )
    return lightgbm.train(params, train_set, num_boost_round=60)


def _prequential_scores(rows: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Each event scored by the river model before it learns that event's label."""
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    scores = np.empty(len(labels))
    for i, (row, label) in enumerate(zip(rows, labels)):
        x = dict(zip(names, row.tolist()))
        scores[i] = model.predict_proba_one(x).get(True, 0.0)
        model.learn_one(x, bool(label))
    return scores


def test_concept_drift_defeats_the_frozen_model_and_an_online_learner_recovers(
    concept: _Split,
) -> None:
    data = concept.data
    assert 0.005 < data.labels[concept.post].mean() < 0.05
    booster = _frozen_model(concept)
    holdout_auc = roc_auc(
        data.labels[concept.holdout], booster.predict(data.features[concept.holdout])
    )
    post_labels = data.labels[concept.post]
    frozen = booster.predict(data.features[concept.post])
    post_auc = roc_auc(post_labels, frozen)
    assert holdout_auc > 0.8
    assert post_auc < holdout_auc - 0.2

    online = _prequential_scores(data.features[concept.post], post_labels, data.feature_names)
    last = slice(len(post_labels) // 2, None)
    assert post_labels[last].sum() > 100
    online_auc, frozen_auc = (
        roc_auc(post_labels[last], online[last]),
        roc_auc(post_labels[last], frozen[last]),
    )
    assert online_auc > frozen_auc + 0.15, (online_auc, frozen_auc)


def test_concept_drift_changes_the_fraud_pattern(concept: _Split) -> None:
    """Bursts that start after the drift follow the new mix; older bursts fade out."""
    before = _drift_ms(concept.stream, DRIFT_S)
    late = before + 200_000
    kinds_before = {t.fraud_kind for t in concept.stream if t.is_fraud and _time(t) < before}
    kinds_late = [t.fraud_kind for t in concept.stream if t.is_fraud and _time(t) >= late]
    assert not kinds_before & {"local_spree"}
    new = sum(kind in CONCEPT_FRAUD_MIX for kind in kinds_late) / len(kinds_late)
    assert new > 0.95
