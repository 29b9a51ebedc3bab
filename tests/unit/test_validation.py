import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore.generator import TransactionGenerator
from streamscore.validation import Rejection, is_code, validate_event

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


# Text that is almost a code: letters of either case, other scripts' letters and digits, the
# lengths around 2 and 3, whitespace and a trailing newline (which "$" in a regex would accept).
_NEAR_CODES = st.text(
    alphabet=st.sampled_from("ABZabzÄÉßΣσ09 \n\t\u00a0ǅ"), min_size=0, max_size=4
) | st.text(max_size=4)


@given(_NEAR_CODES)
@settings(max_examples=2000, deadline=None)
def test_is_code_is_the_regular_expression_fully_matched(value: str) -> None:
    for length in (2, 3):
        expected = re.fullmatch(f"[A-Z]{{{length}}}", value) is not None
        assert is_code(value, length) == expected, (value, length)


@given(st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\x1c\u00a0\u2003\u3000a-"), max_size=4))
@settings(max_examples=500, deadline=None)
def test_a_blank_field_is_what_strip_empties(value: str) -> None:
    event = dict(VALID, merchant_id=value)
    blank = not value.strip()
    try:
        validate_event(event)
        assert not blank
    except Rejection as rejection:
        assert blank and rejection.reason == "invalid:merchant_id"
