from pathlib import Path

import pytest

from streamscore.errors import StreamscoreError
from streamscore.eventlog import event_time_millis, read_jsonl

EVENT = (
    '"event_id": "e1", "user_id": "u1", "amount": 12.5, "currency": "EUR", "merchant_id": "m1", '
    '"merchant_category": "grocery", "country": "DE", "channel": "POS"'
)


def test_iso_and_millis_times_are_the_same_instant() -> None:
    millis = 1_767_225_600_123
    assert event_time_millis(millis) == millis
    assert event_time_millis("2026-01-01T00:00:00.123Z") == millis
    assert event_time_millis("2026-01-01T01:00:00.123+01:00") == millis
    assert event_time_millis("2026-01-01T00:00:00.123") == millis  # naive means UTC


def test_reader_accepts_both_time_forms_and_labels(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(
        "{" + EVENT + ', "event_time": 1767225600000, "is_fraud": true}\n\n'
        "{" + EVENT + ', "event_time": "2026-01-01T00:00:01Z"}\n'
    )
    (first, label1), (second, label2) = list(read_jsonl(log))
    assert (first["event_time"], label1) == (1_767_225_600_000, True)
    assert (second["event_time"], label2) == (1_767_225_601_000, None)
    assert second["device_id"] is None


def test_a_bad_line_names_its_number(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text("{" + EVENT + ', "event_time": 1}\nnot json\n')
    with pytest.raises(StreamscoreError, match="log.jsonl:2"):
        list(read_jsonl(log))
