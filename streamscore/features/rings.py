"""A user's numeric windows as rings of bucket cells in one array of doubles, read without boxing.

Why: a window's buckets used to be a dict of small lists (bucket index → ``[count, sum, max]``),
each list and each float its own object on the heap. While a backlog drains over 10,000 users
none of them is in the CPU's caches, and reading a window followed a pointer per bucket and per
number: the 1-minute window cost 4.2 µs per event over 10,000 users' state against 1.6 over 100
(bench/HISTORY.md, twenty-sixth session). Here a user's numeric windows are one
``array("d")``, each window a ring of ``ring_size`` cells of three doubles after its head (the
newest bucket index folded in) and its ring size, so a window's read is a few adjacent cache
lines, and the array says its own layout (``pack`` needs nothing else).

Compiled by Cython from this same file (its "pure Python" mode: the ``cython`` decorators and
types are ignored when the file runs as Python), so the sources stay the one definition and run
unchanged with ``STREAMSCORE_PURE_PYTHON=1``.

Why a ring of ``reach // bucket + 2`` cells holds every bucket a read can count: a read of the
user's windows counts bucket ``k`` only if ``k >= (newest - reach) // bucket`` (``compiled.py``:
older buckets have expired), and ``newest // bucket - (newest - reach) // bucket <= reach //
bucket + 1``. So a bucket ``ring_size`` or more below the head can never be read again: the ring
reuses its cell, and a late event whose bucket is that old is not folded in (the dict kept it
until its next expiry step, unread).
"""

from __future__ import annotations

from array import array

import cython

if cython.compiled:
    from cython.cimports.cpython.buffer import (
        PyBUF_FORMAT,
        PyBUF_WRITABLE,
        PyBuffer_Release,
        PyObject_GetBuffer,
    )
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.cpython.object import Py_buffer

# A cell: count, sum, max (as the dicts' lists were). A window: its head and ring size
# (``WINDOW_HEADER`` doubles), then its ring of cells.
CELL = cython.declare(cython.Py_ssize_t, 3)
WINDOW_HEADER = cython.declare(cython.Py_ssize_t, 2)
# The head of a window that has folded in nothing: below any bucket index.
NO_BUCKET = cython.declare(cython.double, -(2.0**62))

# The aggregations a numeric window computes, each from the merged cell of its live buckets
# (how many events, their sum, their largest value), by the name the feature set gives them
# (definitions.py) → the code ``merge_add_and_emit`` takes. To add one: its code here, its case
# in ``_merge_add_and_emit`` (and, if it needs a statistic the cells lack, the statistic in the
# cells and the merge). Codes are one byte each.
COUNT = cython.declare(cython.int, 0)
SUM = cython.declare(cython.int, 1)
MEAN = cython.declare(cython.int, 2)
MAX = cython.declare(cython.int, 3)
AGGREGATIONS: dict[str, int] = {"count": COUNT, "sum": SUM, "mean": MEAN, "max": MAX}


def ring_size(reach_ms: int, bucket_ms: int) -> int:
    """Cells in the ring of a window whose buckets stay readable for ``reach_ms``."""
    return reach_ms // bucket_ms + 2


