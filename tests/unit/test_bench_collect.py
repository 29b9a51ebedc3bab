"""The benchmark's output collector (``collect.OutputLog``): it knows each prediction and outcome
by its leading event id while they arrive and decodes them after the measurement, with the same
figures as decoding each on arrival."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from collect import LABEL_DEAD_LETTER, OutputLog, leading_string  # noqa: E402

from streamscore.serde import Codec  # noqa: E402

PREFIX = "bench-7f3a-"


@dataclass
class Message:
    """What the collector reads of a consumed Kafka message."""

    payload: bytes
    kafka_ms: int = 0
    failed: bool = False

    def error(self) -> Any:
        return "broker gone" if self.failed else None

    def value(self) -> bytes:
        return self.payload

    def timestamp(self) -> tuple[int, int]:
        return (1, self.kafka_ms)


def prediction(
    event_id: str, ingest: int, model: str = "m-1", degraded: list[str] | None = None
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "user_id": "u-1",
        "event_time": 1_000,
        "score": 0.25,
        "decision": "APPROVE",
        "model_version": model,
        "feature_set_version": "v1",
        "degraded": degraded or [],
        "ingest_time": ingest,
        "scored_time": ingest + 3,
        "amount": 10.0,
        "arm": "champion",
        "challenger_score": None,
        "challenger_version": None,
    }


@given(st.text(max_size=300))
def test_the_leading_string_is_the_first_field_as_fastavro_writes_it(text: str) -> None:
    """Any string, short or long enough for a varint of several bytes, with any bytes after it."""
    payload = Codec("prediction").encode(prediction(text, 5))
    assert leading_string(payload) == text.encode()


def test_a_truncated_or_negative_length_is_no_string() -> None:
    assert leading_string(b"") is None
    assert leading_string(b"\x0aabc") is None  # five bytes announced, three there
    assert leading_string(b"\x01") is None  # zig-zag -1
    assert leading_string(b"\x80\x80") is None  # the varint never ends


def test_predictions_are_counted_on_arrival_and_decoded_at_the_end() -> None:
    codec = Codec("prediction")
    log = OutputLog("prediction", PREFIX)
    arrivals = [
        (Message(codec.encode(prediction(f"{PREFIX}1", 100))), 1.0),
        (Message(codec.encode(prediction("other-run-1", 101))), 1.0),  # foreign
        (Message(codec.encode(prediction(f"{PREFIX}2", 102, "m-2", ["redis"]))), 2.0),
        (Message(codec.encode(prediction(f"{PREFIX}1", 100))), 3.0),  # duplicate
        (Message(b"", failed=True), 3.0),  # a consumer error
        (Message(b"\x7f"), 3.0),  # no event id at all
        # An event id with the prefix, and nothing decodable after it: counted while the
        # outputs arrive, dropped once decoded.
        (Message(codec.encode(prediction(f"{PREFIX}3", 103))[:30]), 4.0),
    ]
    for message, now in arrivals:
        log.take(message, now)
    assert len(log) == 3
    figures = log.figures()
    assert figures["recv"].tolist() == [1.0, 2.0]
    assert figures["ingest_ms"].tolist() == [100, 102]
    assert figures["scored_ms"].tolist() == [103, 105]
    assert (figures["duplicates"], figures["foreign"], figures["errors"]) == (1, 1, 1)
    assert figures["undecodable"] == 2
    assert figures["model_versions"] == {"m-1": 1, "m-2": 1}
    assert figures["degraded"] == {"redis": 1}


def test_outcomes_keep_their_kafka_time_as_ingest_time() -> None:
    codec = Codec("outcome")
    record = {
        "event_id": f"{PREFIX}9",
        "user_id": "u-1",
        "event_time": 1_000,
        "label_time": 2_000,
        "is_fraud": True,
        "amount": 10.0,
        "score": 0.9,
        "decision": "DECLINE",
        "model_version": "m-1",
        "arm": "champion",
        "canary_percent": 0,
        "champion_score": 0.9,
        "challenger_score": None,
        "challenger_version": None,
        "feature_set_version": "v1",
        "features": [1.0, 2.0],
    }
    log = OutputLog("outcome", PREFIX)
    log.take(Message(codec.encode(record), kafka_ms=777), 5.0)
    figures = log.figures()
    assert figures["recv"].tolist() == [5.0]
    assert figures["ingest_ms"].tolist() == [777]
    assert figures["scored_ms"].size == 0
    assert figures["undecodable"] == 0


def test_label_dead_letters_are_known_by_the_label_they_carry() -> None:
    label = Codec("label").encode(
        {"event_id": f"{PREFIX}4", "user_id": "u-1", "label_time": 2_000, "is_fraud": False}
    )
    dead = Codec("dead_letter")

    def letter(reason: str) -> bytes:
        return dead.encode(
            {
                "reason": reason,
                "detail": "",
                "source_topic": "labels",
                "source_partition": 0,
                "source_offset": 1,
                "original": label,
                "dead_letter_time": 3_000,
            }
        )

    log = OutputLog(LABEL_DEAD_LETTER, PREFIX)
    log.take(Message(letter("label:expired"), kafka_ms=11), 1.0)
    log.take(Message(letter("decode_error"), kafka_ms=12), 1.0)  # not a label's: foreign
    figures = log.figures()
    assert figures["recv"].tolist() == [1.0]
    assert figures["ingest_ms"].tolist() == [11]
    assert figures["foreign"] == 1


def test_the_pass_through_events_are_known_by_their_event_id() -> None:
    """The pass-through copies the input's events: they start with the event id too."""
    codec = Codec("event")
    event = {
        "event_id": f"{PREFIX}5",
        "user_id": "u-1",
        "event_time": 1_000,
        "amount": 12.5,
        "currency": "EUR",
        "merchant_id": "m-1",
        "merchant_category": "grocery",
        "country": "FR",
        "channel": "ONLINE",
        "device_id": None,
    }
    log = OutputLog("event", PREFIX)
    log.take(Message(codec.encode(event), kafka_ms=42), 2.0)
    log.take(Message(codec.encode({**event, "event_id": "x-1"}), kafka_ms=43), 2.0)
    figures = log.figures()
    assert figures["recv"].tolist() == [2.0]
    assert figures["ingest_ms"].tolist() == [42]
    assert (figures["foreign"], figures["undecodable"]) == (1, 0)
