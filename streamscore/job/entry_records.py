"""A label-join entry's change packed for the state writer, its pickle written in C; and a
pending outcome's numbers packed for its entry (``packed_outcome``).

Why: every event's pending entry and every label's closed entry is packed for the state writer
when it is made (``entry_record``; ``state.JoinMap``), so that the write-out before a barrier,
which holds up every record, only copies it. Flink's keyed state holds what PyFlink's state API
would have written, a pickle. Compiled by mypyc, a change cost about 6,300 instructions:
``pickle.dumps`` makes a pickler, a memo and a frame per call, and the lengths and the parts
were packed and joined one by one (bench/HISTORY.md, thirty-ninth session). Here the whole
change is written into one bytes object. An entry is a short flat tuple of ints, floats,
strings, bytes, booleans and None (``state_writes.JoinEntry``), whose pickle is simple enough to
write directly, with the same opcodes in the same order as the C pickler's (protocol 4: one
frame, each string, bytes and the tuple memoized, an object met twice referenced by its memo
index), so the state's bytes do not change (``tests/unit/test_entry_records.py`` holds the two
equal on any such tuple).

Anything else (another type, an integer past 64 bits, a string with lone surrogates, a tuple of
more than ``MOST_ITEMS``, a pickle of 64 KiB or more, where the pickler splits its frames, or a
default protocol other than 4 or 5) is pickled by ``pickle.dumps`` itself, as is every entry
when the package runs from its sources. Compiled by Cython from this same file (its "pure
Python" mode), like ``features/rings.py``.
"""

from __future__ import annotations

import pickle
import struct

import cython

if cython.compiled:
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.cpython.long import PyLong_AsLongLongAndOverflow
    from cython.cimports.libc.string import memcpy

# A change's length field when there are no bytes after it: ``StateWriter``'s marker of an
# unchanged value, and of a removed join entry.
UNCHANGED = -1
_LENGTH = struct.Struct(">i")

PROTOCOL = pickle.DEFAULT_PROTOCOL
_PROTOCOL = cython.declare(cython.int, PROTOCOL)
# Protocol 5 writes what protocol 4 does for these types, but for its number.
_WRITTEN_HERE = cython.declare(cython.bint, PROTOCOL in (4, 5))
MOST_ITEMS = 16
_MOST_ITEMS = cython.declare(cython.Py_ssize_t, MOST_ITEMS)
# The C pickler ends a frame once it holds this much (and writes a larger string or bytes
# outside any frame): a pickle this long or longer is left to it.
_FRAME_TARGET = cython.declare(cython.Py_ssize_t, 64 * 1024)

# What each item is, as pass one finds it for pass two.
_INT = cython.declare(cython.int, 0)
_LONG = cython.declare(cython.int, 1)  # past 32 bits: LONG1
_FLOAT = cython.declare(cython.int, 2)
_TEXT = cython.declare(cython.int, 3)  # str, as its UTF-8 bytes
_BYTES = cython.declare(cython.int, 4)
_AGAIN = cython.declare(cython.int, 5)  # a string or bytes object met before: its memo index
_NONE = cython.declare(cython.int, 6)
_TRUE = cython.declare(cython.int, 7)
_FALSE = cython.declare(cython.int, 8)


def entry_record(event_id: str, entry: tuple | None) -> bytes:
    """One join entry's change as ``state_writes.StateWriter`` packs it, big-endian: its event
    id (length and UTF-8 bytes), then its pickled entry (length and ``pickle.dumps``'s bytes),
    or the length ``UNCHANGED`` to remove it."""
    key: bytes = cython.cast(str, event_id).encode("utf-8")
    if entry is None:
        return _LENGTH.pack(len(key)) + key + _LENGTH.pack(UNCHANGED)
    if cython.compiled and _WRITTEN_HERE:
        written = _written(entry, key)
        if written is not None:
            return written
    raw = pickle.dumps(entry)
    return _LENGTH.pack(len(key)) + key + _LENGTH.pack(len(raw)) + raw


# A pending outcome's packed numbers (``state.pack``): event time, amount, score, champion and
# challenger scores (NaN for none), decision, arm and canary percent, then the vector's doubles,
# little-endian (``state._HEAD``'s format, which ``state.unpack`` reads).
OUTCOME_HEAD = "<qddddBBB"
_OUTCOME_HEAD_SIZE = cython.declare(cython.Py_ssize_t, struct.calcsize(OUTCOME_HEAD))
if struct.pack("=d", 1.0) != struct.pack("<d", 1.0):
    raise ImportError("streamscore packs outcomes on little-endian machines only")


