"""Checks a decoded event before it may be scored.

Each rule yields a stable reason code (``invalid:<field>``) that lands in the dead-letter record,
so a user can count and filter rejects by cause without parsing free text.

Compiled by Cython from this same file (its "pure Python" mode), like ``features/rings.py``:
the checks run once per event and label, and compiled by mypyc each string test was a call of a
``str`` method (``isspace``, ``isascii``, ``isalpha``, ``isupper``) looked up by name, about 7,600
instructions per event (bench/HISTORY.md, thirty-ninth session). Here the strings' characters
are read in a C loop. The source runs unchanged when the package runs from its sources
(``STREAMSCORE_PURE_PYTHON=1``).
"""

from __future__ import annotations

from typing import Any

import cython
from cython.cimports.libc.math import isfinite

from streamscore.errors import Rejection

# Event times must fall in a sane range: 2000-01-01 .. 2100-01-01 (epoch millis).
MIN_EVENT_TIME_MS = 946_684_800_000
MAX_EVENT_TIME_MS = 4_102_444_800_000
MAX_AMOUNT = 1_000_000_000.0
_REQUIRED_TEXT = ("event_id", "user_id", "merchant_id", "merchant_category")

__all__ = ["Rejection", "validate_event", "validate_label"]


@cython.ccall
def is_code(value: str, length: cython.Py_ssize_t) -> cython.bint:
    """Whether ``value`` is ``length`` letters A-Z (ISO 4217 currencies, ISO 3166 countries):
    the regular expression ``[A-Z]{length}`` fully matched (never the empty string), without a
    call into the regex engine per field."""
    if length == 0 or len(value) != length:
        return False
    character: cython.Py_UCS4
    for character in value:
        if character < "A" or character > "Z":
            return False
    return True


@cython.cfunc
def _blank(value: str) -> cython.bint:
    """Whether ``value`` is empty or only white space: ``not value.strip()``, without the copy
    (each character as ``str.isspace`` tests it)."""
    character: cython.Py_UCS4
    for character in value:
        if not character.isspace():
            return False
    return True


def validate_event(
    event: dict[str, Any], now_ms: int | None = None, max_ahead_ms: int | None = None
) -> None:
    """Raise ``Rejection`` for the first rule the event breaks; return quietly if it is valid.

    With ``now_ms`` and ``max_ahead_ms``, an event time further ahead of the clock is refused:
    one such event would drag the watermark into the future and make every later event late.
    """
    for field in _REQUIRED_TEXT:
        value: str = event[field]
        if _blank(value):
            raise Rejection(f"invalid:{field}", f"{field} is empty")
        if len(value) > 256:
            raise Rejection(f"invalid:{field}", f"{field} is longer than 256 characters")
    ts = event["event_time"]
    if not MIN_EVENT_TIME_MS <= ts < MAX_EVENT_TIME_MS:
        raise Rejection("invalid:event_time", f"event_time {ts} is outside 2000..2100")
    if now_ms is not None and max_ahead_ms is not None and ts > now_ms + max_ahead_ms:
        raise Rejection(
            "invalid:event_time",
            f"event_time {ts} is {ts - now_ms} ms ahead of the clock (max {max_ahead_ms})",
        )
    amount = event["amount"]
    if not (isfinite(amount) and 0.0 < amount <= MAX_AMOUNT):
        raise Rejection("invalid:amount", f"amount {amount!r} is not in (0, {MAX_AMOUNT:.0f}]")
    if not is_code(event["currency"], 3):
        raise Rejection("invalid:currency", f"currency {event['currency']!r} is not ISO 4217")
    if not is_code(event["country"], 2):
        raise Rejection("invalid:country", f"country {event['country']!r} is not ISO 3166 alpha-2")


def validate_label(label: dict[str, Any]) -> None:
    """Raise ``Rejection`` (``label:invalid``) unless a decoded label can be joined."""
    for field in ("event_id", "user_id"):
        value: str = label[field]
        if _blank(value) or len(value) > 256:
            raise Rejection("label:invalid", f"{field} is empty or longer than 256 characters")
    if not MIN_EVENT_TIME_MS <= label["label_time"] < MAX_EVENT_TIME_MS:
        raise Rejection("label:invalid", f"label_time {label['label_time']} is outside 2000..2100")
