"""A user's ``ScoringState`` as one bytes object, and that object's pickle written in C.

Why: every changed user's state is pickled before each checkpoint barrier, and the write-out
holds up every record behind it. ``pickle.dumps`` of the nested form (a ``ScoringState`` reduced
to a ``UserState`` reduced to its packed cells and a list of dicts of sets of strings) cost about
9-11 µs per user: two globals looked up and imported (1.7 µs each), two reduces, a memo entry per
string (bench/HISTORY.md, forty-seventh session). Here the whole state is one ``blob``
(``encoded``) and its pickle, ``restore_scoring_state(blob)``, is written straight into one
bytes object (``pickled``): the same bytes as ``pickle.dumps`` of a state that reduces to it
(``state.ScoringState.__reduce__``; ``tests/unit/test_user_state_codec.py`` holds the two equal),
so PyFlink's state API reads it back unchanged.

The blob, little-endian:

* ``FORMAT`` (one byte), then the newest event time, the timer, the number of parked labels
  (8 bytes each), and whether the summary of the join map's deadlines is known (one byte);
* if it is: the earliest closed and parked deadlines (8 bytes each), the number of pending
  deadlines (4 bytes), and each deadline and its count (8 bytes each);
* the packed cells (``rings.pack``): their length (4 bytes) and bytes;
* the number of distinct-count slots (4 bytes), and per slot its number of buckets (4 bytes),
  and per bucket its index (8 bytes), its number of values (4 bytes) and each value as UTF-8,
  after its length (one byte, or ``LONG_TEXT`` and 4 bytes).

A state it cannot hold (a value that is not a string, or a string with lone surrogates; an
integer past 64 bits; a slot that is not a dict of sets) has no blob: ``encoded`` gives None
and the state pickles in its nested form, which still reads back. ``pickled`` leaves the pickle
to ``pickle.dumps`` (through the blob) for a pickle of 64 KiB or more, where the pickler splits
its frames, and for every state when the package runs from its sources (the blob is then made
in Python, byte for byte the same). Compiled by Cython from this same file (its "pure Python"
mode), like ``entry_records.py``.
"""

from __future__ import annotations

import pickle
import struct

import cython

if cython.compiled:
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.cpython.long import PyLong_AsLongLongAndOverflow
    from cython.cimports.cpython.unicode import PyUnicode_AsUTF8AndSize
    from cython.cimports.libc.string import memcpy

# The blob's own layout, its first byte.
FORMAT = 1
# A value's length byte for a value of 255 UTF-8 bytes or more: its length follows in 4 bytes.
LONG_TEXT = 255
# Where pickle finds the function that reads a blob back (``state.restore_scoring_state``).
RESTORE_MODULE = "streamscore.job.state"
RESTORE_NAME = "restore_scoring_state"

_HEAD = struct.Struct("<BqqqB")
_DUE = struct.Struct("<qqI")
_PAIR = struct.Struct("<qq")
_COUNT = struct.Struct("<I")
_BUCKET = struct.Struct("<qI")
_LONG_LENGTH = struct.Struct("<BI")
_FORMAT = cython.declare(cython.uchar, FORMAT)
_LONG_TEXT = cython.declare(cython.Py_ssize_t, LONG_TEXT)
_HEAD_SIZE = cython.declare(cython.Py_ssize_t, _HEAD.size)
_DUE_SIZE = cython.declare(cython.Py_ssize_t, _DUE.size)
_PAIR_SIZE = cython.declare(cython.Py_ssize_t, _PAIR.size)
_BUCKET_SIZE = cython.declare(cython.Py_ssize_t, _BUCKET.size)
_SMALLEST = -(2**63)
_LARGEST = 2**63 - 1
if struct.pack("=q", 1) != struct.pack("<q", 1):
    raise ImportError("streamscore writes users' state on little-endian machines only")

PROTOCOL = pickle.DEFAULT_PROTOCOL
_PROTOCOL = cython.declare(cython.int, PROTOCOL)
# Protocol 5 writes what protocol 4 does for these opcodes, but for its number.
_WRITTEN_HERE = cython.declare(cython.bint, PROTOCOL in (4, 5))
# The pickle's opcodes before the blob: the global (module and name, each memoized, then
# STACK_GLOBAL and its MEMOIZE), as the C pickler writes them.
_GLOBAL = cython.declare(bytes, (
    b"\x8c" + bytes([len(RESTORE_MODULE)]) + RESTORE_MODULE.encode() + b"\x94"
    + b"\x8c" + bytes([len(RESTORE_NAME)]) + RESTORE_NAME.encode() + b"\x94"
    + b"\x93\x94"
))  # fmt: skip
# After the blob: its MEMOIZE, TUPLE1 and MEMOIZE, REDUCE and MEMOIZE, STOP.
_AFTER = cython.declare(bytes, b"\x94\x85\x94R\x94.")
# The C pickler ends a frame once it holds this much (and writes a larger bytes object outside
# any frame): a pickle this long or longer is left to it.
_FRAME_TARGET = cython.declare(cython.Py_ssize_t, 64 * 1024)