def packed_outcome(
    event_time: cython.longlong,
    amount: cython.double,
    score: cython.double,
    champion: cython.double,
    challenger: cython.double,
    decision: cython.int,
    arm: cython.int,
    percent: cython.int,
    vector: list,
) -> bytes:
    """The bytes of ``struct.pack(OUTCOME_HEAD + f"{len(vector)}d", ...)``, written in C (the
    struct call parsed every number of the vector as an argument: about 7,500 instructions per
    event, bench/HISTORY.md, thirty-ninth session)."""
    if not (0 <= decision <= 255 and 0 <= arm <= 255 and 0 <= percent <= 255):
        raise ValueError(f"decision {decision}, arm {arm}, percent {percent}: not bytes")
    count: cython.Py_ssize_t = len(vector)
    if not cython.compiled:
        return struct.pack(
            f"{OUTCOME_HEAD}{count}d",
            event_time, amount, score, champion, challenger, decision, arm, percent, *vector,
        )  # fmt: skip
    out = PyBytes_FromStringAndSize(cython.NULL, _OUTCOME_HEAD_SIZE + 8 * count)
    at: cython.p_char = PyBytes_AS_STRING(out)
    memcpy(at, cython.address(event_time), 8)
    memcpy(at + 8, cython.address(amount), 8)
    memcpy(at + 16, cython.address(score), 8)
    memcpy(at + 24, cython.address(champion), 8)
    memcpy(at + 32, cython.address(challenger), 8)
    at[40] = decision
    at[41] = arm
    at[42] = percent
    at += 43
    value: cython.double
    i: cython.Py_ssize_t
    for i in range(count):
        value = vector[i]
        memcpy(at + 8 * i, cython.address(value), 8)
    return out


def pickled_tuple(value: tuple) -> bytes:
    """``pickle.dumps(value)``: the same bytes."""
    if cython.compiled and _WRITTEN_HERE:
        written = _written(value, None)
        if written is not None:
            return written
    return pickle.dumps(value)


@cython.cfunc
@cython.inline
def _put_int(out: cython.p_uchar, value: cython.longlong) -> cython.void:
    """A 4-byte big-endian length."""
    k: cython.int
    for k in range(4):
        out[k] = (value >> (24 - 8 * k)) & 0xFF


