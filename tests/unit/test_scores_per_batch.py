"""The scoring operator scores a batch's events in one model call (``scoring_scores_per_batch``,
``job/scoring.py``, ``_score_unscored``) and does exactly what scoring each event as it is read
did: the same predictions, outcomes, dead letters, label counters and state, with a champion
and a candidate in canary.

What could differ, and is covered by the records of ``test_timer_summary._records`` in batches of
25: a label read after its event in the same batch (its event must be scored and pending first,
not the label parked), a user with several events in one batch (each must see the features the
one before updated, a new user's state too), labels read before their events, and the timers and
write-outs between batches. The operator runs outside Flink on the fakes of
``bench/operator_cost.py`` with real LightGBM models."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamscore.generator import GeneratorConfig
from streamscore.model.control import Assignment
from streamscore.model.loading import ModelBundle
from streamscore.model.train import TrainConfig, train_from_generator
from tests.unit.test_timer_summary import _records, _run


def _model(directory: Path, seed: int, version_suffix: str) -> ModelBundle:
    """A small model; versions are named by the second they were trained in, hence the
    suffix that tells the two apart."""
    train_from_generator(
        directory,
        TrainConfig(events=8_000, num_boost_round=20),
        GeneratorConfig(users=200, seed=seed),
    )
    trained = ModelBundle.load(directory)
    return ModelBundle(trained.version + version_suffix, trained.model_text, trained.metadata)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelBundle, ModelBundle]:
    return (
        _model(tmp_path_factory.mktemp("champion"), 5, "-champion"),
        _model(tmp_path_factory.mktemp("candidate"), 6, "-candidate"),
    )


def test_scores_per_batch_do_what_scoring_each_event_did(
    models: tuple[ModelBundle, ModelBundle],
) -> None:
    champion, candidate = models
    assignment = Assignment(champion, candidate, 40, "canary-test", "test")
    records = _records(seed=17, events=3_000)
    runs = {
        per_batch: _run(
            records,
            walk_always=False,
            overrides={"scoring_scores_per_batch": per_batch},
            model=champion,
            assignment=assignment,
        )
        for per_batch in (True, False)
    }
    together, alone = runs[True], runs[False]
    assert together["outputs"] == alone["outputs"]
    assert together["labels"] == alone["labels"]
    assert together["map"] == alone["map"]
    assert together["values"] == alone["values"]
    # Both models scored (the candidate for its 40 % of users), and the labels were joined,
    # parked and refused as the records ask: a comparison of runs that did none of it would
    # prove nothing.
    predictions = [value for (topic, _, value) in together["outputs"] if topic == "predictions"]
    assert len(predictions) > 2_500
    for version in (champion.version, candidate.version):
        assert sum(version in value for value in predictions) > 500, version
    for outcome in ("joined", "parked", "label:duplicate", "label:unknown_event"):
        assert together["labels"].get(outcome, 0) > 0, outcome
