"""Data drift: each feature's and the score's live distribution against the training reference.

At train time every feature and the model's score get a **reference**: quantile bin edges and
the training counts per bin (``reference_metadata``, stored in the model's metadata), over all
training rows. Not over the time-ordered holdout alone: that is the training period's last
fifth, and features over long windows (counts per hour, per day) are larger there than over the
whole period, so a job that replays the same period would look drifted. The cost is a score
reference from rows the model has seen, a little sharper than on new rows.
In the job, ``DriftMonitor.observe`` adds one count per variable to the bin of its value, in a
slot of event time; when Prometheus scrapes, ``samples`` sums the slots of each sliding window
(5 min and 1 h of event time by default, ending at the newest event seen) and computes the
**PSI** (population stability index) and the **Jensen–Shannon distance** against the reference.

Why binning at train time: the per-event cost is one ``bisect`` per variable (no sorting, no
stored values), and the distances cost nothing on the hot path. Why event time: a replayed
backlog must show the drift of the hour it replays, not of the minute it was replayed in.

Bins: up to ``BINS`` quantile bins (ties collapse, so a 0/1 flag has two bins), one more above
the last edge, and one for missing values (NaN). A value below every edge, such as an unseen
category encoded -1, falls in the first bin. Both sides are smoothed by ``SMOOTHING`` counts per
bin, so an empty bin gives a large but finite PSI. Below ``min_events`` events in a window the
distances are not exported: a handful of events would always look drifted.

Each scoring subtask sees a hash partition of the users and exports its own distances;
Prometheus averages them (``streamscore:drift_psi:avg`` in monitoring/rules.yml).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from streamscore.features.engine import as_list
from streamscore.monitoring.bin_counts import BinCounter, new_counts

BINS: Final = 10
SMOOTHING: Final = 0.5
SLOTS_PER_WINDOW: Final = 10  # the shortest window is summed from this many slots of event time
KIND_FEATURE: Final = "feature"
KIND_SCORE: Final = "score"
SCORE_VARIABLE: Final = "score"
METADATA_KEY: Final = "drift_reference"


@dataclass(frozen=True)
class Reference:
    """One variable's training distribution: ``counts`` has ``len(edges) + 2`` bins, the last
    one for NaN."""

    variable: str
    kind: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def bins(self) -> int:
        return len(self.counts)

    def to_json(self) -> dict[str, Any]:
        return {
            "variable": self.variable,
            "kind": self.kind,
            "edges": list(self.edges),
            "counts": list(self.counts),
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Reference:
        edges = tuple(float(e) for e in data["edges"])
        counts = tuple(int(c) for c in data["counts"])
        if len(counts) != len(edges) + 2:
            raise ValueError(
                f"reference of {data['variable']!r}: {len(counts)} counts for {len(edges)} edges "
                "(want edges + 2)"
            )
        return Reference(str(data["variable"]), str(data["kind"]), edges, counts)


def bin_of(edges: list[float], value: float) -> int:
    """The bin of ``value``: ``i`` for ``edges[i-1] < value <= edges[i]``; NaN gets the last.

    The definition, and the training reference's binning; per scored event the job bins with
    ``bin_counts.BinCounter``, the same search in C."""
    if value != value:  # NaN
        return len(edges) + 1
    low, high = 0, len(edges)
    while low < high:
        middle = (low + high) // 2
        if edges[middle] < value:
            low = middle + 1
        else:
            high = middle
    return low


def build_reference(variable: str, kind: str, values: np.ndarray, bins: int = BINS) -> Reference:
    """Quantile edges of ``values`` (NaN ignored) and the count of values in each bin."""
    finite = values[~np.isnan(values)]
    if finite.size:
        quantiles = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf")
        edges = tuple(float(q) for q in np.unique(quantiles))
    else:
        edges = ()
    counts = [0] * (len(edges) + 2)
    edge_list = list(edges)
    for value in values.tolist():
        counts[bin_of(edge_list, value)] += 1
    return Reference(variable, kind, edges, tuple(counts))


def reference_metadata(
    feature_names: Sequence[str], features: np.ndarray, scores: np.ndarray
) -> list[dict[str, Any]]:
    """The JSON the model's metadata keeps under ``METADATA_KEY``: every feature and the score,
    over the same rows."""
    references = [
        build_reference(name, KIND_FEATURE, features[:, i]) for i, name in enumerate(feature_names)
    ]
    references.append(build_reference(SCORE_VARIABLE, KIND_SCORE, np.asarray(scores, float)))
    return [r.to_json() for r in references]


def references_of(metadata: dict[str, Any]) -> list[Reference] | None:
    """The references stored with a model, or None for a model trained before they existed."""
    stored = metadata.get(METADATA_KEY)
    if not stored:
        return None
    return [Reference.from_json(item) for item in stored]


def _proportions(counts: Sequence[float]) -> list[float]:
    total = sum(counts) + SMOOTHING * len(counts)
    return [(c + SMOOTHING) / total for c in counts]


def psi(reference: Sequence[float], live: Sequence[float]) -> float:
    """Population stability index: sum over bins of (live - ref) * ln(live / ref)."""
    expected, actual = _proportions(reference), _proportions(live)
    return sum((a - e) * math.log(a / e) for e, a in zip(expected, actual))


def js_distance(reference: Sequence[float], live: Sequence[float]) -> float:
    """Jensen–Shannon distance (the square root of the divergence, base 2): 0 same, 1 disjoint."""
    p, q = _proportions(reference), _proportions(live)
    divergence = 0.0
    for a, b in zip(p, q):
        m = (a + b) / 2
        divergence += 0.5 * a * math.log2(a / m) + 0.5 * b * math.log2(b / m)
    return math.sqrt(max(divergence, 0.0))


def window_label(seconds: int) -> str:
    """300 -> "5m", 3600 -> "1h", 90 -> "90s": the ``window`` label of the gauges."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


