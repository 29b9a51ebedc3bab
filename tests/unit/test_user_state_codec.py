"""A user's ``ScoringState`` as one blob (``user_state_codec``): its pickle written in C is
``pickle.dumps``'s byte for byte, it reads back as the state it was, the sources make the same
blob as the build, and a state pickled by layout 4 (before the blob) still reads back."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore import native
from streamscore.features.engine import FeatureEngine
from streamscore.job.state import (
    NEVER,
    ScoringState,
    new_scoring_state,
    pickled_scoring_state,
    restore_scoring_state,
)
from streamscore.job.user_state_codec import FORMAT, LONG_TEXT, decoded, encoded, pickled

ENGINE = FeatureEngine()
START = 1_767_225_600_000
_INTS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),  # past 64 bits: the nested form's
    st.sampled_from([-1, 0, 255, 256, 2**31, -(2**63), 2**63 - 1, 2**63, NEVER, START]),
)
_TEXT = st.one_of(
    st.sampled_from(["m00001", "GB", "", "ü", "x" * LONG_TEXT, "y" * (LONG_TEXT - 1)]),
    st.text(max_size=300),  # lone surrogates too: the nested form's
)


def _event(offset_ms: int, merchant: str, country: str, amount: float) -> dict[str, Any]:
    return {
        "event_id": f"e{offset_ms}",
        "user_id": "u1",
        "event_time": START + offset_ms,
        "amount": amount,
        "merchant_id": merchant,
        "merchant_category": "grocery",
        "country": country,
        "channel": "POS",
    }


@st.composite
def _states(draw: st.DrawFn) -> ScoringState:
    """A user's state after a few events, with values and buckets of any kind put straight
    into its distinct counts' slots and any numbers in its timer and summary."""
    features = ENGINE.new_state()
    events = st.tuples(st.integers(0, 3 * 86_400_000), _TEXT, _TEXT, st.floats(0.01, 10_000.0))
    for offset, merchant, country, amount in sorted(draw(st.lists(events, max_size=12))):
        ENGINE.update(features, _event(offset, merchant, country, amount))
    for slot, key, value in draw(
        st.lists(st.tuples(st.integers(0, len(features.slots) - 1), _INTS, _TEXT), max_size=4)
    ):
        features.slots[slot].setdefault(key, set()).add(value)
    if draw(st.booleans()):
        features.newest = draw(_INTS)
    timer_at, parked = draw(_INTS), draw(st.integers(0, 3) | _INTS)
    due = draw(st.none() | st.tuples(st.dictionaries(_INTS, _INTS, max_size=4), _INTS, _INTS))
    if due is None:
        return ScoringState(features, timer_at, parked)
    return ScoringState(features, timer_at, parked, *due)


def _same(a: ScoringState, b: ScoringState) -> bool:
    fields = ("timer_at", "parked", "due", "parked_ids")
    return a.features == b.features and all(getattr(a, f) == getattr(b, f) for f in fields)


