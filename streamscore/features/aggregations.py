"""The numeric aggregations a window can compute, each in one entry of one table.

A window is tiled into buckets; each bucket keeps one cell ``[count, sum, max]`` of the values
that fell into it. Reading a window merges the cells of its live buckets, and each aggregation
turns the merged cell into its value. To add an aggregation, add its entry to ``AGGREGATIONS``
(and, if it needs a statistic the cell lacks, the statistic to the three cell functions and
``Cell`` below): the feature set can then name it, the engine computes it, the names follow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

# bucket index -> cell [count, sum, max], updated in place
Buckets = dict[int, list[float]]


class Cell(NamedTuple):
    """The merged statistics of a window's live buckets, as the aggregations see them."""

    events: float  # how many (a float: the cells are lists of floats)
    total: float
    top: float


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
    """Merge the cells of buckets ``k_first < k <= k_last``; none gives ``Cell(0, 0.0, 0.0)``."""
    events = 0.0
    total = 0.0
    top = 0.0
    for k, (c, s, m) in buckets.items():
        if k_first < k <= k_last:
            events += c
            total += s
            if m > top:
                top = m
    return _new_cell((events, total, top))


# tuple.__new__ straight away: Cell(...) goes through a Python-level __new__, and this runs for
# every window of every event.
_new_cell = Cell._make

Aggregation = Callable[[Cell], float]

AGGREGATIONS: dict[str, Aggregation] = {
    "count": lambda cell: float(cell.events),
    "sum": lambda cell: cell.total,
    "mean": lambda cell: cell.total / cell.events if cell.events else 0.0,
    "max": lambda cell: cell.top,
}
