"""Training builds a point-in-time set with the job's engine; the scorer matches LightGBM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamscore.features.definitions import FEATURE_SET
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.model.dataset import build_training_set, replay_features
from streamscore.model.loading import ModelBundle
from streamscore.model.registry import ModelNotFound, list_versions, resolve
from streamscore.model.scorer import FALLBACK_VERSION, MATRIX_FROM_ROWS, Scorer, Thresholds
from streamscore.model.train import TrainConfig, roc_auc, train_from_generator


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    train_from_generator(
        models, TrainConfig(events=30_000, num_boost_round=40), GeneratorConfig(users=300, seed=3)
    )
    return models


def test_model_directory_has_versioned_metadata(model_dir: Path) -> None:
    versions = list_versions(model_dir)
    assert len(versions) == 1
    meta = json.loads((model_dir / versions[0] / "metadata.json").read_text())
    assert meta["version"] == versions[0]
    assert meta["feature_names"] == list(FEATURE_SET.feature_names)
    assert meta["feature_set_version"] == FEATURE_SET.version
    assert (
        meta["training_data"]["event_time_min"] < meta["training_data"]["holdout_from_event_time"]
    )
    assert {"lightgbm", "numpy", "python"} <= set(meta["libraries"])
    # The generator's fraud is hard to separate on purpose (holdout AUC ≈ 0.91 at full size):
    # this small set must still clearly learn it.
    assert meta["metrics"]["auc"] > 0.8
    assert 0 <= meta["metrics"]["decline"]["precision"] <= 1


def test_registry_resolves_latest_and_refuses_unknown(model_dir: Path, tmp_path: Path) -> None:
    assert resolve(model_dir).version == list_versions(model_dir)[-1]
    with pytest.raises(ModelNotFound):
        resolve(model_dir, "fraud-lgbm-19990101000000")
    with pytest.raises(ModelNotFound):
        resolve(tmp_path)


def test_fast_single_row_scores_equal_batch_predict(model_dir: Path) -> None:
    scorer = Scorer(ModelBundle.load(model_dir))
    pairs = list(
        replay_features(
            t.event for t in TransactionGenerator(GeneratorConfig(users=100, seed=11)).take(2000)
        )
    )
    rows = [vector for _, vector in pairs]
    fast = [scorer.score(v) for v in rows]
    assert all(version == scorer.model_version != FALLBACK_VERSION for _, version, _ in fast)
    booster = scorer._booster
    assert booster is not None
    # LightGBM's own Python API, for reference: the same scores up to its float handling.
    reference = booster._booster.predict(np.asarray(rows, dtype=np.float64))
    np.testing.assert_allclose([s for s, _, _ in fast], reference, rtol=0, atol=1e-12)
    # The job's many-row path: bit for bit the single-row scores, whatever the batch's size
    # (under MATRIX_FROM_ROWS one row at a time, from it in one matrix call, growing its buffer).
    for size in (1, MATRIX_FROM_ROWS - 1, MATRIX_FROM_ROWS, 333, len(rows)):
        many = [
            s for i in range(0, len(rows), size) for s in booster.predict_rows(rows[i : i + size])
        ]
        assert many == [s for s, _, _ in fast], size
    assert scorer.score_many(rows[:50]) == fast[:50]


def test_score_many_falls_back_only_for_rows_the_model_cannot_score(model_dir: Path) -> None:
    """A failed matrix call is retried row by row: a row the model cannot score falls back
    alone, as ``score`` does it, and the others keep the model's scores."""
    scorer = Scorer(ModelBundle.load(model_dir))
    booster = scorer._booster
    assert booster is not None
    width = len(FEATURE_SET.feature_names)
    rows = [[float(i % 7)] * width for i in range(20)]
    rows[3] = [0.0] * (width - 1)  # one value short: the row cannot be packed
    expected = [scorer.score(row) for row in rows]
    assert [fell_back for _, _, fell_back in expected] == [i == 3 for i in range(20)]
    assert scorer.score_many(rows) == expected


def test_model_for_another_feature_set_falls_back(model_dir: Path) -> None:
    bundle = ModelBundle.load(model_dir)
    stale = ModelBundle(
        bundle.version, bundle.model_text, {**bundle.metadata, "feature_set_version": "fs-v0"}
    )
    score, version, fell_back = Scorer(stale).score([0.0] * len(FEATURE_SET.feature_names))
    assert (version, fell_back) == (FALLBACK_VERSION, True)
    assert 0.0 <= score <= 1.0


def test_thresholds_decide() -> None:
    t = Thresholds(review=0.5, decline=0.85)
    assert [t.decide(x) for x in (0.1, 0.5, 0.84, 0.85, 1.0)] == [
        "APPROVE",
        "REVIEW",
        "REVIEW",
        "DECLINE",
        "DECLINE",
    ]


def test_training_rows_are_point_in_time() -> None:
    """The first event of each user has no history; each row ignores its own event."""
    txs = TransactionGenerator(GeneratorConfig(users=50, seed=5)).take(500)
    data = build_training_set((t.event, t.is_fraud) for t in txs)
    names = list(data.feature_names)
    seen: set[str] = set()
    for row, tx in zip(data.features, txs):
        if tx.event["user_id"] not in seen:
            assert row[names.index("secs_since_previous")] == -1.0
            assert row[names.index("amount_count_24h")] == 0.0
            seen.add(tx.event["user_id"])
    assert data.labels.sum() == sum(t.is_fraud for t in txs)


def test_roc_auc_handles_ties() -> None:
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.5, 0.5])) == pytest.approx(0.875)