@cython.cfunc
@cython.exceptval(-1)
def _long_bytes(value: cython.longlong, out: cython.p_uchar) -> cython.int:
    """``value`` as the C pickler writes a long past 32 bits (LONG1's payload): its two's
    complement, little-endian, in (bits of its magnitude) // 8 + 1 bytes, less a last 0xFF
    that only repeats the sign. Writes them to ``out`` (9 bytes of room); returns how many."""
    negative: cython.bint = value < 0
    bits: cython.ulonglong = cython.cast(cython.ulonglong, value)
    magnitude: cython.ulonglong = (0 - bits) if negative else bits
    width: cython.int = 0
    while magnitude:
        width += 1
        magnitude >>= 1
    count: cython.int = (width >> 3) + 1
    i: cython.int
    for i in range(count):
        if i < 8:
            out[i] = (bits >> (8 * i)) & 0xFF
        else:
            out[i] = 0xFF if negative else 0
    if negative and count > 1 and out[count - 1] == 0xFF and (out[count - 2] & 0x80):
        count -= 1
    return count


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
def _written(value: tuple, key: bytes | None) -> object:
    """``value``'s pickle, or None where ``pickle.dumps`` must make it; with ``key`` (bytes),
    ``entry_record``'s whole change."""
    count: cython.Py_ssize_t = len(value)
    if count == 0 or count > _MOST_ITEMS:
        return None
    kinds = cython.declare(cython.int[16])
    numbers = cython.declare(cython.longlong[16])
    floats = cython.declare(cython.double[16])
    scratch = cython.declare(cython.uchar[9])
    payloads: list = [None] * count
    memo: list = []  # strings and bytes objects, in the order the pickler memoizes them
    body: cython.Py_ssize_t = 1  # STOP
    i: cython.Py_ssize_t
    j: cython.Py_ssize_t
    overflow: cython.int = 0
    number: cython.longlong
    size: cython.Py_ssize_t
    for i in range(count):
        item = value[i]
        kind = type(item)
        if item is None:
            kinds[i] = _NONE
            body += 1
        elif kind is bool:
            kinds[i] = _TRUE if item else _FALSE
            body += 1
        elif kind is int:
            number = PyLong_AsLongLongAndOverflow(item, cython.address(overflow))
            if overflow:
                return None
            numbers[i] = number
            if -0x80000000 <= number <= 0x7FFFFFFF:
                kinds[i] = _INT
                body += 2 if 0 <= number <= 0xFF else (3 if 0 <= number <= 0xFFFF else 5)
            else:
                kinds[i] = _LONG
                body += 2 + _long_bytes(number, scratch)  # opcode, length, the bytes
        elif kind is float:
            kinds[i] = _FLOAT
            floats[i] = item
            body += 9
        elif kind is str or kind is bytes:
            for j in range(len(memo)):
                if memo[j] is item:
                    kinds[i] = _AGAIN
                    numbers[i] = j
                    body += 2
                    break
            else:
                if kind is str:
                    try:  # (cast: encoding a str is then a C call, not a method's lookup)
                        payload = cython.cast(str, item).encode("utf-8")
                    except UnicodeEncodeError:  # lone surrogates: the pickler's own way
                        return None
                    kinds[i] = _TEXT
                else:
                    payload = item
                    kinds[i] = _BYTES
                payloads[i] = payload
                memo.append(item)
                size = len(payload)
                body += (2 if size < 256 else 5) + size + 1
        else:
            return None
    body += 2 if count <= 3 else 3  # TUPLEn, or MARK and TUPLE; then the tuple's MEMOIZE
    if body + 11 >= _FRAME_TARGET:
        return None
    # Pass two, into a bytes object of the change's or the pickle's length.
    head: cython.Py_ssize_t = 0 if key is None else 8 + len(key)
    buffer = PyBytes_FromStringAndSize(cython.NULL, head + body + 11)
    start: cython.p_uchar = cython.cast(cython.p_uchar, PyBytes_AS_STRING(buffer))
    if key is not None:
        _put_int(start, len(key))
        memcpy(start + 4, PyBytes_AS_STRING(key), len(key))
        _put_int(start + 4 + len(key), body + 11)
        start += head
    out: cython.p_uchar = start + 11  # after PROTO and FRAME, whose length comes last
    if count > 3:
        out[0] = 0x28  # MARK
        out += 1
    bits: cython.ulonglong
    k: cython.int
    for i in range(count):
        if kinds[i] == _NONE:
            out[0] = 0x4E  # NONE
            out += 1
        elif kinds[i] == _TRUE or kinds[i] == _FALSE:
            out[0] = 0x88 if kinds[i] == _TRUE else 0x89  # NEWTRUE, NEWFALSE
            out += 1
        elif kinds[i] == _INT:
            number = numbers[i]
            bits = cython.cast(cython.ulonglong, number)
            if 0 <= number <= 0xFF:
                out[0] = 0x4B  # BININT1
                out[1] = number
                out += 2
            elif 0 <= number <= 0xFFFF:
                out[0] = 0x4D  # BININT2
                out[1] = number & 0xFF
                out[2] = number >> 8
                out += 3
            else:
                out[0] = 0x4A  # BININT, 4 bytes little-endian
                for k in range(4):
                    out[1 + k] = (bits >> (8 * k)) & 0xFF
                out += 5
        elif kinds[i] == _LONG:
            out[0] = 0x8A  # LONG1
            k = _long_bytes(numbers[i], out + 2)
            out[1] = k
            out += 2 + k
        elif kinds[i] == _FLOAT:
            out[0] = 0x47  # BINFLOAT, 8 bytes big-endian
            memcpy(cython.address(bits), cython.address(floats[i]), 8)
            for k in range(8):
                out[1 + k] = (bits >> (56 - 8 * k)) & 0xFF
            out += 9
        elif kinds[i] == _AGAIN:
            out[0] = 0x68  # BINGET
            out[1] = numbers[i]
            out += 2
        else:
            payload = payloads[i]
            size = len(payload)
            if size < 256:
                out[0] = 0x8C if kinds[i] == _TEXT else 0x43  # SHORT_BINUNICODE, SHORT_BINBYTES
                out[1] = size
                out += 2
            else:
                out[0] = 0x58 if kinds[i] == _TEXT else 0x42  # BINUNICODE, BINBYTES
                for k in range(4):
                    out[1 + k] = (size >> (8 * k)) & 0xFF
                out += 5
            memcpy(out, PyBytes_AS_STRING(payload), size)
            out[size] = 0x94  # MEMOIZE
            out += size + 1
    if count <= 3:
        out[0] = 0x84 + count  # TUPLE1, TUPLE2, TUPLE3
    else:
        out[0] = 0x74  # TUPLE
    out[1] = 0x94  # MEMOIZE
    out[2] = 0x2E  # STOP
    out += 3
    frame: cython.ulonglong = body
    start[0] = 0x80  # PROTO
    start[1] = _PROTOCOL
    start[2] = 0x95  # FRAME, its length as 8 bytes little-endian
    for k in range(8):
        start[3 + k] = (frame >> (8 * k)) & 0xFF
    if out - start != body + 11:  # (cannot happen: pass one counted what pass two wrote)
        raise AssertionError(f"pickled {out - start} bytes of {body + 11}")
    return buffer
