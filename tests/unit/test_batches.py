"""The packed layouts of batches and outputs (job/batches.py) round-trip exactly.

The Java side of the same layouts (``RecordBatcher``, ``OutputUnpacker``) is checked against
these on a real Flink in ``tests/e2e/test_batches.py``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamscore.job.batches import (
    OutputPacker,
    pack_records,
    unpack_outputs,
    unpack_records,
)

TEXT = st.text(max_size=40)
BYTES_OR_NONE = st.one_of(st.none(), st.binary(max_size=300))
RECORDS = st.lists(
    st.tuples(
        TEXT,
        BYTES_OR_NONE,
        TEXT,
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**63), 2**63 - 1),
        st.integers(-(2**63), 2**63 - 1),
    ),
    max_size=30,
)
OUTPUTS = st.lists(st.tuples(TEXT, BYTES_OR_NONE, BYTES_OR_NONE), max_size=30)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(RECORDS)
def test_input_records_round_trip(records: list) -> None:
    assert unpack_records(pack_records(records)) == records


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(OUTPUTS)
def test_outputs_round_trip(outputs: list) -> None:
    packer = OutputPacker()
    assert unpack_outputs(packer.pack(outputs)) == outputs
    # The topic cache gives the same bytes the second time.
    assert unpack_outputs(packer.pack(outputs)) == outputs


def test_the_layouts_are_big_endian_lengths_then_bytes() -> None:
    """The byte layout the Java operators read and write, spelled out."""
    record = ("u1", b"\x01\x02", "events", 3, 4, 5)
    assert pack_records([record]) == (
        b"\x00\x00\x00\x02u1"
        b"\x00\x00\x00\x02\x01\x02"
        b"\x00\x00\x00\x06events"
        b"\x00\x00\x00\x03"
        b"\x00\x00\x00\x00\x00\x00\x00\x04"
        b"\x00\x00\x00\x00\x00\x00\x00\x05"
    )
    assert OutputPacker().pack([("t", None, b"v")]) == (
        b"\x00\x00\x00\x01t\xff\xff\xff\xff\x00\x00\x00\x01v"
    )


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(RECORDS.filter(bool), st.data())
def test_a_cut_batch_is_refused(records: list, data: st.DataObject) -> None:
    """A batch cut anywhere inside its last record is a ValueError, never records read from
    bytes past its end."""
    import pytest

    packed = pack_records(records)
    last = len(pack_records(records[-1:]))
    cut = data.draw(st.integers(min_value=len(packed) - last + 1, max_value=len(packed) - 1))
    with pytest.raises(ValueError):
        unpack_records(packed[:cut])