@cython.ccall
@cython.exceptval(check=False)
def window_width(ring: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """Doubles a window of ``ring`` cells takes in a user's array: its header and its cells."""
    return WINDOW_HEADER + ring * CELL


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def new_cells(rings: tuple[int, ...]) -> array:
    """Empty windows of the given ring sizes, laid out one after the other."""
    size: cython.Py_ssize_t = 0
    ring: cython.Py_ssize_t
    for ring in rings:
        size += window_width(ring)
    cells = array("d", bytes(8 * size))
    view: cython.double[::1] = cells
    base: cython.Py_ssize_t = 0
    for ring in rings:
        view[base] = NO_BUCKET
        view[base + 1] = ring
        base += window_width(ring)
    return cells


@cython.cfunc
@cython.inline
@cython.cdivision(True)
@cython.exceptval(check=False)
def _cell(base: cython.Py_ssize_t, k: cython.longlong, ring: cython.longlong) -> cython.Py_ssize_t:
    """Where bucket ``k``'s cell starts in the array: in the window at ``base``, at its ring's
    place ``k mod ring`` (never negative)."""
    i: cython.longlong = k % ring
    if i < 0:
        i += ring
    return base + WINDOW_HEADER + i * CELL


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
def merge_add_and_emit(
    out: list,
    cells: object,
    base: cython.Py_ssize_t,
    k_first: cython.longlong,
    k_event: cython.longlong,
    value: cython.double,
    aggregations: bytes,
) -> None:
    """Merges the cells of buckets ``k_first < k <= k_event`` of the window at ``base`` of
    ``cells`` (an ``array("d")``; in bucket order, as the dicts were read), appends to ``out``
    each of ``aggregations`` (``AGGREGATIONS``' codes, one byte each) of the merged cell, then
    folds ``value`` into bucket ``k_event``.

    One call per window and event, the aggregations included: a merged cell returned as an
    object, its fields read back and boxed by each aggregation's Python call, and the array's
    buffer taken as a typed memoryview cost about 4,500 instructions per window and event
    (bench/HISTORY.md, forty-eighth session)."""
    n: cython.Py_ssize_t
    data: cython.p_double
    if cython.compiled:
        view = cython.declare(Py_buffer)
        PyObject_GetBuffer(cells, cython.address(view), PyBUF_WRITABLE | PyBUF_FORMAT)
        try:
            if view.itemsize != 8 or view.format[0] != ord("d") or view.format[1] != 0:
                raise TypeError("the cells are not an array of doubles")
            data = cython.cast(cython.p_double, view.buf)
            n = view.len // 8
            _merge_add_and_emit(out, data, n, base, k_first, k_event, value, aggregations)
        finally:
            PyBuffer_Release(cython.address(view))
    else:
        if not isinstance(cells, array) or cells.typecode != "d":
            raise TypeError("the cells are not an array of doubles")
        _merge_add_and_emit(out, cells, len(cells), base, k_first, k_event, value, aggregations)


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
def _merge_add_and_emit(
    out: list,
    cells: cython.p_double,
    n: cython.Py_ssize_t,
    base: cython.Py_ssize_t,
    k_first: cython.longlong,
    k_event: cython.longlong,
    value: cython.double,
    aggregations: bytes,
) -> cython.int:
    """``merge_add_and_emit`` on the ``n`` doubles at ``cells``."""
    if base < 0 or base + WINDOW_HEADER > n:
        raise IndexError(f"no window at {base} of {n} cells")
    head: cython.longlong = cython.cast(cython.longlong, cells[base])
    ring: cython.longlong = cython.cast(cython.longlong, cells[base + 1])
    if ring < 1 or base + window_width(ring) > n:
        raise IndexError(f"the window at {base} of {n} cells has a ring of {ring}")
    lo: cython.longlong = max(k_first + 1, head - ring + 1)
    hi: cython.longlong = min(k_event, head)
    events: cython.double = 0.0
    total: cython.double = 0.0
    top: cython.double = 0.0
    k: cython.longlong = lo
    i: cython.Py_ssize_t
    while k <= hi:
        i = _cell(base, k, ring)
        if cells[i] > 0.0:
            events += cells[i]
            total += cells[i + 1]
            if cells[i + 2] > top:
                top = cells[i + 2]
        k += 1
    code: cython.int
    for code in aggregations:
        if code == COUNT:
            out.append(events)
        elif code == SUM:
            out.append(total)
        elif code == MEAN:
            out.append(total / events if events != 0.0 else 0.0)
        elif code == MAX:
            out.append(top)
        else:
            raise ValueError(f"no aggregation has the code {code}")
    if k_event > head:
        # The ring moves on: the cells of the buckets it passes over are emptied.
        stop: cython.longlong = min(k_event, head + ring)
        k = head + 1
        while k <= stop:
            i = _cell(base, k, ring)
            cells[i] = 0.0
            cells[i + 1] = 0.0
            cells[i + 2] = 0.0
            k += 1
        cells[base] = cython.cast(cython.double, k_event)
    elif k_event <= head - ring:
        return 0  # older than any bucket a read can count again
    i = _cell(base, k_event, ring)
    if cells[i] > 0.0:
        cells[i] += 1.0
        cells[i + 1] += value
        if value > cells[i + 2]:
            cells[i + 2] = value
    else:
        cells[i] = 1.0
        cells[i + 1] = value
        cells[i + 2] = value
    return 0


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def pack(cells: cython.double[::1]) -> bytes:
    """``cells`` without its empty cells, as doubles: per window its header and how many cells
    it keeps, then each kept cell's place in the ring and its three numbers. What a user's
    state pickles as (a fifth to a third of the whole array in a drain)."""
    n: cython.Py_ssize_t = len(cells)
    size: cython.Py_ssize_t = 0
    base: cython.Py_ssize_t = 0
    ring: cython.Py_ssize_t
    j: cython.Py_ssize_t
    i: cython.Py_ssize_t
    while base < n:
        ring = cython.cast(cython.Py_ssize_t, cells[base + 1])
        size += WINDOW_HEADER + 1
        for j in range(ring):
            if cells[base + WINDOW_HEADER + j * CELL] > 0.0:
                size += 1 + CELL
        base += window_width(ring)
    # Compiled, written straight into the bytes returned (an array's buffer, then its copy into
    # bytes, was a third of the time); as Python, into an array.
    out: cython.p_double
    if cython.compiled:
        packed = PyBytes_FromStringAndSize(cython.NULL, 8 * size)
        out = cython.cast(cython.p_double, PyBytes_AS_STRING(packed))
    else:
        packed = array("d", bytes(8 * size))
        out = packed
    at: cython.Py_ssize_t = 0
    at_kept: cython.Py_ssize_t
    kept: cython.Py_ssize_t
    base = 0
    while base < n:
        ring = cython.cast(cython.Py_ssize_t, cells[base + 1])
        out[at] = cells[base]
        out[at + 1] = ring
        at_kept = at + WINDOW_HEADER
        at += WINDOW_HEADER + 1
        kept = 0
        for j in range(ring):
            i = base + WINDOW_HEADER + j * CELL
            if cells[i] > 0.0:
                out[at] = j
                out[at + 1] = cells[i]
                out[at + 2] = cells[i + 1]
                out[at + 3] = cells[i + 2]
                at += 1 + CELL
                kept += 1
        out[at_kept] = kept
        base += window_width(ring)
    return packed if cython.compiled else packed.tobytes()


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def unpack(packed: bytes) -> array:
    """The cells ``pack`` packed."""
    flat = array("d")
    flat.frombytes(packed)
    source: cython.double[::1] = flat
    n: cython.Py_ssize_t = len(source)
    rings: list[int] = []
    at: cython.Py_ssize_t = 0
    while at < n:
        if at + WINDOW_HEADER + 1 > n:
            raise ValueError("packed cells: the last window is cut short")
        rings.append(cython.cast(cython.Py_ssize_t, source[at + 1]))
        at += WINDOW_HEADER + 1 + cython.cast(cython.Py_ssize_t, source[at + 2]) * (1 + CELL)
    if at != n:
        raise ValueError("packed cells: the last window is cut short")
    cells = new_cells(tuple(rings))
    view: cython.double[::1] = cells
    at = 0
    base: cython.Py_ssize_t = 0
    ring: cython.Py_ssize_t
    kept: cython.Py_ssize_t
    i: cython.Py_ssize_t
    j: cython.Py_ssize_t
    for ring in rings:
        view[base] = source[at]
        kept = cython.cast(cython.Py_ssize_t, source[at + 2])
        at += WINDOW_HEADER + 1
        for _ in range(kept):
            j = cython.cast(cython.Py_ssize_t, source[at])
            if j < 0 or j >= ring:
                raise ValueError(f"packed cells: a cell at {j} of a ring of {ring}")
            i = base + WINDOW_HEADER + j * CELL
            view[i] = source[at + 1]
            view[i + 1] = source[at + 2]
            view[i + 2] = source[at + 3]
            at += 1 + CELL
        base += window_width(ring)
    return cells
