import random

import pytest

from streamscore.generator import TransactionGenerator
from streamscore.produce import MALFORMED_KINDS, malform
from streamscore.resources import schema
from streamscore.serde import Codec, without_logical_types
from streamscore.validation import Rejection, validate_event

PREDICTION = {
    "event_id": "e1",
    "user_id": "u1",
    "event_time": 1_767_225_600_123,
    "score": 0.25,
    "decision": "REVIEW",
    "model_version": "fraud-lgbm-1",
    "feature_set_version": "fs-v1",
    "degraded": ["redis"],
    "ingest_time": 1_767_225_600_200,
    "scored_time": 1_767_225_600_210,
    "amount": 42.5,
    "arm": "candidate",
    "challenger_score": 0.125,
    "challenger_version": "river-lr-000100",
}
DEAD_LETTER = {
    "reason": "late",
    "detail": "x",
    "source_topic": "events",
    "source_partition": 3,
    "source_offset": 42,
    "original": b"\x00\x01",
    "dead_letter_time": 1_767_225_600_000,
}
LABEL = {"event_id": "e1", "user_id": "u1", "is_fraud": True, "label_time": 1_767_225_600_000}


@pytest.mark.parametrize(
    "name,record",
    [
        ("prediction", PREDICTION),
        ("dead_letter", DEAD_LETTER),
        ("label", LABEL),
    ],
)
def test_round_trip(name: str, record: dict) -> None:
    for codec in (Codec(name), Codec(name, schema(name))):
        assert codec.decode(codec.encode(record)) == record


def test_generated_events_round_trip_with_millis_as_ints() -> None:
    codec = Codec("event")
    for tx in TransactionGenerator().take(200):
        decoded = codec.decode(codec.encode(tx.event))
        assert decoded == tx.event
        assert isinstance(decoded["event_time"], int)


def test_trailing_bytes_are_rejected() -> None:
    codec = Codec("label")
    with pytest.raises(ValueError, match="trailing"):
        codec.decode(codec.encode(LABEL) + b"\x00")


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("negative_amount", "invalid:amount"),
        ("bad_currency", "invalid:currency"),
        ("empty_user", "invalid:user_id"),
    ],
)
def test_malformed_records_are_rejected_with_their_reason(kind: str, reason: str) -> None:
    codec = Codec("event")
    event = TransactionGenerator().take(1)[0].event
    decoded = codec.decode(malform(codec, event, kind, random.Random(0)))
    with pytest.raises(Rejection) as info:
        validate_event(decoded)
    assert info.value.reason == reason


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_undecodable_records_fail_to_decode(kind: str) -> None:
    codec = Codec("event")
    event = TransactionGenerator().take(1)[0].event
    failures = 0
    for seed in range(50):
        try:
            validate_event(codec.decode(malform(codec, event, kind, random.Random(seed))))
        except Exception:
            failures += 1
    assert failures == 50


def test_every_malformed_kind_is_known() -> None:
    assert set(MALFORMED_KINDS) == {
        "garbage",
        "truncated",
        "negative_amount",
        "bad_currency",
        "empty_user",
    }


# The prediction schema as it was before the fields for the ML loop were added (commit 5c08af8).
PREDICTION_V1_FIELDS = (
    "event_id", "user_id", "event_time", "score", "decision", "model_version",
    "feature_set_version", "degraded", "ingest_time", "scored_time",
)  # fmt: skip
PREDICTION_V1 = {
    "type": "record",
    "name": "Prediction",
    "namespace": "streamscore.v1",
    "fields": [f for f in schema("prediction")["fields"] if f["name"] in PREDICTION_V1_FIELDS],
}


def test_old_readers_read_new_predictions() -> None:
    """A consumer still on the old schema reads today's records (schema resolution skips the
    added fields)."""
    import io

    import fastavro

    payload = Codec("prediction").encode(PREDICTION)
    old = fastavro.parse_schema(without_logical_types(PREDICTION_V1))
    new = fastavro.parse_schema(without_logical_types(schema("prediction")))
    record = fastavro.schemaless_reader(io.BytesIO(payload), new, old)
    assert record == {k: v for k, v in PREDICTION.items() if k in PREDICTION_V1_FIELDS}


def test_new_readers_read_old_predictions_with_defaults() -> None:
    import io

    import fastavro

    old = fastavro.parse_schema(without_logical_types(PREDICTION_V1))
    buf = io.BytesIO()
    v1 = {k: v for k, v in PREDICTION.items() if k in PREDICTION_V1_FIELDS}
    fastavro.schemaless_writer(buf, old, v1)
    new = fastavro.parse_schema(without_logical_types(schema("prediction")))
    record = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), old, new)
    assert record == {
        **v1,
        "amount": None,
        "arm": "champion",
        "challenger_score": None,
        "challenger_version": None,
    }
