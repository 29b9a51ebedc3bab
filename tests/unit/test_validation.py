import math

import pytest

from streamscore.generator import TransactionGenerator
from streamscore.validation import Rejection, validate_event

VALID = TransactionGenerator().take(1)[0].event


def test_valid_event_passes() -> None:
    validate_event(dict(VALID))


@pytest.mark.parametrize(
    "field,value,reason",
    [
        ("amount", 0.0, "invalid:amount"),
        ("amount", math.nan, "invalid:amount"),
        ("amount", math.inf, "invalid:amount"),
        ("amount", 2e9, "invalid:amount"),
        ("currency", "eur", "invalid:currency"),
        ("country", "DEU", "invalid:country"),
        ("event_time", 0, "invalid:event_time"),
        ("event_time", 5_000_000_000_000, "invalid:event_time"),
        ("event_id", "  ", "invalid:event_id"),
        ("merchant_id", "", "invalid:merchant_id"),
        ("user_id", "x" * 300, "invalid:user_id"),
    ],
)
def test_each_rule_has_its_reason(field: str, value: object, reason: str) -> None:
    with pytest.raises(Rejection) as info:
        validate_event({**VALID, field: value})
    assert info.value.reason == reason
    assert info.value.detail


def test_event_time_far_ahead_of_the_clock_is_refused() -> None:
    now = VALID["event_time"]
    validate_event({**VALID, "event_time": now + 60_000}, now_ms=now, max_ahead_ms=300_000)
    with pytest.raises(Rejection) as info:
        validate_event({**VALID, "event_time": now + 400_000}, now_ms=now, max_ahead_ms=300_000)
    assert info.value.reason == "invalid:event_time"
    assert "ahead of the clock" in info.value.detail
