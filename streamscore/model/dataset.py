"""Training sets built by replaying an event log through the job's own feature engine.

Each row holds the features of one event as of just before it, computed by ``FeatureEngine``
exactly as the Flink job computes them, in the log's order. That is what makes the training set
point-in-time correct and identical to what serving sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamscore.features.engine import FeatureEngine, UserState
from streamscore.validation import Rejection, validate_event


@dataclass
class TrainingSet:
    features: np.ndarray  # rows × feature names, float64
    labels: np.ndarray  # 0/1
    event_times: np.ndarray  # epoch millis
    feature_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def replay_features(
    events: Iterable[dict[str, Any]], engine: FeatureEngine | None = None
) -> Iterator[tuple[dict[str, Any], list[float]]]:
    """Yield (event, feature vector) for each valid event, in log order, like the job does."""
    engine = engine or FeatureEngine()
    states: dict[str, UserState] = {}
    for event in events:
        try:
            validate_event(event)
        except Rejection:
            continue
        state = states.get(event["user_id"])
        if state is None:
            state = states[event["user_id"]] = engine.new_state()
        yield event, engine.update(state, event)


def build_training_set(
    labelled_events: Iterable[tuple[dict[str, Any], bool | None]],
    engine: FeatureEngine | None = None,
) -> TrainingSet:
    """One row per labelled valid event; an event whose label is None still updates the
    features of the events after it, as in the job, but gives no row."""
    engine = engine or FeatureEngine()
    labels_by_id: dict[str, bool | None] = {}

    def events() -> Iterator[dict[str, Any]]:
        for event, is_fraud in labelled_events:
            labels_by_id[event["event_id"]] = is_fraud
            yield event

    rows, labels, times = [], [], []
    for event, vector in replay_features(events(), engine):
        label = labels_by_id.pop(event["event_id"])
        if label is None:
            continue
        rows.append(vector)
        labels.append(1 if label else 0)
        times.append(event["event_time"])
    return TrainingSet(
        np.asarray(rows, dtype=np.float64).reshape(len(rows), len(engine.names)),
        np.asarray(labels, dtype=np.int8),
        np.asarray(times, dtype=np.int64),
        engine.names,
    )
