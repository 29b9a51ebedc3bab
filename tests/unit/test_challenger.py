"""The compiled challenger scores exactly as river does: the same float, on trained snapshots."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore.features.definitions import FEATURE_SET
from streamscore.model.challenger import (
    ShadowScorer,
    compile_snapshot,
    dump_snapshot,
    load_snapshot,
    new_learner,
)

NAMES = FEATURE_SET.feature_names
CATEGORY_SIZES = {c.field: len(c.vocabulary) for c in FEATURE_SET.categorical}


def feature_value(name: str, rng: random.Random) -> float:
    """A random value for feature ``name``, edge cases included (also used by
    test_compiled_learning)."""
    size = CATEGORY_SIZES.get(name)
    if size is not None:
        return float(rng.randrange(-1, size + 1))  # known codes, the unknown code, a stray one
    if rng.random() < 0.1:
        return -1.0  # the "no history" sentinel
    return rng.choice([0.0, rng.random(), rng.expovariate(0.01), float(rng.randrange(50))])


def _vectors(count: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    return [[feature_value(name, rng) for name in NAMES] for _ in range(count)]


def _river_score(model: object, vector: list[float]) -> float:
    proba = model.predict_proba_one(dict(zip(NAMES, vector)))  # type: ignore[attr-defined]
    return float(proba.get(True, 0.0))


def _trained(labels: int, seed: int) -> object:
    model = new_learner()
    rng = random.Random(seed)
    for vector in _vectors(labels, seed):
        model.learn_one(dict(zip(NAMES, vector)), rng.random() < 0.2)
    # What the scorers get: a snapshot from the control topic.
    return load_snapshot(dump_snapshot(model))


def test_an_untrained_snapshot_scores_its_intercept_like_river() -> None:
    model = load_snapshot(dump_snapshot(new_learner()))
    compiled = compile_snapshot(model, NAMES)
    assert compiled is not None
    for vector in _vectors(50, seed=1):
        assert compiled.score(vector) == _river_score(model, vector)


def test_trained_snapshots_score_the_same_float_as_river() -> None:
    for labels, seed in ((1, 2), (40, 3), (2_000, 4)):
        model = _trained(labels, seed)
        compiled = compile_snapshot(model, NAMES)
        assert compiled is not None
        for vector in _vectors(500, seed=seed + 100):
            assert compiled.score(vector) == _river_score(model, vector)


MODEL = _trained(500, seed=7)
COMPILED = compile_snapshot(MODEL, NAMES)
FEATURE_VALUES = st.one_of(
    st.floats(min_value=-1e6, max_value=1e9, allow_nan=False),
    st.sampled_from([-1.0, 0.0, 1.0, 2.0, 3.0]),
)


@settings(max_examples=500, derandomize=True, database=None, deadline=None)
@given(st.lists(FEATURE_VALUES, min_size=len(NAMES), max_size=len(NAMES)))
def test_any_vector_scores_the_same_float_as_river(vector: list[float]) -> None:
    assert COMPILED is not None
    assert COMPILED.score(vector) == _river_score(MODEL, vector)


def test_other_models_are_left_to_river() -> None:
    from river import linear_model

    model = linear_model.LogisticRegression()
    assert compile_snapshot(model, NAMES) is None
    scorer = ShadowScorer("other", model, NAMES)
    assert scorer.score([0.0] * len(NAMES)) == 0.5


def test_the_shadow_scorer_uses_the_compiled_form() -> None:
    scorer = ShadowScorer("river-logistic-000000500", MODEL, NAMES)
    vector = _vectors(1, seed=9)[0]
    assert scorer._compiled is not None
    assert scorer.score(vector) == _river_score(MODEL, vector)
