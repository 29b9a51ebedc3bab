"""The topology's floor (job/floor.py) does the work each level claims and no less: each valid
event answered with a prediction naming it, each label read and dropped, each bad record a dead
letter with its reason; from ``features`` on the user's windows folded in, at ``score`` the
champion's score and decision on them. A level that skipped a step would measure less than it
says."""

from __future__ import annotations

from typing import Any

import pytest

from streamscore.config import Settings
from streamscore.features.engine import FeatureEngine
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.job.batches import pack_records, unpack_outputs
from streamscore.job.floor import FLOOR_MODEL_VERSION, FLOOR_SCORE, FloorOperator
from streamscore.model.decisions import CostModel
from streamscore.model.scorer import Scorer
from streamscore.resources import RECORD_TYPES, schema
from streamscore.serde import Codec
from tests.unit.test_control import CHAMPION

S = Settings().with_overrides({"metrics_port": 0})
EVENTS, LABELS = Codec("event"), Codec("label")


def _operator(level: str) -> FloorOperator:
    return FloorOperator(S, {name: schema(name) for name in RECORD_TYPES}, CHAMPION, level)


def _events(n: int) -> list[dict[str, Any]]:
    """Events of three users, several each, so that their windows have history."""
    generator = TransactionGenerator(GeneratorConfig(users=3, seed=4))
    return [next(generator).event for _ in range(n)]


def _batch(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each event and a label of it, as the JVM's batcher hands them over."""
    batch: list[tuple[Any, ...]] = []
    for i, event in enumerate(events):
        user, t = event["user_id"], event["event_time"]
        batch.append((user, EVENTS.encode(event), S.topic_events, 0, i, t))
        label = {"event_id": event["event_id"], "user_id": user, "is_fraud": False,
                 "label_time": t + 1_000}  # fmt: skip
        batch.append((user, LABELS.encode(label), S.topic_labels, 0, i, t + 1_000))
    return batch


def _outputs(operator: FloorOperator, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    packed = operator.process_batch(pack_records(batch), None)
    assert len(packed) == 1
    return unpack_outputs(packed[0])


def test_each_event_gets_a_prediction_each_label_is_read_each_bad_record_a_dead_letter() -> None:
    operator = _operator("decode")
    sent = _events(6)
    batch = _batch(sent)
    # Three ways to break the contract: not Avro, a key that is not the event's user, a Kafka
    # timestamp that is not its event time; and a label that is not Avro.
    first = sent[0]
    batch.append(("u-x", b"\x00\xff", S.topic_events, 1, 100, 5))
    batch.append(("u-other", EVENTS.encode(first), S.topic_events, 1, 101, first["event_time"]))
    batch.append((first["user_id"], EVENTS.encode(first), S.topic_events, 1, 102, 7))
    batch.append(("u-x", b"\x02", S.topic_labels, 1, 103, 8))

    outputs = _outputs(operator, batch)

    predictions = [o for o in outputs if o[0] == S.topic_predictions]
    dead = [o for o in outputs if o[0] == S.topic_dead_letters]
    assert len(outputs) == len(predictions) + len(dead)
    decoded = [Codec("prediction").decode(value) for _, _, value in predictions]
    assert [p["event_id"] for p in decoded] == [e["event_id"] for e in sent]
    for prediction, event, (_, key, _) in zip(decoded, sent, predictions, strict=True):
        assert key == event["user_id"].encode()
        assert prediction["model_version"] == FLOOR_MODEL_VERSION
        assert prediction["score"] == FLOOR_SCORE
        assert prediction["ingest_time"] == event["event_time"]
        assert prediction["amount"] == event["amount"]
    reasons = [Codec("dead_letter").decode(value)["reason"] for _, _, value in dead]
    assert reasons == ["decode_error", "key_mismatch", "timestamp_mismatch", "label:decode_error"]
    assert operator.labels_read == 6


def test_the_features_level_folds_each_event_into_its_users_windows() -> None:
    operator = _operator("features")
    sent = _events(30)
    outputs = _outputs(operator, _batch(sent))
    assert [Codec("prediction").decode(v)["score"] for _, _, v in outputs] == [FLOOR_SCORE] * 30
    engine = FeatureEngine()
    offline = {user: engine.new_state() for user in {e["user_id"] for e in sent}}
    for event in sent:
        engine.update(offline[event["user_id"]], event)
    assert set(operator._users) == set(offline)
    for user, state in offline.items():
        assert operator._users[user].newest == state.newest


def test_the_score_level_scores_the_users_features_with_the_champion() -> None:
    operator = _operator("score")
    sent = _events(30)
    outputs = _outputs(operator, _batch(sent))
    predictions = [Codec("prediction").decode(v) for _, _, v in outputs]
    engine, champion, costs = FeatureEngine(), Scorer(CHAMPION), CostModel.from_settings(S)
    states = {user: engine.new_state() for user in {e["user_id"] for e in sent}}
    for prediction, event in zip(predictions, sent, strict=True):
        score, version, _ = champion.score(engine.update(states[event["user_id"]], event))
        assert prediction["score"] == pytest.approx(score, abs=1e-12)
        assert prediction["model_version"] == version == CHAMPION.version
        assert prediction["decision"] == costs.decide(score, event["amount"])
    assert len({p["score"] for p in predictions}) > 1  # the windows moved the scores


def test_a_barrier_timers_and_control_records_produce_nothing() -> None:
    operator = _operator("decode")
    assert operator.process_batch(b"", None) == []
    assert operator.on_timer("u-1", 10, None) == []
    assert operator.read_control(b"\x00", "control", 0, 0) == ([], None)


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="no floor level"):
        _operator("everything")
