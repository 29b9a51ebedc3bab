"""The hand-written prediction and outcome encoders write exactly fastavro's bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore.job import records
from streamscore.job.avro_decoders import EventDecoder, LabelDecoder, OutcomeDecoder
from streamscore.job.avro_encoders import OutcomeEncoder, PredictionEncoder
from streamscore.job.state import ParkedLabel, PendingOutcome, pack
from streamscore.resources import schema
from streamscore.serde import Codec

CODEC = Codec("prediction")
ENCODER = PredictionEncoder(schema("prediction"))
OUTCOME_CODEC = Codec("outcome")
OUTCOME_ENCODER = OutcomeEncoder(schema("outcome"))
OUTCOME_DECODER = OutcomeDecoder(schema("outcome"))
TEXT = st.text(max_size=40)
LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
DOUBLES = st.floats(allow_nan=False)


def _predictions(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "event_id": text,
            "user_id": text,
            "event_time": LONGS,
            "score": DOUBLES,
            "decision": st.sampled_from(["APPROVE", "REVIEW", "DECLINE"]),
            "model_version": text,
            "feature_set_version": text,
            "degraded": st.lists(st.sampled_from(["model", "redis", "ünïcode"]), max_size=3),
            "ingest_time": LONGS,
            "scored_time": LONGS,
            "amount": st.none() | DOUBLES,
            "arm": st.sampled_from(["champion", "candidate"]),
            "challenger_score": st.none() | DOUBLES,
            "challenger_version": st.none() | text,
        }
    )


PREDICTIONS = _predictions(TEXT)


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(PREDICTIONS)
def test_the_bytes_are_fastavros(prediction: dict[str, Any]) -> None:
    assert ENCODER.encode(**prediction) == CODEC.encode(prediction)


INTS = st.integers(min_value=-(2**31), max_value=2**31 - 1)


def _outcomes(text: st.SearchStrategy[str], max_features: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "event_id": text,
            "user_id": text,
            "event_time": LONGS,
            "label_time": LONGS,
            "is_fraud": st.booleans(),
            "amount": DOUBLES,
            "score": DOUBLES,
            "decision": st.sampled_from(["APPROVE", "REVIEW", "DECLINE"]),
            "model_version": text,
            "arm": st.sampled_from(["champion", "candidate"]),
            "canary_percent": INTS,
            "champion_score": st.none() | DOUBLES,
            "challenger_score": st.none() | DOUBLES,
            "challenger_version": st.none() | text,
            "feature_set_version": text,
            "features": st.lists(DOUBLES, max_size=max_features),
        }
    )


OUTCOMES = _outcomes(TEXT, 40)


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(OUTCOMES)
def test_the_outcome_bytes_are_fastavros(outcome: dict[str, Any]) -> None:
    encoded = OUTCOME_ENCODER.encode(**outcome)
    assert encoded == OUTCOME_CODEC.encode(outcome)
    assert OUTCOME_CODEC.decode(encoded) == outcome


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(
    OUTCOMES.map(
        lambda outcome: {**outcome, "canary_percent": abs(outcome["canary_percent"]) % 101}
    )
)
def test_an_outcome_written_from_its_packed_pending_entry_is_fastavros(
    outcome: dict[str, Any],
) -> None:
    """The label join's stored pending outcome (``state.pack``) written without unpacking it."""
    pending = PendingOutcome(
        outcome["event_time"], outcome["amount"], outcome["features"], outcome["score"],
        outcome["decision"], outcome["model_version"], outcome["arm"], outcome["canary_percent"],
        outcome["champion_score"], outcome["challenger_score"], outcome["challenger_version"],
    )  # fmt: skip
    label = ParkedLabel(outcome["is_fraud"], outcome["label_time"], b"", "labels", 0, 0)
    encoded = records.stored_outcome(
        OUTCOME_ENCODER, outcome["event_id"], outcome["user_id"], pack(pending), label,
        outcome["feature_set_version"],
    )  # fmt: skip
    assert encoded == OUTCOME_CODEC.encode(outcome)


def test_a_packed_outcome_of_the_wrong_length_is_refused() -> None:
    for size in (0, 42, 44, 52):
        with pytest.raises(ValueError, match="packed outcome"):
            OUTCOME_ENCODER.encode_packed(
                "e", "u", 0, False, bytes(size), "v", None, "fs", ("APPROVE",), ("champion",)
            )