class DriftMonitor:
    """Bin counts per slot of event time for every reference, and the distances on demand.

    ``observe`` runs once per scored event (one task thread); ``samples`` runs on the metrics
    HTTP thread and only reads. A scrape that overlaps an update may read a count one event
    stale, which a distance over hundreds of events does not notice.
    """

    def __init__(
        self, references: Sequence[Reference], windows_s: Sequence[int], min_events: int
    ) -> None:
        self._references = list(references)
        self._features = [r for r in self._references if r.kind == KIND_FEATURE]
        # Each variable's first bin in a slot's flat count list; the score's block comes last.
        self._offsets = []
        offset = 0
        for reference in self._references:
            self._offsets.append(offset)
            offset += reference.bins
        self._width = offset
        self._windows_ms = sorted(int(w) * 1000 for w in windows_s)
        self._slot_ms = max(1000, self._windows_ms[0] // SLOTS_PER_WINDOW)
        self._min_events = min_events
        # The counter bins the features in the vector's order, then the score, each into its
        # block of the counts (the offsets above).
        offset_of = {id(r): o for r, o in zip(self._references, self._offsets)}
        score = [r for r in self._references if r.kind == KIND_SCORE]
        self._counter = BinCounter(
            [[float(e) for e in r.edges] for r in self._features],
            [float(e) for e in score[0].edges] if score else None,
            [offset_of[id(r)] for r in (*self._features, *score[:1])],
        )
        # slot of event time -> its flat counts (``bin_counts.new_counts``)
        self._slots: dict[int, Any] = {}
        self._slot_id = -1
        self._slot: Any = new_counts(self._width)
        self._counter.use(self._slot)
        self._newest = -1

    def observe(self, event_time: int, vector: Sequence[float], score: float | None) -> None:
        slot_id = event_time // self._slot_ms
        if slot_id != self._slot_id:
            slot = self._slots.get(slot_id)
            if slot is None:
                if self._newest >= 0 and event_time <= self._newest - self._windows_ms[-1]:
                    return  # older than the longest window: no gauge would count it
                slot = self._slots[slot_id] = new_counts(self._width)
                self._prune(slot_id)
            self._slot_id, self._slot = slot_id, slot
            self._counter.use(slot)
        if event_time > self._newest:
            self._newest = event_time
        self._counter.count(as_list(vector), score)

    def _prune(self, newest_slot: int) -> None:
        keep_from = newest_slot - self._windows_ms[-1] // self._slot_ms - 1
        for old in [s for s in self._slots if s < keep_from]:
            del self._slots[old]

    def window_counts(self, window_ms: int) -> list[int]:
        """The flat bin counts of the slots inside the window that ends at the newest event."""
        if self._newest < 0:
            return [0] * self._width
        newest_slot = self._newest // self._slot_ms
        # The slot that holds (newest - window) counts whole: the window is the last 5 min
        # rounded up to a slot (5 to 5.5 min), never less. Cutting off its oldest part would
        # empty the lowest bins of every feature that grows with a user's history (counts per
        # hour, distinct merchants), and PSI punishes an empty bin hard.
        first = newest_slot - window_ms // self._slot_ms
        total = [0] * self._width
        for slot_id, counts in list(self._slots.items()):
            if first <= slot_id <= newest_slot:
                total = [a + b for a, b in zip(total, counts)]
        return total

    def distances(self) -> Iterator[tuple[str, Reference, int, float, float]]:
        """(window label, reference, events in the window, PSI, JS distance) of every variable
        in every window with enough events."""
        for window_ms in self._windows_ms:
            label = window_label(window_ms // 1000)
            counts = self.window_counts(window_ms)
            for reference, offset in zip(self._references, self._offsets):
                live = counts[offset : offset + reference.bins]
                events = sum(live)
                if events < self._min_events:
                    continue
                yield (
                    label,
                    reference,
                    events,
                    psi(reference.counts, live),
                    js_distance(reference.counts, live),
                )

    def events_in_windows(self) -> dict[str, int]:
        first = self._features[0] if self._features else None
        result = {}
        for window_ms in self._windows_ms:
            counts = self.window_counts(window_ms)
            result[window_label(window_ms // 1000)] = sum(counts[: first.bins]) if first else 0
        return result

    def samples(self) -> Iterator[Metric]:
        """The Prometheus gauges (computed on scrape)."""
        labels = ["variable", "kind", "window"]
        psi_family = GaugeMetricFamily(
            "streamscore_drift_psi",
            "Population stability index of a feature or the score against the model's training "
            "reference, over a sliding window of event time",
            labels=labels,
        )
        js_family = GaugeMetricFamily(
            "streamscore_drift_js",
            "Jensen-Shannon distance (base 2) of a feature or the score against the training "
            "reference, over a sliding window of event time",
            labels=labels,
        )
        for window, reference, _events, psi_value, js_value in self.distances():
            psi_family.add_metric([reference.variable, reference.kind, window], psi_value)
            js_family.add_metric([reference.variable, reference.kind, window], js_value)
        events_family = GaugeMetricFamily(
            "streamscore_drift_window_events",
            "Events in each drift window of this subtask (distances need drift_min_events)",
            labels=["window"],
        )
        for window, events in self.events_in_windows().items():
            events_family.add_metric([window], events)
        yield psi_family
        yield js_family
        yield events_family


def monitor_for(
    metadata: dict[str, Any] | None, windows_s: Sequence[int], min_events: int
) -> DriftMonitor | None:
    """A monitor against a model's stored references; None when the job scores with the
    fallback rules or the model was trained before references were stored."""
    references = references_of(metadata) if metadata else None
    if not references:
        return None
    return DriftMonitor(references, windows_s, min_events)
