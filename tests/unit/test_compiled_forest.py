"""The compiled trees score exactly as LightGBM does, or are not used (model/compiled_forest.py)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore.features.definitions import FEATURE_SET
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.model import compiled_forest
from streamscore.model.compiled_forest import CompiledForest, compile_checked, probe_rows
from streamscore.model.dataset import replay_features
from streamscore.model.loading import ModelBundle
from streamscore.model.scorer import MATRIX_FROM_ROWS, FastBooster
from streamscore.model.train import TrainConfig, train_from_generator

N = len(FEATURE_SET.feature_names)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    models: Path = tmp_path_factory.mktemp("models")
    train_from_generator(
        models, TrainConfig(events=30_000, num_boost_round=60), GeneratorConfig(users=300, seed=5)
    )
    return ModelBundle.load(models)


@pytest.fixture(scope="module")
def lightgbm(bundle: ModelBundle) -> FastBooster:
    return FastBooster(bundle.model_text, N)


@pytest.fixture(scope="module")
def forest(bundle: ModelBundle) -> CompiledForest:
    return CompiledForest(bundle.model_text)


@pytest.fixture(scope="module")
def real_rows() -> list[list[float]]:
    events = (t.event for t in TransactionGenerator(GeneratorConfig(users=200, seed=9)).take(3000))
    return [list(vector) for _, vector in replay_features(events)]


def _thresholds(model_text: str) -> list[tuple[int, float]]:
    pairs: list[tuple[int, float]] = []
    features: list[int] = []
    for line in model_text.splitlines():
        if line.startswith("split_feature="):
            features = [int(t) for t in line.split("=", 1)[1].split()]
        elif line.startswith("threshold="):
            pairs += zip(features, (float(t) for t in line.split("=", 1)[1].split()), strict=True)
    return pairs


def test_probe_rows_hold_every_threshold_and_the_doubles_beside_it(bundle: ModelBundle) -> None:
    rows = probe_rows(bundle.model_text, N, count=10)
    seen = [{repr(row[f]) for row in rows} for f in range(N)]
    thresholds = _thresholds(bundle.model_text)
    assert len(thresholds) > 100
    for feature, threshold in thresholds:
        for value in (threshold, math.nextafter(threshold, math.inf),
                      math.nextafter(threshold, -math.inf)):  # fmt: skip
            assert repr(value) in seen[feature], (feature, value)
    assert all({"nan", "-0.0", "inf", "-inf"} <= values for values in seen)
    # The same rows each time (compared by repr: NaN is not equal to itself).
    assert [repr(r) for r in probe_rows(bundle.model_text, N, 10)] == [repr(r) for r in rows]


def test_compiled_scores_equal_lightgbms_to_the_bit(
    bundle: ModelBundle, lightgbm: FastBooster, forest: CompiledForest, real_rows: list[list[float]]
) -> None:
    probes = probe_rows(bundle.model_text, N, seed=3)
    for rows in (probes, real_rows):
        assert forest.predict(rows) == lightgbm.predict_rows(rows)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_compiled_scores_equal_lightgbms_on_any_rows(
    data: st.DataObject, bundle: ModelBundle, lightgbm: FastBooster, forest: CompiledForest
) -> None:
    near = [v for _, t in _thresholds(bundle.model_text)[:400]
            for v in (t, math.nextafter(t, math.inf))]  # fmt: skip
    value = st.one_of(st.floats(), st.sampled_from(near), st.integers(-3, 40).map(float))
    rows = data.draw(st.lists(st.lists(value, min_size=N, max_size=N), min_size=1, max_size=20))
    got, expected = forest.predict(rows), lightgbm.predict_rows(rows)
    assert [repr(x) for x in got] == [repr(x) for x in expected]


def test_a_compile_that_scores_differently_is_not_used(
    bundle: ModelBundle, lightgbm: FastBooster, caplog: pytest.LogCaptureFixture
) -> None:
    def off_by_one_ulp(rows: list[list[float]]) -> list[float]:
        scores = lightgbm.predict_rows(rows)
        scores[7] = math.nextafter(scores[7], 2.0)
        return scores

    with caplog.at_level(logging.WARNING, logger=compiled_forest.__name__):
        assert compile_checked(bundle.model_text, N, off_by_one_ulp) is None
    assert "1 of" in caplog.text and "LightGBM scores it" in caplog.text
    assert compile_checked(bundle.model_text, N, lightgbm.predict_rows) is not None


def _wait_compiled(booster: FastBooster) -> bool:
    deadline = time.monotonic() + 120
    while not booster.compiled and time.monotonic() < deadline:
        time.sleep(0.05)
    return booster.compiled


def test_the_booster_moves_to_the_compiled_trees_with_the_same_scores(
    bundle: ModelBundle, lightgbm: FastBooster, real_rows: list[list[float]]
) -> None:
    booster = FastBooster(bundle.model_text, N, compile_trees=True)
    assert _wait_compiled(booster)
    assert booster.predict_rows(real_rows) == lightgbm.predict_rows(real_rows)
    few = real_rows[: MATRIX_FROM_ROWS - 1]
    assert booster.predict_rows(few) == lightgbm.predict_rows(few)
    assert [booster.predict_one(row) for row in few] == [lightgbm.predict_one(r) for r in few]


def test_a_failed_compile_leaves_lightgbm_scoring(
    bundle: ModelBundle,
    lightgbm: FastBooster,
    real_rows: list[list[float]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(model_text: str) -> CompiledForest:
        raise RuntimeError("no LLVM here")

    monkeypatch.setattr(compiled_forest, "CompiledForest", broken)
    with caplog.at_level(logging.WARNING, logger=compiled_forest.__name__):
        booster = FastBooster(bundle.model_text, N, compile_trees=True)
        booster._compiling.join(timeout=60)  # type: ignore[attr-defined]
    assert not booster.compiled
    assert "model not compiled" in caplog.text
    assert booster.predict_rows(real_rows) == lightgbm.predict_rows(real_rows)
