"""The label-join entries' changes and pickles written in C (``entry_records``) against
``pickle.dumps``: the same bytes for any flat tuple of the types an entry holds, and
``pickle.dumps`` itself for anything else."""

from __future__ import annotations

import math
import pickle
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore import native
from streamscore.job import entry_records
from streamscore.job.entry_records import (
    OUTCOME_HEAD,
    UNCHANGED,
    entry_record,
    packed_outcome,
    pickled_tuple,
)
from streamscore.job.state import (
    ParkedLabel,
    PendingOutcome,
    closed_entry,
    parked_entry,
    pending_entry,
)

_INTS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),  # past 64 bits too: pickle.dumps's
    st.sampled_from([0, 255, 256, 65535, 65536, -1, -(2**31), 2**31 - 1, 2**31, -(2**31) - 1]),
    st.sampled_from([2**63 - 1, -(2**63), 2**40, -(2**39), -(2**39) - 1, 1_767_225_600_000]),
)
_SHARED_TEXT = "shared"  # one object, put in a tuple more than once: referenced from the memo
_ITEMS = st.one_of(
    st.none(),
    st.booleans(),
    _INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),  # lone surrogates included: pickle.dumps's
    st.binary(max_size=300),
    st.just(_SHARED_TEXT),
    st.just(b""),
    st.just(""),
)


@settings(max_examples=3000, derandomize=True, database=None, deadline=None)
@given(st.lists(_ITEMS, min_size=0, max_size=20).map(tuple))
def test_the_pickle_is_pickle_dumps_byte_for_byte(value: tuple[Any, ...]) -> None:
    written = pickled_tuple(value)
    assert written == pickle.dumps(value)
    assert repr(pickle.loads(written)) == repr(value)  # (repr: a NaN is not equal to itself)


@settings(max_examples=1000, derandomize=True, database=None, deadline=None)
@given(st.text(max_size=300), st.none() | st.lists(_ITEMS, min_size=0, max_size=20).map(tuple))
def test_a_change_is_the_event_id_then_the_pickle_each_after_its_length(
    event_id: str, entry: tuple[Any, ...] | None
) -> None:
    """What ``state_writes.StateWriter`` and ``StateWrites.java`` read: big-endian lengths."""
    try:
        key = event_id.encode()
    except UnicodeEncodeError:  # lone surrogates: no event id of the job's has them
        return
    if entry is None:
        expected = struct.pack(">i", len(key)) + key + struct.pack(">i", UNCHANGED)
    else:
        raw = pickle.dumps(entry)
        expected = struct.pack(">i", len(key)) + key + struct.pack(">i", len(raw)) + raw
    assert entry_record(event_id, entry) == expected


def test_a_pickle_of_64_kib_or_more_is_pickle_dumps() -> None:
    """The pickler splits its frames there; those are left to it."""
    for size in (64 * 1024 - 40, 64 * 1024, 200_000):
        value = (2, True, 1_767_225_600_000, b"x" * size, "events", 3, 12)
        assert pickled_tuple(value) == pickle.dumps(value)


def test_the_job_s_entries_pickle_as_pickle_dumps_pickles_them() -> None:
    outcome = PendingOutcome(
        1_767_225_600_000, 12.5, [0.0, 1.5, float("nan")], 0.25, "REVIEW", "fraud-lgbm-1",
        "champion", 0, None, 0.125, "river-3",
    )  # fmt: skip
    label = ParkedLabel(True, 1_767_225_600_123, b"\x02ab\x00", "labels", 3, 1234)
    for entry in (
        pending_entry(outcome),
        closed_entry(1_767_225_600_000, "labelled"),
        parked_entry(label),
    ):
        assert pickled_tuple(entry) == pickle.dumps(entry)


def test_the_build_writes_the_pickles_itself() -> None:
    """Compiled, the pickles are this module's (else the tests above only test pickle)."""
    if native.mode == "compiled":
        assert entry_records.__file__.endswith(".so")


@settings(max_examples=1000, derandomize=True, database=None, deadline=None)
@given(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4),
    st.lists(st.integers(min_value=0, max_value=255), min_size=3, max_size=3),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=40),
)
def test_a_packed_outcome_is_struct_s_bytes(
    event_time: int, numbers: list[float], small: list[int], vector: list[float]
) -> None:
    """``packed_outcome`` is the head's and the vector's ``struct.pack``, which ``state.unpack``
    reads."""
    expected = struct.pack(f"{OUTCOME_HEAD}{len(vector)}d", event_time, *numbers, *small, *vector)
    assert packed_outcome(event_time, *numbers, *small, vector) == expected


def test_a_packed_outcome_refuses_what_is_not_a_byte() -> None:
    import pytest

    with pytest.raises(ValueError):
        packed_outcome(0, 1.0, 0.5, math.nan, math.nan, 3, 0, 256, [])
