"""The hand-written prediction and outcome encoders write exactly fastavro's bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore.job.avro_encoders import OutcomeEncoder, PredictionEncoder
from streamscore.resources import schema
from streamscore.serde import Codec

CODEC = Codec("prediction")
ENCODER = PredictionEncoder(schema("prediction"))
OUTCOME_CODEC = Codec("outcome")
OUTCOME_ENCODER = OutcomeEncoder(schema("outcome"))
TEXT = st.text(max_size=40)
LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
DOUBLES = st.floats(allow_nan=False)

PREDICTIONS = st.fixed_dictionaries(
    {
        "event_id": TEXT,
        "user_id": TEXT,
        "event_time": LONGS,
        "score": DOUBLES,
        "decision": st.sampled_from(["APPROVE", "REVIEW", "DECLINE"]),
        "model_version": TEXT,
        "feature_set_version": TEXT,
        "degraded": st.lists(st.sampled_from(["model", "redis", "ünïcode"]), max_size=3),
        "ingest_time": LONGS,
        "scored_time": LONGS,
        "amount": st.none() | DOUBLES,
        "arm": st.sampled_from(["champion", "candidate"]),
        "challenger_score": st.none() | DOUBLES,
        "challenger_version": st.none() | TEXT,
    }
)


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(PREDICTIONS)
def test_the_bytes_are_fastavros(prediction: dict[str, Any]) -> None:
    assert ENCODER.encode(**prediction) == CODEC.encode(prediction)


INTS = st.integers(min_value=-(2**31), max_value=2**31 - 1)
OUTCOMES = st.fixed_dictionaries(
    {
        "event_id": TEXT,
        "user_id": TEXT,
        "event_time": LONGS,
        "label_time": LONGS,
        "is_fraud": st.booleans(),
        "amount": DOUBLES,
        "score": DOUBLES,
        "decision": st.sampled_from(["APPROVE", "REVIEW", "DECLINE"]),
        "model_version": TEXT,
        "arm": st.sampled_from(["champion", "candidate"]),
        "canary_percent": INTS,
        "champion_score": st.none() | DOUBLES,
        "challenger_score": st.none() | DOUBLES,
        "challenger_version": st.none() | TEXT,
        "feature_set_version": TEXT,
        "features": st.lists(DOUBLES, max_size=40),
    }
)


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(OUTCOMES)
def test_the_outcome_bytes_are_fastavros(outcome: dict[str, Any]) -> None:
    encoded = OUTCOME_ENCODER.encode(**outcome)
    assert encoded == OUTCOME_CODEC.encode(outcome)
    assert OUTCOME_CODEC.decode(encoded) == outcome


@pytest.mark.parametrize(
    ("name", "encoder"), [("prediction", PredictionEncoder), ("outcome", OutcomeEncoder)]
)
def test_a_changed_schema_is_refused_when_the_encoder_is_built(name: str, encoder: type) -> None:
    changed = {**schema(name)}  # a copy: schema() hands out a shared dict
    changed["fields"] = [*changed["fields"], {"name": "extra", "type": "string"}]
    with pytest.raises(ValueError, match="schema changed"):
        encoder(changed)
