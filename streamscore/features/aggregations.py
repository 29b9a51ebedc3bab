"""The numeric aggregations a window can compute, each in one entry of one table.

A window is tiled into buckets; each bucket keeps one cell ``[count, sum, max]`` of the values
that fell into it. Reading a window merges the cells of its live buckets, and each aggregation
turns the merged cell into its value. To add an aggregation, add its class and its entry to
``AGGREGATIONS`` (and, if it needs a statistic the cell lacks, the statistic to the three cell
functions and ``Cell`` below): the feature set can then name it, the engine computes it, the
names follow.
"""

from __future__ import annotations

# bucket index -> cell [count, sum, max], updated in place
Buckets = dict[int, list[float]]


class Cell:
    """The merged statistics of a window's live buckets, as the aggregations see them.

    A plain class, not a named tuple: compiled, making one (once per window and event) is a
    native allocation, where a named tuple's ``__new__`` runs as Python."""

    def __init__(self, events: float, total: float, top: float) -> None:
        self.events = events  # how many (a float: the cells are lists of floats)
        self.total = total
        self.top = top

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and (self.events, self.total, self.top) == (
            other.events, other.total, other.top,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"Cell(events={self.events}, total={self.total}, top={self.top})"


def add_to_buckets(buckets: Buckets, k: int, value: float) -> None:
    """Fold one value into bucket ``k``."""
    cell = buckets.get(k)
    if cell is None:
        buckets[k] = [1, value, value]
    else:
        cell[0] += 1
        cell[1] += value
        if value > cell[2]:
            cell[2] = value


def merge_live(buckets: Buckets, k_first: int, k_last: int) -> Cell:
    """Merge the cells of buckets ``k_first < k <= k_last``; none gives ``Cell(0, 0.0, 0.0)``.

    A map holds buckets kept for late events beyond the window (``retention_slack_ms``: in a
    drain the 1-minute window's map holds about 17 buckets for its 6 live ones), so when the
    window spans fewer buckets than the map holds, each of its buckets is looked up rather
    than every bucket visited. (The cells are then added in bucket order rather than the
    order they were made in, which differs in the last bits of a sum when events came out of
    order; online and offline run this same code on the same state.)"""
    events = 0.0
    total = 0.0
    top = 0.0
    if k_last - k_first <= len(buckets):
        k = k_first + 1
        while k <= k_last:
            cell = buckets.get(k)
            if cell is not None:
                events += cell[0]
                total += cell[1]
                if cell[2] > top:
                    top = cell[2]
            k += 1
        return Cell(events, total, top)
    for k, (c, s, m) in buckets.items():
        if k_first < k <= k_last:
            events += c
            total += s
            if m > top:
                top = m
    return Cell(events, total, top)


class Aggregation:
    """One aggregation: a window's merged cell to its value. Classes rather than functions so
    that, compiled, each call is a direct method call."""

    def value(self, cell: Cell) -> float:
        raise NotImplementedError


class _Count(Aggregation):
    def value(self, cell: Cell) -> float:
        return float(cell.events)


class _Sum(Aggregation):
    def value(self, cell: Cell) -> float:
        return cell.total


class _Mean(Aggregation):
    def value(self, cell: Cell) -> float:
        return cell.total / cell.events if cell.events else 0.0


class _Max(Aggregation):
    def value(self, cell: Cell) -> float:
        return cell.top


AGGREGATIONS: dict[str, Aggregation] = {
    "count": _Count(),
    "sum": _Sum(),
    "mean": _Mean(),
    "max": _Max(),
}