def encoded(parts: tuple) -> bytes | None:
    """The blob of a state's ``parts`` (``state.ScoringState._parts``): newest event time,
    packed cells, slots, timer, parked labels, pending deadlines (None: the summary is not
    known), closed and parked deadlines. None where it cannot hold them."""
    if cython.compiled:
        return _written(parts, False)
    return _encoded_in_python(parts)


def pickled(parts: tuple) -> bytes | None:
    """``pickle.dumps`` of ``restore_scoring_state(encoded(parts))``: the same bytes, written
    here; or None, for ``pickle.dumps`` to make (see the module's docstring)."""
    if cython.compiled and _WRITTEN_HERE:
        return _written(parts, True)
    return None


def decoded(blob: bytes) -> tuple[int, bytes, list, int, int, dict | None, int, int]:
    """The parts ``encoded`` took (see there)."""
    if len(blob) < _HEAD.size:
        raise ValueError(f"a user's state of {len(blob)} bytes: cut short")
    kind, newest, timer_at, parked, due_known = _HEAD.unpack_from(blob, 0)
    if kind != FORMAT:
        raise ValueError(f"a user's state in format {kind}: this code reads format {FORMAT}")
    at: int = _HEAD.size
    pending: dict | None = None
    closed = parked_due = 0
    if due_known:
        closed, parked_due, count = _DUE.unpack_from(blob, at)
        at += _DUE.size
        pending = {}
        for _ in range(count):
            deadline, number = _PAIR.unpack_from(blob, at)
            pending[deadline] = number
            at += _PAIR.size
    (length,) = _COUNT.unpack_from(blob, at)
    at += _COUNT.size
    cells = blob[at : at + length]
    at += length
    (slot_count,) = _COUNT.unpack_from(blob, at)
    at += _COUNT.size
    slots: list = []
    for _ in range(slot_count):
        (bucket_count,) = _COUNT.unpack_from(blob, at)
        at += _COUNT.size
        slot: dict = {}
        for _ in range(bucket_count):
            key, value_count = _BUCKET.unpack_from(blob, at)
            at += _BUCKET.size
            values: set = set()
            for _ in range(value_count):
                length = blob[at]
                if length == LONG_TEXT:
                    (length,) = _COUNT.unpack_from(blob, at + 1)
                    at += 5
                else:
                    at += 1
                values.add(blob[at : at + length].decode("utf-8"))
                at += length
            slot[key] = values
        slots.append(slot)
    if at != len(blob):
        raise ValueError(f"a user's state of {len(blob)} bytes: {len(blob) - at} left unread")
    return newest, cells, slots, timer_at, parked, pending, closed, parked_due


def _is_int64(value: object) -> bool:
    return type(value) is int and _SMALLEST <= value <= _LARGEST


def _encoded_in_python(parts: tuple) -> bytes | None:
    """``encoded``, in Python (the sources'): the same bytes as ``_written``'s."""
    newest, cells, slots, timer_at, parked, pending, closed, parked_due = parts
    numbers = [newest, timer_at, parked]
    if pending is not None:
        numbers += [closed, parked_due, *pending.keys(), *pending.values()]
    if not all(_is_int64(n) for n in numbers) or type(cells) is not bytes:
        return None
    chunks = [_HEAD.pack(FORMAT, newest, timer_at, parked, pending is not None)]
    if pending is not None:
        chunks.append(_DUE.pack(closed, parked_due, len(pending)))
        chunks += [_PAIR.pack(deadline, count) for deadline, count in pending.items()]
    chunks += [_COUNT.pack(len(cells)), cells, _COUNT.pack(len(slots))]
    for slot in slots:
        if type(slot) is not dict:
            return None
        chunks.append(_COUNT.pack(len(slot)))
        for key, values in slot.items():
            if not _is_int64(key) or type(values) is not set:
                return None
            chunks.append(_BUCKET.pack(key, len(values)))
            for value in values:
                if type(value) is not str:
                    return None
                try:
                    text = value.encode("utf-8")
                except UnicodeEncodeError:  # lone surrogates
                    return None
                length = len(text)
                chunks.append(
                    bytes([length]) if length < LONG_TEXT else _LONG_LENGTH.pack(LONG_TEXT, length)
                )
                chunks.append(text)
    return b"".join(chunks)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _int64(value: object, out: cython.p_longlong) -> cython.bint:
    """``value`` into ``out`` if it is an ``int`` of 64 bits; False if not."""
    overflow: cython.int = 0
    if type(value) is not int:
        return False
    out[0] = PyLong_AsLongLongAndOverflow(value, cython.address(overflow))
    return overflow == 0


@cython.cfunc
@cython.inline
def _put(out: cython.p_uchar, value: cython.longlong) -> cython.p_uchar:
    memcpy(out, cython.address(value), 8)
    return out + 8


