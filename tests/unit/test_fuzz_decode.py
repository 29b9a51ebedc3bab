"""Property tests of decode + validation: whatever bytes arrive, each ends as a valid record or a
dead letter with a known reason, and nothing else escapes (an exception out of the decode
operator would fail and restart the whole job).

Derandomized, with a fixed number of examples per property, so CI runs the same cases every
time; a failure prints the shrunk input to reproduce it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamscore.config import Settings
from streamscore.errors import Rejection
from streamscore.generator import TransactionGenerator
from streamscore.job.avro_decoders import EventDecoder, LabelDecoder
from streamscore.job.decode import decode_event, decode_label
from streamscore.resources import schema
from streamscore.serde import Codec
from streamscore.validation import MAX_AMOUNT, MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS

FUZZ = settings(
    max_examples=1000,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

EVENTS = Codec("event")
LABELS = Codec("label")
# The scoring operator's own readers: each must come to what fastavro's comes to.
EVENT_DECODER = EventDecoder(schema("event"))
LABEL_DECODER = LabelDecoder(schema("label"))
NOW_MS = 1_767_312_000_000  # the day after the generator's first event
MAX_AHEAD_MS = 300_000
DEFAULT_LIMIT: int = Settings.model_fields["max_record_bytes"].default
LIMIT = 1024  # the smallest allowed, so generated inputs cross it often
TEXT_FIELDS = ("event_id", "user_id", "merchant_id", "merchant_category")
EVENT_REASONS = {
    "decode_error",
    "too_large",
    "invalid:event_time",
    "invalid:amount",
    "invalid:currency",
    "invalid:country",
    *(f"invalid:{field}" for field in TEXT_FIELDS),
}
LABEL_REASONS = {"label:decode_error", "label:too_large", "label:invalid"}

VALID_EVENTS = [
    {**t.event, "event_time": NOW_MS - 60_000 * i}
    for i, t in enumerate(TransactionGenerator().take(12))
]
VALID_EVENTS[0] = {**VALID_EVENTS[0], "device_id": None}
VALID_LABELS = [
    {
        "event_id": e["event_id"],
        "user_id": e["user_id"],
        "is_fraud": i % 2 == 0,
        "label_time": e["event_time"] + 5_000,
    }
    for i, e in enumerate(VALID_EVENTS)
]


def _outcome(decode: Callable[[], dict[str, Any]]) -> dict[str, Any] | Rejection:
    try:
        return decode()
    except Rejection as rejection:
        return rejection


# Where the job's decoders refuse bytes that fastavro reads, on purpose (the Avro spec): a
# boolean byte other than 0 or 1 (fastavro: true), a negative enum or union index (fastavro
# counts it from the end), a varint past 64 bits (fastavro: a larger int than a long).
ON_PURPOSE = ("not a boolean", "no symbol -", "no union branch -", "a varint longer than a long")


def _refused_on_purpose(ours: dict[str, Any] | Rejection, reason: str) -> bool:
    return (
        isinstance(ours, Rejection)
        and ours.reason == reason
        and any(marker in ours.detail for marker in ON_PURPOSE)
    )


def broken_rules(event: dict[str, Any]) -> set[str]:
    """The reasons an event deserves, from the documented rules (README, event.avsc), written
    independently of streamscore.validation so the two check each other."""
    broken = {
        f"invalid:{field}"
        for field in TEXT_FIELDS
        if not event[field].strip() or len(event[field]) > 256
    }
    ts = event["event_time"]
    if not (MIN_EVENT_TIME_MS <= ts < MAX_EVENT_TIME_MS and ts <= NOW_MS + MAX_AHEAD_MS):
        broken.add("invalid:event_time")
    amount = event["amount"]
    if not (math.isfinite(amount) and 0.0 < amount <= MAX_AMOUNT):
        broken.add("invalid:amount")
    if not re.fullmatch("[A-Z]{3}", event["currency"]):
        broken.add("invalid:currency")
    if not re.fullmatch("[A-Z]{2}", event["country"]):
        broken.add("invalid:country")
    return broken


def check_event(payload: bytes | None, limit: int = LIMIT) -> str:
    """Decode one payload and check the contract; the outcome: ``"valid"`` or the reason. The
    job's ``EventDecoder`` must come to the same as fastavro."""
    ours = _outcome(lambda: decode_event(payload, EVENT_DECODER, NOW_MS, MAX_AHEAD_MS, limit))
    try:
        event = decode_event(payload, EVENTS, NOW_MS, MAX_AHEAD_MS, limit)
    except Rejection as rejection:
        if _refused_on_purpose(ours, "decode_error"):
            return "decode_error"
        assert isinstance(ours, Rejection) and ours.reason == rejection.reason, ours
        assert rejection.reason in EVENT_REASONS
        assert rejection.detail
        if rejection.reason == "too_large":
            assert payload is not None and len(payload) > limit
        return rejection.reason
    if _refused_on_purpose(ours, "decode_error"):
        return "decode_error"
    assert repr(ours) == repr(event)
    assert payload is not None and len(payload) <= limit
    assert broken_rules(event) == set(), event
    assert EVENTS.decode(EVENTS.encode(event)) == event  # a well-formed record, re-encodable
    return "valid"