# Strings and vectors far past the encoders' first buffer (1 KiB), one record after another
# through one encoder: the buffer grows, and a long record leaves nothing in the next one.
LONG_TEXT = st.text(max_size=3000)


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(
    st.lists(_predictions(LONG_TEXT) | PREDICTIONS, min_size=2, max_size=6),
    st.lists(_outcomes(LONG_TEXT, 400) | OUTCOMES, min_size=2, max_size=6),
)
def test_one_encoder_writes_records_of_any_length_one_after_another(
    predictions: list[dict[str, Any]], outcomes: list[dict[str, Any]]
) -> None:
    encoder, outcome_encoder = (
        PredictionEncoder(schema("prediction")),
        OutcomeEncoder(schema("outcome")),
    )
    for prediction in predictions:
        assert encoder.encode(**prediction) == CODEC.encode(prediction)
    for outcome in outcomes:
        assert outcome_encoder.encode(**outcome) == OUTCOME_CODEC.encode(outcome)


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(OUTCOMES)
def test_the_outcome_decoder_reads_what_fastavro_reads(outcome: dict[str, Any]) -> None:
    decoded = OUTCOME_DECODER.decode(OUTCOME_ENCODER.encode(**outcome))
    assert decoded == outcome
    assert list(decoded) == list(OUTCOME_CODEC.decode(OUTCOME_CODEC.encode(outcome)))  # order


def test_the_outcome_decoder_reads_arrays_in_several_blocks() -> None:
    import struct

    from streamscore.job.avro_encoders import avro_long

    outcome = {
        "event_id": "e", "user_id": "u", "event_time": 1, "label_time": 2, "is_fraud": True,
        "amount": 3.5, "score": 0.25, "decision": "DECLINE", "model_version": "m",
        "arm": "champion", "canary_percent": 0, "champion_score": None,
        "challenger_score": 0.5, "challenger_version": "c", "feature_set_version": "f",
        "features": [],
    }  # fmt: skip
    head = OUTCOME_ENCODER.encode(**outcome)[:-1]  # without the empty array's 0
    # A block of two, then a block of one given with its size in bytes (a negative count).
    blocks = (
        avro_long(2) + struct.pack("<2d", 1.0, 2.0)
        + avro_long(-1) + avro_long(8) + struct.pack("<d", 3.0) + b"\x00"
    )  # fmt: skip
    expected = {**outcome, "features": [1.0, 2.0, 3.0]}
    assert OUTCOME_CODEC.decode(head + blocks) == expected
    assert OUTCOME_DECODER.decode(head + blocks) == expected


@pytest.mark.parametrize(
    "value",
    [0, 1, -1, 63, -64, 64, -65, 8191, -8192, 8192, 1_767_225_600_000, 2**62, -(2**63), 2**63 - 1],
)
def test_a_long_is_encoded_as_fastavro_encodes_it(value: int) -> None:
    """Each varint length's edges, both one-byte ends and a millisecond timestamp."""
    import io

    from fastavro import schemaless_writer

    from streamscore.job.avro_encoders import avro_long

    expected = io.BytesIO()
    schemaless_writer(expected, "long", value)
    assert avro_long(value) == expected.getvalue()


def test_the_outcome_decoder_refuses_a_long_past_64_bits() -> None:
    from streamscore.job.avro_encoders import avro_long

    def varint(n: int) -> bytes:
        out = bytearray()
        while n > 0x7F:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        return bytes(out + bytes([n]))

    record = OUTCOME_ENCODER.encode(**next(iter(_EXAMPLE_OUTCOMES)))
    event_time_at = 2  # after two empty strings
    assert record[:event_time_at] == b"\x00\x00" and record[event_time_at] == 0
    assert varint(2**64 - 1) == avro_long(-(2**63))  # the largest zig-zag long still reads
    longest = record[:event_time_at] + varint(2**64 - 1) + record[event_time_at + 1 :]
    assert OUTCOME_DECODER.decode(longest)["event_time"] == -(2**63)
    with pytest.raises(ValueError, match="longer than a long"):
        OUTCOME_DECODER.decode(record[:event_time_at] + varint(2**64) + record[event_time_at + 1 :])


