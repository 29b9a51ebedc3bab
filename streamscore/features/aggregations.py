"""The numeric aggregations a window can compute, each in one entry of one table.

A window is tiled into buckets; each bucket keeps one cell (count, sum, max) of the values that
fell into it (``rings.py``). Reading a window merges the cells of its live buckets into a
``Merged``, and each aggregation turns that into its value. To add an aggregation, add its class
and its entry to ``AGGREGATIONS`` (and, if it needs a statistic the cell lacks, the statistic to
the cells and the merge in ``rings.py``): the feature set can then name it, the engine computes
it, the names follow.
"""

from __future__ import annotations

from typing import Final

from streamscore.features.rings import Merged


class Aggregation:
    """One aggregation: a window's merged cell to its value. Classes rather than functions so
    that, compiled, each call is a direct method call."""

    def value(self, cell: Merged) -> float:
        raise NotImplementedError


class _Count(Aggregation):
    def value(self, cell: Merged) -> float:
        return float(cell.events)


class _Sum(Aggregation):
    def value(self, cell: Merged) -> float:
        return cell.total


class _Mean(Aggregation):
    def value(self, cell: Merged) -> float:
        return cell.total / cell.events if cell.events else 0.0


class _Max(Aggregation):
    def value(self, cell: Merged) -> float:
        return cell.top


AGGREGATIONS: Final[dict[str, Aggregation]] = {
    "count": _Count(),
    "sum": _Sum(),
    "mean": _Mean(),
    "max": _Max(),
}