def _source_module() -> Any:
    """``user_state_codec`` run from its source, as the package runs without its build."""
    path = Path(native.__file__).parent / "job" / "user_state_codec.py"
    spec = importlib.util.spec_from_file_location("user_state_codec_source", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOURCE = _source_module()


@settings(max_examples=600, derandomize=True, database=None, deadline=None)
@given(_states())
def test_the_pickle_is_pickle_dumps_and_reads_back_as_the_state(state: ScoringState) -> None:
    written = pickled_scoring_state(state)
    assert written == pickle.dumps(state)
    assert _same(pickle.loads(written), state)


@settings(max_examples=600, derandomize=True, database=None, deadline=None)
@given(_states())
def test_the_sources_make_the_blob_the_build_makes(state: ScoringState) -> None:
    parts = state._parts()
    blob = encoded(parts)
    assert SOURCE.encoded(parts) == blob
    if blob is not None:
        assert _same(restore_scoring_state(blob), state)


def _ordinary() -> ScoringState:
    state = new_scoring_state(ENGINE.new_state())
    for i, (merchant, country) in enumerate([("m00001", "GB"), ("m00002", "GB"), ("m00001", "FR")]):
        ENGINE.update(state.features, _event(30_000 * i, merchant, country, 10.0 + i))
    state.timer_at = START + 100_000
    assert state.due is not None
    state.due.add_pending(START + 86_400_000)
    state.due.closed = START + 74_400_000
    return state


def test_an_ordinary_state_is_written_in_c_by_the_build() -> None:
    state = _ordinary()
    if native.mode == "compiled":
        assert pickled(state._parts()) is not None
    else:
        assert pickled(state._parts()) is None  # pickle.dumps makes it, through the blob
    assert pickle.dumps(state).count(b"restore_scoring_state") == 1


@pytest.mark.parametrize(
    "spoil",
    [
        lambda s: s.features.slots[0].setdefault(7, set()).add(42),  # a value not a string
        lambda s: s.features.slots[1].setdefault(7, set()).add("\udc80"),  # a lone surrogate
        lambda s: s.due.pending.__setitem__(2**64, 1),  # a deadline past 64 bits
        lambda s: s.features.slots.append([1, 2]),  # a slot not a dict
    ],
)
def test_a_state_the_blob_cannot_hold_pickles_in_the_nested_form(spoil: Any) -> None:
    state = _ordinary()
    spoil(state)
    assert encoded(state._parts()) is None and SOURCE.encoded(state._parts()) is None
    written = pickled_scoring_state(state)
    assert written == pickle.dumps(state) and b"restore_scoring_state" not in written
    assert _same(pickle.loads(written), state)


def test_a_pickle_of_64_kib_or_more_is_pickle_dumps() -> None:
    """The pickler splits its frames there; such a state is left to it."""
    state = _ordinary()
    state.features.slots[0][1] = {f"merchant-{i:06}" * 8 for i in range(700)}
    assert pickled(state._parts()) is None
    written = pickled_scoring_state(state)
    assert len(written) > 64 * 1024 and written == pickle.dumps(state)
    assert _same(pickle.loads(written), state)


def test_a_blob_of_another_format_or_cut_short_is_refused() -> None:
    blob = encoded(_ordinary()._parts())
    assert blob is not None and blob[0] == FORMAT
    with pytest.raises(ValueError, match="format 2"):
        decoded(bytes([2]) + blob[1:])
    with pytest.raises(ValueError, match="left unread"):
        decoded(blob + b"\x00")
    with pytest.raises(Exception):  # noqa: B017 (struct.error or IndexError, as it falls)
        decoded(blob[:-3])


# ``_ordinary()`` as layout 4 pickled it (pickle.dumps, protocol 4, before the blob): a
# savepoint of 4 holds such values, and ``streamscore upgrade`` takes it (tests/unit/
# test_upgrade.py).
LAYOUT_4 = bytes.fromhex(
    "800495bc010000000000008c1573747265616d73636f72652e6a6f622e7374617465948c0c53636f72696e67"
    "5374617465949394288c1b73747265616d73636f72652e66656174757265732e656e67696e65948c12726573"
    "746f72655f757365725f73746174659493948a066092db769b0143e80000000c2511a5410000000000003440"
    "00000000000008400000000000000000000000000000f03f0000000000002440000000000000244000000000"
    "00000840000000000000f03f000000000000264000000000000026400000000000001840000000000000f03f"
    "0000000000002840000000000000284000000000b07856410000000000002c40000000000000f03f00000000"
    "000000000000000000000840000000000080404000000000000028400000000040f61d410000000000003a40"
    "000000000000f03f000000000000304000000000000008400000000000804040000000000000284094"
    "5d94287d944ac0e259008f94288c066d3030303032948c066d30303030319490737d944a907d07008f94288c"
    "024652948c02474294907365879452948a06a02edc769b014b007d948a060004017c9b014b01738a0600e949"
    "7b9b018a080000000000000040749452942e"
)


def test_a_state_pickled_by_layout_4_reads_back() -> None:
    restored = pickle.loads(LAYOUT_4)
    assert isinstance(restored, ScoringState)
    assert _same(restored, _ordinary())
