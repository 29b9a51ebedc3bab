"""The hand-written prediction encoder writes exactly fastavro's bytes, and stays fast."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore.job.prediction_codec import PredictionEncoder
from streamscore.resources import schema
from streamscore.serde import Codec

CODEC = Codec("prediction")
ENCODER = PredictionEncoder(schema("prediction"))
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


def test_a_changed_schema_is_refused_when_the_encoder_is_built() -> None:
    import pytest

    changed = {**schema("prediction")}  # a copy: schema() hands out a shared dict
    changed["fields"] = [*changed["fields"], {"name": "extra", "type": "string"}]
    with pytest.raises(ValueError, match="schema changed"):
        PredictionEncoder(changed)
