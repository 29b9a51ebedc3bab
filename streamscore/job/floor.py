"""The topology's floor: the scoring operator cut down to the first steps of its per-event work.

A diagnostic for the benchmark (the ``scoring_floor`` setting; bench/README.md, "The topology's
floor"), never for production. The job's graph stays as it is (the Kafka sources and their
watermarks, the key shuffle, the JVM's batches, one crossing into Python per batch, the packed
outputs, the Kafka sink in the job's delivery guarantee); in the scoring operator each record is
taken only as far as the level says, each a step further than the one before:

* ``decode``: each record decoded and checked as the job checks it (a bad one is a dead letter
  with its reason), each event answered with a prediction of a fixed score, each label dropped;
* ``features``: and the event's features from its user's windows, kept in a dict in Python
  (no Flink state, so nothing is checkpointed);
* ``score``: and the champion's score and the decision by expected cost, which the prediction
  then carries; a batch's events scored in one call, as the job scores them
  (``Scorer.score_many``; one call per event until the forty-third session).

None of them joins labels (so the learner gets no outcomes), scores a challenger, gauges drift,
writes to Redis or keeps Flink state. How fast ``decode`` drains is the most any per-event code
inside this topology can reach, however fast that code is; the steps above it, and the whole job
beside them, say what each part of the per-event work costs in a drain.
"""

from __future__ import annotations

import time
from typing import Any, Final

from streamscore.config import Settings
from streamscore.errors import Rejection
from streamscore.features.definitions import FEATURE_SET
from streamscore.features.engine import FeatureEngine, UserState
from streamscore.job import records
from streamscore.job.avro_decoders import EventDecoder, LabelDecoder
from streamscore.job.avro_encoders import PredictionEncoder
from streamscore.job.batches import OutputPacker, OutputRecord, unpack_records
from streamscore.job.decode import read_event, read_label
from streamscore.job.records import DeadLetters
from streamscore.metrics import process_metrics
from streamscore.model.decisions import CostModel
from streamscore.model.loading import ModelBundle
from streamscore.model.scorer import Scorer

# What a prediction below the ``score`` level says it was made by: no model made it.
FLOOR_MODEL_VERSION: Final = "topology-floor"
FLOOR_SCORE: Final = 0.0
FLOOR_DECISION: Final = "APPROVE"
LEVELS: Final = ("decode", "features", "score")


class FloorOperator:
    """``scoring.ScoringOperator``'s interface, doing the per-event work up to ``level`` (see
    the module's docstring). Control records, timers and barriers do nothing."""

    def __init__(
        self,
        settings: Settings,
        schemas: dict[str, dict[str, Any]],
        model: ModelBundle | None,
        level: str | None = None,
    ) -> None:
        s = settings
        level = level if level is not None else s.scoring_floor
        if level not in LEVELS:
            raise ValueError(f"no floor level {level!r}; one of {LEVELS}")
        self._features = level in ("features", "score")
        self._scores = level == "score"
        self._events = EventDecoder(schemas["event"])
        self._labels = LabelDecoder(schemas["label"])
        self._predictions = PredictionEncoder(schemas["prediction"])
        metrics = process_metrics(s.metrics_host, s.metrics_port)
        self._dead = DeadLetters(schemas["dead_letter"], metrics)
        self._packer = OutputPacker()
        self._engine = FeatureEngine(FEATURE_SET)
        self._users: dict[str, UserState] = {}
        self._champion = Scorer(model, FEATURE_SET, s.model_compile_trees)
        self._costs = CostModel.from_settings(s)
        self._topic_labels = s.topic_labels
        self._topic_predictions = s.topic_predictions
        self._topic_dead = s.topic_dead_letters
        self._max_ahead_ms = s.max_event_ahead_ms
        self._max_record_bytes = s.max_record_bytes
        self.labels_read = 0

    def process_batch(self, value: bytes, ctx: Any) -> list[bytes]:
        """One prediction per valid event of the batch, a dead letter per bad record, packed in
        one piece; an empty batch (a barrier's announcement) gives nothing."""
        if not value:
            return []
        now_ms = int(time.time() * 1000)
        out: list[OutputRecord] = []
        waiting: list[tuple[dict[str, Any], str, int]] = []  # events whose score is to come
        vectors: list[list[float]] = []
        topic_labels = self._topic_labels
        for key, payload, topic, partition, offset, timestamp in unpack_records(value):
            try:
                if topic == topic_labels:
                    read_label(payload, key, self._labels, self._max_record_bytes)
                    self.labels_read += 1
                    continue
                event = read_event(
                    payload,
                    key,
                    timestamp,
                    self._events,
                    now_ms,
                    self._max_ahead_ms,
                    self._max_record_bytes,
                )
            except Rejection as rejection:
                row = self._dead.row(rejection, topic, partition, offset, payload)
                out.append((self._topic_dead, row[0], row[1]))
                continue
            if not self._features:
                self._predict(out, event, key, timestamp, FLOOR_SCORE, FLOOR_MODEL_VERSION)
                continue
            state = self._users.get(key)
            if state is None:
                state = self._users[key] = self._engine.new_state()
            vector = self._engine.update(state, event)
            if not self._scores:
                self._predict(out, event, key, timestamp, FLOOR_SCORE, FLOOR_MODEL_VERSION)
                continue
            waiting.append((event, key, timestamp))
            vectors.append(vector)
        if waiting:
            scored = self._champion.score_many(vectors)
            for (event, key, timestamp), (score, model_version, _) in zip(waiting, scored):
                self._predict(out, event, key, timestamp, score, model_version)
        return [self._packer.pack(out)] if out else []

    def _predict(
        self,
        out: list[OutputRecord],
        event: dict[str, Any],
        key: str,
        timestamp: int,
        score: float,
        model_version: str,
    ) -> None:
        """The event's prediction: at the ``score`` level with the decision by expected cost,
        below it with the fixed one."""
        decision = self._costs.decide(score, event["amount"]) if self._scores else FLOOR_DECISION
        record = records.prediction(
            self._predictions,
            event,
            score,
            decision,
            model_version,
            FEATURE_SET.version,
            [],
            timestamp,
        )
        out.append((self._topic_predictions, key.encode(), record))

    def read_control(
        self, payload: bytes | None, topic: str, partition: int, offset: int
    ) -> tuple[list[bytes], tuple[str, Any] | None]:
        return [], None

    def apply(self, kind: str, content: Any) -> None:
        return None

    def after_batch(self) -> None:
        return None  # no state, nothing written behind

    def on_timer(self, user_id: str, timestamp: int, ctx: Any) -> list[bytes]:
        return []

    def close(self) -> None:
        return None