@cython.cfunc
@cython.inline
def _put_count(out: cython.p_uchar, value: cython.Py_ssize_t) -> cython.p_uchar:
    count: cython.uint = cython.cast(cython.uint, value)
    memcpy(out, cython.address(count), 4)
    return out + 4


@cython.cfunc
def _written(parts: tuple, as_pickle: cython.bint) -> object:
    """The blob, or with ``as_pickle`` its pickle; None where it cannot hold the parts. Pass one
    checks every part and counts the bytes; pass two writes them into one bytes object (a
    dict's and a set's order stays the same between the two: nothing changes them)."""
    newest, cells, slots, timer_at, parked, pending, closed, parked_due = parts
    numbers = cython.declare(cython.longlong[5])
    number: cython.longlong = 0
    size: cython.Py_ssize_t = 0
    text: cython.p_const_char
    if not (
        _int64(newest, cython.address(numbers[0]))
        and _int64(timer_at, cython.address(numbers[1]))
        and _int64(parked, cython.address(numbers[2]))
    ):
        return None
    if type(cells) is not bytes:
        return None
    blob: cython.Py_ssize_t = _HEAD_SIZE + 4 + len(cells) + 4
    if pending is not None:
        if not (
            _int64(closed, cython.address(numbers[3]))
            and _int64(parked_due, cython.address(numbers[4]))
        ):
            return None
        blob += _DUE_SIZE
        for deadline, count in pending.items():
            if not _int64(deadline, cython.address(number)):
                return None
            if not _int64(count, cython.address(number)):
                return None
            blob += _PAIR_SIZE
    for slot in slots:
        if type(slot) is not dict:
            return None
        blob += 4
        for key, values in cython.cast(dict, slot).items():
            if not _int64(key, cython.address(number)) or type(values) is not set:
                return None
            blob += _BUCKET_SIZE
            for value in cython.cast(set, values):
                if type(value) is not str:
                    return None
                try:
                    PyUnicode_AsUTF8AndSize(value, cython.address(size))
                except UnicodeEncodeError:  # lone surrogates
                    return None
                blob += size + (1 if size < _LONG_TEXT else 5)
    # The pickle: PROTO and FRAME (11 bytes), the global, BINBYTES or SHORT_BINBYTES and the
    # blob's length, the blob, and what comes after it.
    opcode: cython.Py_ssize_t = 2 if blob < 256 else 5
    body: cython.Py_ssize_t = len(_GLOBAL) + opcode + blob + len(_AFTER)
    if as_pickle and body + 11 >= _FRAME_TARGET:
        return None
    total: cython.Py_ssize_t = body + 11 if as_pickle else blob
    buffer = PyBytes_FromStringAndSize(cython.NULL, total)
    start: cython.p_uchar = cython.cast(cython.p_uchar, PyBytes_AS_STRING(buffer))
    out: cython.p_uchar = start
    if as_pickle:
        out[0] = 0x80  # PROTO
        out[1] = _PROTOCOL
        out[2] = 0x95  # FRAME, its length as 8 bytes little-endian
        out = _put(out + 3, body)
        memcpy(out, PyBytes_AS_STRING(_GLOBAL), len(_GLOBAL))
        out += len(_GLOBAL)
        if blob < 256:
            out[0] = 0x43  # SHORT_BINBYTES
            out[1] = blob
            out += 2
        else:
            out[0] = 0x42  # BINBYTES, 4 bytes little-endian
            out = _put_count(out + 1, blob)
    # Pass two: the blob.
    out[0] = _FORMAT
    out = _put(out + 1, numbers[0])
    out = _put(out, numbers[1])
    out = _put(out, numbers[2])
    out[0] = pending is not None
    out += 1
    if pending is not None:
        out = _put(out, numbers[3])
        out = _put(out, numbers[4])
        out = _put_count(out, len(pending))
        for deadline, count in pending.items():
            out = _put(out, deadline)
            out = _put(out, count)
    out = _put_count(out, len(cells))
    memcpy(out, PyBytes_AS_STRING(cells), len(cells))
    out = _put_count(out + len(cells), len(slots))
    for slot in slots:
        out = _put_count(out, len(slot))
        for key, values in cython.cast(dict, slot).items():
            out = _put(out, key)
            out = _put_count(out, len(values))
            for value in cython.cast(set, values):
                text = PyUnicode_AsUTF8AndSize(value, cython.address(size))
                if size < _LONG_TEXT:
                    out[0] = size
                    out += 1
                else:
                    out[0] = _LONG_TEXT
                    out = _put_count(out + 1, size)
                memcpy(out, text, size)
                out += size
    if as_pickle:
        memcpy(out, PyBytes_AS_STRING(_AFTER), len(_AFTER))
        out += len(_AFTER)
    if out - start != total:  # (cannot happen: pass one counted what pass two wrote)
        raise AssertionError(f"wrote {out - start} bytes of {total}")
    return buffer