_EXAMPLE_OUTCOMES = [
    {
        "event_id": "", "user_id": "", "event_time": 0, "label_time": 0, "is_fraud": False,
        "amount": 1.0, "score": 0.5, "decision": "REVIEW", "model_version": "m",
        "arm": "champion", "canary_percent": 0, "champion_score": None,
        "challenger_score": None, "challenger_version": None, "feature_set_version": "f",
        "features": [1.0],
    }
]  # fmt: skip


@settings(max_examples=3000, derandomize=True, database=None, deadline=None)
@given(OUTCOMES, st.data())
def test_the_outcome_decoder_refuses_broken_bytes_with_a_value_error(
    outcome: dict[str, Any], data: st.DataObject
) -> None:
    """Cut, extended or changed bytes: a ValueError, or (where they still make a record) the
    record fastavro reads from them."""
    check_broken_bytes(OUTCOME_DECODER, OUTCOME_CODEC, OUTCOME_ENCODER.encode(**outcome), data)


def check_broken_bytes(decoder: Any, codec: Codec, encoded: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(ValueError):
        decoder.decode(encoded[:cut])
    with pytest.raises(ValueError, match="trailing"):
        decoder.decode(encoded + b"\x00")
    at = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    changed = encoded[:at] + bytes([data.draw(st.integers(0, 255))]) + encoded[at + 1 :]
    try:
        decoded = decoder.decode(changed)
    except ValueError:
        return  # (where fastavro reads what the job refuses: tests/unit/test_fuzz_decode.py)
    assert repr(decoded) == repr(codec.decode(changed))  # NaN, from a changed byte, too


@pytest.mark.parametrize(
    ("name", "encoder"),
    [
        ("prediction", PredictionEncoder),
        ("outcome", OutcomeEncoder),
        ("outcome", OutcomeDecoder),
        ("event", EventDecoder),
        ("label", LabelDecoder),
    ],
)
def test_a_changed_schema_is_refused_when_the_encoder_is_built(name: str, encoder: type) -> None:
    changed = {**schema(name)}  # a copy: schema() hands out a shared dict
    changed["fields"] = [*changed["fields"], {"name": "extra", "type": "string"}]
    with pytest.raises(ValueError, match="schema changed"):
        encoder(changed)


EVENT_CODEC = Codec("event")
EVENT_DECODER = EventDecoder(schema("event"))
LABEL_CODEC = Codec("label")
LABEL_DECODER = LabelDecoder(schema("label"))
EVENTS = st.fixed_dictionaries(
    {
        "event_id": TEXT,
        "user_id": TEXT,
        "event_time": LONGS,
        "amount": DOUBLES,
        "currency": TEXT,
        "merchant_id": TEXT,
        "merchant_category": TEXT,
        "country": TEXT,
        "channel": st.sampled_from(["POS", "ONLINE", "ATM"]),
        "device_id": st.none() | TEXT,
    }
)
LABELS = st.fixed_dictionaries(
    {"event_id": TEXT, "user_id": TEXT, "is_fraud": st.booleans(), "label_time": LONGS}
)


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(EVENTS, LABELS)
def test_the_event_and_label_decoders_read_what_fastavro_reads(
    event: dict[str, Any], label: dict[str, Any]
) -> None:
    assert EVENT_DECODER.decode(EVENT_CODEC.encode(event)) == EVENT_CODEC.decode(
        EVENT_CODEC.encode(event)
    )
    assert LABEL_DECODER.decode(LABEL_CODEC.encode(label)) == label


@settings(max_examples=3000, derandomize=True, database=None, deadline=None)
@given(EVENTS, LABELS, st.data())
def test_the_event_and_label_decoders_refuse_broken_bytes_with_a_value_error(
    event: dict[str, Any], label: dict[str, Any], data: st.DataObject
) -> None:
    """Cut, extended or changed bytes: a ValueError, or (where they still make a record) the
    record fastavro reads from them."""
    check_broken_bytes(EVENT_DECODER, EVENT_CODEC, EVENT_CODEC.encode(event), data)
    check_broken_bytes(LABEL_DECODER, LABEL_CODEC, LABEL_CODEC.encode(label), data)
