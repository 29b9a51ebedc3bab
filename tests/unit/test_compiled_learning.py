"""The compiled learning step learns exactly what river learns: same floats, same pickle."""

from __future__ import annotations

import pickle
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore.model.challenger import dump_snapshot, load_snapshot, new_learner
from streamscore.model.compiled_learning import compile_learner
from tests.unit.test_challenger import FEATURE_VALUES, NAMES, feature_value


def _examples(count: int, seed: int, fraud_rate: float = 0.2) -> list[tuple[list[float], bool]]:
    rng = random.Random(seed)
    return [
        ([feature_value(n, rng) for n in NAMES], rng.random() < fraud_rate) for _ in range(count)
    ]


def _river_learns(model: object, examples: list[tuple[list[float], bool]]) -> None:
    for vector, is_fraud in examples:
        model.learn_one(dict(zip(NAMES, vector)), is_fraud)  # type: ignore[attr-defined]


def _state(model: object) -> tuple[object, ...]:
    """Everything learning changes, with the dicts' orders, as river keeps it."""
    steps = list(model.steps.values())  # type: ignore[attr-defined]
    scaler, regression = steps[1], steps[2]
    return (
        list(scaler.counts.items()),
        list(scaler.means.items()),
        list(scaler.vars.items()),
        list(regression._weights.to_dict().items()),
        regression.intercept,
        regression.optimizer.n_iterations,
    )


def _compiled_learns(model: object, examples: list[tuple[list[float], bool]]) -> object:
    learner = compile_learner(model, NAMES)
    assert learner is not None
    for vector, is_fraud in examples:
        learner.learn_one(vector, is_fraud)
    return learner.model()


def test_a_fresh_learner_learns_the_same_floats_and_pickle_as_river() -> None:
    for count, seed in ((1, 1), (2, 2), (300, 3), (3_000, 4)):
        examples = _examples(count, seed)
        expected, compiled = new_learner(), new_learner()
        _river_learns(expected, examples)
        compiled = _compiled_learns(compiled, examples)
        assert _state(compiled) == _state(expected)
        assert pickle.dumps(compiled) == pickle.dumps(expected)
        assert dump_snapshot(compiled) == dump_snapshot(expected)


def test_a_restored_snapshot_goes_on_learning_like_river() -> None:
    first, then = _examples(500, 5), _examples(700, 6, fraud_rate=0.01)
    model = new_learner()
    _river_learns(model, first)
    expected = load_snapshot(dump_snapshot(model))
    _river_learns(expected, then)
    # The learner operator's path: compile a restored snapshot, learn, snapshot, compile again.
    restored = load_snapshot(dump_snapshot(model))
    middle = load_snapshot(dump_snapshot(_compiled_learns(restored, then[:300])))
    compiled = _compiled_learns(middle, then[300:])
    assert _state(compiled) == _state(expected)
    assert pickle.dumps(compiled) == pickle.dumps(expected)


def test_scores_after_compiled_learning_match_river() -> None:
    examples = _examples(1_000, 7)
    expected = new_learner()
    _river_learns(expected, examples)
    compiled = _compiled_learns(new_learner(), examples)
    for vector, _ in _examples(200, 8):
        x = dict(zip(NAMES, vector))
        assert compiled.predict_proba_one(x) == expected.predict_proba_one(x)  # type: ignore[attr-defined]


EXAMPLES = st.lists(
    st.tuples(st.lists(FEATURE_VALUES, min_size=len(NAMES), max_size=len(NAMES)), st.booleans()),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(EXAMPLES)
def test_any_examples_are_learned_like_river(examples: list[tuple[list[float], bool]]) -> None:
    """Extreme values too: huge raw scores (the loss's exp branches), zero variances."""
    expected = new_learner()
    _river_learns(expected, examples)
    compiled = _compiled_learns(new_learner(), examples)
    assert _state(compiled) == _state(expected)


def _clipped_learner() -> object:
    """``new_learner``'s pipeline with a gradient clip the loss reaches both ways, and other
    constant rates and class weights."""
    from river import compose, linear_model, optim, preprocessing

    from streamscore.model.challenger import prepare

    return (
        compose.FuncTransformer(prepare)
        | preprocessing.StandardScaler()
        | linear_model.LogisticRegression(
            optimizer=optim.SGD(0.05),
            loss=optim.losses.Log(weight_pos=3.0, weight_neg=0.5),
            intercept_lr=0.02,
            clip_gradient=0.3,
        )
    )


def test_a_clipped_gradient_and_other_rates_are_learned_like_river() -> None:
    examples = _examples(2_000, 9, fraud_rate=0.5)
    expected = _clipped_learner()
    _river_learns(expected, examples)
    compiled = _compiled_learns(_clipped_learner(), examples)
    assert _state(compiled) == _state(expected)
    assert pickle.dumps(compiled) == pickle.dumps(expected)


def test_other_models_and_settings_are_left_to_river() -> None:
    from river import linear_model, optim

    assert compile_learner(linear_model.LogisticRegression(), NAMES) is None
    adam = new_learner()
    list(adam.steps.values())[2].optimizer = optim.Adam()
    assert compile_learner(adam, NAMES) is None
    penalised = new_learner()
    list(penalised.steps.values())[2].l2 = 0.1
    assert compile_learner(penalised, NAMES) is None
    # A model that saw examples with other columns (another feature set) is river's too.
    other = new_learner()
    other.learn_one({"amount": 3.0}, True)
    assert compile_learner(other, NAMES) is None