def check_label(payload: bytes | None, limit: int = LIMIT) -> str:
    ours = _outcome(lambda: decode_label(payload, LABEL_DECODER, limit))
    try:
        label = decode_label(payload, LABELS, limit)
    except Rejection as rejection:
        if _refused_on_purpose(ours, "label:decode_error"):
            return "label:decode_error"
        assert isinstance(ours, Rejection) and ours.reason == rejection.reason, ours
        assert rejection.reason in LABEL_REASONS
        assert rejection.detail
        if rejection.reason == "label:too_large":
            assert payload is not None and len(payload) > limit
        return rejection.reason
    if _refused_on_purpose(ours, "label:decode_error"):
        return "label:decode_error"
    assert repr(ours) == repr(label)
    assert payload is not None and len(payload) <= limit
    for field in ("event_id", "user_id"):
        assert label[field].strip() and len(label[field]) <= 256
    assert MIN_EVENT_TIME_MS <= label["label_time"] < MAX_EVENT_TIME_MS
    assert isinstance(label["is_fraud"], bool)
    return "valid"


# Arbitrary bytes: mostly small, some just around and above the limit.
ANY_BYTES = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.binary(max_size=400),
    st.binary(min_size=LIMIT - 8, max_size=LIMIT + 64),
)


@st.composite
def mutated(draw: st.DrawFn, originals: list[bytes]) -> bytes:
    """A valid record with a few random edits: bit flips, byte replacements, insertions,
    truncation and appended garbage, at random positions."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "replace", "insert", "truncate", "append"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "truncate":
            del data[at:]
        elif kind == "append":
            data += draw(st.binary(min_size=1, max_size=2 * LIMIT))
    return bytes(data)


@FUZZ
@given(ANY_BYTES)
def test_arbitrary_bytes_end_as_an_event_or_a_known_rejection(payload: bytes | None) -> None:
    check_event(payload)


@settings(FUZZ, max_examples=2000)
@given(mutated([EVENTS.encode(e) for e in VALID_EVENTS]))
def test_mutated_events_end_as_an_event_or_a_known_rejection(payload: bytes) -> None:
    check_event(payload)


@FUZZ
@given(st.one_of(ANY_BYTES, mutated([LABELS.encode(label) for label in VALID_LABELS])))
def test_arbitrary_and_mutated_labels_end_as_a_label_or_a_known_rejection(
    payload: bytes | None,
) -> None:
    check_label(payload)


# Schema-valid events: valid ones, with up to two fields set to what a producer could get wrong.
_GOOD = {
    "event_id": st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1),
    "user_id": st.text(min_size=1, max_size=256).filter(str.strip),
    "event_time": st.integers(MIN_EVENT_TIME_MS, NOW_MS + MAX_AHEAD_MS),
    "amount": st.floats(min_value=0.0, max_value=MAX_AMOUNT, exclude_min=True),
    "currency": st.from_regex("[A-Z]{3}", fullmatch=True),
    "merchant_id": st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1),
    "merchant_category": st.sampled_from(["grocery", "electronics", "travel"]),
    "country": st.from_regex("[A-Z]{2}", fullmatch=True),
    "channel": st.sampled_from(["POS", "ONLINE", "ATM"]),
    "device_id": st.one_of(st.none(), st.text(max_size=40)),
}
_ID = st.one_of(
    st.text(max_size=300),
    st.text(st.characters(codec="ascii"), min_size=250, max_size=300),
    st.sampled_from(["", " ", "\t\n", "\u3000"]),
)
# A code with a trailing newline is left to test_a_code_with_a_trailing_newline_is_refused.
_CODE = st.text(st.characters(codec="ascii"), max_size=4).filter(lambda s: not s.endswith("\n"))
_WILD = {
    **dict.fromkeys(TEXT_FIELDS, _ID),
    "event_time": st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.integers(MIN_EVENT_TIME_MS - 2, MIN_EVENT_TIME_MS + 2),
        st.integers(MAX_EVENT_TIME_MS - 2, MAX_EVENT_TIME_MS + 2),
        st.integers(NOW_MS + MAX_AHEAD_MS - 2, NOW_MS + MAX_AHEAD_MS + 2),
    ),
    "amount": st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.0, 5e-324, -1.0, MAX_AMOUNT, math.nextafter(MAX_AMOUNT, 2e9)]),
    ),
    "currency": st.one_of(_CODE, st.sampled_from(["eur", "EURO", "€UR"])),
    "country": st.one_of(_CODE, st.sampled_from(["de", "DEU", "D"])),
}


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    wild = draw(st.permutations(sorted(_WILD)))[: draw(st.integers(0, 2))]
    event = draw(st.fixed_dictionaries(_GOOD))
    for field in wild:
        event[field] = draw(_WILD[field])
    return event


@FUZZ
@given(events())
def test_generated_events_decode_to_themselves_or_the_documented_reason(
    event: dict[str, Any],
) -> None:
    outcome = check_event(EVENTS.encode(event), DEFAULT_LIMIT)
    expected = broken_rules(event)
    if expected:
        assert outcome in expected
    else:
        assert outcome == "valid"
        decoded = decode_event(EVENTS.encode(event), EVENTS, NOW_MS, MAX_AHEAD_MS, DEFAULT_LIMIT)
        assert decoded == event


@pytest.mark.parametrize("field,code", [("currency", "EUR\n"), ("country", "DE\n")])
def test_a_code_with_a_trailing_newline_is_refused(field: str, code: str) -> None:
    assert check_event(EVENTS.encode({**VALID_EVENTS[1], field: code})) == f"invalid:{field}"


def padded_event(size: int) -> bytes:
    """A valid event encoded in exactly ``size`` bytes (its device_id is the padding)."""
    base = len(EVENTS.encode({**VALID_EVENTS[1], "device_id": ""}))
    for n in range(max(size - base - 4, 0), size - base + 1):
        payload = EVENTS.encode({**VALID_EVENTS[1], "device_id": "x" * n})
        if len(payload) == size:
            return payload
    raise AssertionError(f"no padding gives {size} bytes")


@pytest.mark.parametrize("limit", [LIMIT, DEFAULT_LIMIT])
def test_the_size_limit_is_inclusive(limit: int) -> None:
    assert check_event(padded_event(limit), limit) == "valid"
    assert check_event(padded_event(limit + 1), limit) == "too_large"
    label = LABELS.encode(VALID_LABELS[0])
    at_limit = label + bytes(limit - len(label))  # trailing bytes: undecodable, not too large
    assert check_label(at_limit, limit) == "label:decode_error"
    assert check_label(at_limit + b"\x00", limit) == "label:too_large"


def test_the_default_limit_is_far_above_real_records() -> None:
    assert 1024 <= DEFAULT_LIMIT
    assert max(len(EVENTS.encode(e)) for e in VALID_EVENTS) * 100 < DEFAULT_LIMIT


# --- the record's envelope: its Kafka key and timestamp against its content ------------------


@settings(FUZZ, max_examples=500)
@given(
    st.one_of(ANY_BYTES, mutated([EVENTS.encode(e) for e in VALID_EVENTS[:3]])),
    st.sampled_from(["", "u-1", VALID_EVENTS[1]["user_id"]]),
    st.one_of(st.none(), st.sampled_from([VALID_EVENTS[1]["event_time"], NOW_MS])),
)
def test_an_events_record_is_an_event_that_matches_its_envelope_or_a_rejection(
    payload: bytes | None, key: str, timestamp: int | None
) -> None:
    from streamscore.job.decode import read_event

    try:
        event = read_event(payload, key, timestamp, EVENT_DECODER, NOW_MS, MAX_AHEAD_MS, LIMIT)
    except Rejection as rejection:
        assert rejection.reason in EVENT_REASONS | {"key_mismatch", "timestamp_mismatch"}
        if rejection.reason in ("key_mismatch", "timestamp_mismatch"):
            assert check_event(payload) == "valid"  # the envelope is checked last
        return
    assert (event["user_id"], event["event_time"]) == (key, timestamp)


def test_the_envelope_rules_name_what_disagrees() -> None:
    from streamscore.job.decode import read_event, read_label

    event = VALID_EVENTS[1]
    payload, user, t = EVENTS.encode(event), event["user_id"], event["event_time"]
    assert read_event(payload, user, t, EVENT_DECODER, NOW_MS, MAX_AHEAD_MS, LIMIT) == event
    for key, timestamp, reason in (
        ("", t, "key_mismatch"),
        ("someone-else", t, "key_mismatch"),
        (user, t + 1, "timestamp_mismatch"),
        (user, None, "timestamp_mismatch"),
    ):
        with pytest.raises(Rejection) as refused:
            read_event(payload, key, timestamp, EVENT_DECODER, NOW_MS, MAX_AHEAD_MS, LIMIT)
        assert refused.value.reason == reason
    label = VALID_LABELS[0]
    assert read_label(LABELS.encode(label), label["user_id"], LABEL_DECODER, LIMIT) == label
    with pytest.raises(Rejection) as refused:
        read_label(LABELS.encode(label), "someone-else", LABEL_DECODER, LIMIT)
    assert refused.value.reason == "label:key_mismatch"


def test_a_dead_letter_keeps_at_most_64_kib_of_its_input() -> None:
    from streamscore.errors import Rejection
    from streamscore.job.records import MAX_ORIGINAL_BYTES, dead_letter
    from streamscore.serde import Codec

    codec = Codec("dead_letter")
    huge = b"x" * (MAX_ORIGINAL_BYTES * 4)
    record = codec.decode(dead_letter(codec, Rejection("too_large", "big"), "events", 0, 7, huge))
    assert record["original"] == huge[:MAX_ORIGINAL_BYTES]
    assert "cut to its first 65536 of 262144 bytes" in record["detail"]
