"""The metric values the scoring path updates per record: counters, histograms and gauges, by label.

Kept apart from ``metrics.py`` (the registry, the collector and the HTTP endpoint) so that they
are compiled with the scoring path (``native.py``): the operator updates four of them per event
and one per label, and, compiled, each update is a direct call into a native class instead of a
call of an interpreted Python method (about 1,400 instructions each; compiled, the operator
executed 3 % fewer instructions per record: ``bench/operator_instructions.py``, fourteenth
session in ``bench/HISTORY.md``). prometheus-client's own ``Counter`` and ``Histogram`` also
take a lock per update; these do not: each value is written by one task thread, and a scrape
may read one a few events stale.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)


class CounterChild:
    """One labelled counter's (or gauge's) value."""

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramChild:
    """Counts per bucket (upper bounds ``bounds``, then +Inf) and the sum of what was observed."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts: list[int] = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class Family:
    """A metric's name, help text and label names, and its values by label values."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.children: dict[tuple[str, ...], CounterChild] = {}

    def labels(self, *values: str) -> CounterChild:
        """The value for these label values, made at its first use."""
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = CounterChild()
        return child

    def collect(self) -> Metric:
        """prometheus-client's family of this metric, with a sample per label values."""
        family = self._empty_family()
        for values, child in list(self.children.items()):
            family.add_metric(list(values), child.value)
        return family

    def _empty_family(self) -> Any:
        raise NotImplementedError


class LabelledCounter(Family):
    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def _empty_family(self) -> Any:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)


class Gauge(Family):
    def _empty_family(self) -> Any:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)


class Histogram(Family):
    """An unlabelled histogram."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        super().__init__(name, documentation, ())
        self.child = HistogramChild(buckets)

    def observe(self, value: float) -> None:
        self.child.observe(value)

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation)
        cumulative, buckets = 0, []
        for bound, count in zip((*self.child.bounds, float("inf")), list(self.child.counts)):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric([], buckets, self.child.sum)
        return family
