"""The job's Python operators.

``DecodeAndValidate`` (before the shuffle) turns raw Kafka bytes of the events and labels topics
into keyed envelopes with their watermark driver, or into dead letters. The control topic
(model assignments, challenger snapshots) is broadcast as raw rows and checked where it is
applied (``ControlReader``). ``ScoreEvents`` (keyed by user, state in RocksDB, the control
broadcast as its second input) applies the late rule, updates the user's windowed aggregates,
scores with the champion or the canary candidate and the challenger in shadow, decides by
expected cost, joins labels to what was decided, and emits every record it produces
(predictions, dead letters, labelled outcomes) as ``(topic, key, value)`` for one Kafka sink
that picks the topic in the JVM. ``LearnChallenger`` (one subtask) learns from the labelled
outcomes, measures live quality and publishes challenger snapshots and automatic rollbacks to
the control topic.

Each record crosses between the JVM and Python once per operator, and touches keyed state twice
(one read, one write of the user's packed state): measured, those crossings and state calls are
what bound PyFlink's throughput, so everything else is done in plain Python between them. In
thread mode each TaskManager has one Python interpreter; the job keeps one Python operator per
TaskManager (decode; each scoring subtask; the learner).
"""

from __future__ import annotations

import logging
import pickle
import time
from typing import Any, NamedTuple

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import (
    KeyedBroadcastProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
)
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor

from streamscore.config import Settings
from streamscore.errors import Rejection
from streamscore.features.definitions import FEATURE_SET
from streamscore.features.engine import FeatureEngine
from streamscore.job import records
from streamscore.job.decode import decode_event, decode_label
from streamscore.job.records import DeadLetters
from streamscore.job.state import (
    ParkedLabel,
    PendingOutcome,
    ScoringState,
    next_deadline,
    pack,
    packed_event_time,
    unpack,
)
from streamscore.job.watermarks import PartitionProgress
from streamscore.metrics import process_metrics
from streamscore.model.control import canary_arm
from streamscore.model.loading import ModelBundle
from streamscore.model.scorer import Scorer
from streamscore.serde import Codec

log = logging.getLogger(__name__)

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
# (key bytes, value bytes): what a Kafka sink with a fixed topic writes.
KAFKA_RECORD = Types.ROW([BYTES, BYTES])
# (topic, key bytes, value bytes): what the scoring operator emits; its sink takes the topic
# from the first column in the JVM (no Python on the way out).
ROUTED_RECORD = Types.ROW([Types.STRING(), BYTES, BYTES])

KIND_EVENT = 0
KIND_LABEL = 1


class ScoringInput(NamedTuple):
    """What travels from decode to scoring for each valid event.

    It crosses pickled, as a plain tuple in this field order: a NamedTuple pickles with a
    reference to its class, which measured +2.5 µs per event (dumps + loads, 6 fields). Pickling
    the decoded event (≈ 1 µs out, 2 µs in) spares the scoring stage, the busiest one, a second
    Avro decode (≈ 5-9 µs)."""

    kind: int  # KIND_EVENT
    event: dict[str, Any]  # decoded and validated
    payload: bytes  # the original Kafka value, for a dead letter if the event turns out late
    ingest_time: int  # the input's Kafka timestamp, epoch millis
    topic: str
    partition: int
    offset: int


class LabelInput(NamedTuple):
    """What travels from decode to scoring for each valid label (a plain tuple, as above).
    Its fields after ``event_id`` are a ``state.ParkedLabel``'s, in the same order."""

    kind: int  # KIND_LABEL
    event_id: str
    is_fraud: bool
    label_time: int
    payload: bytes
    topic: str
    partition: int
    offset: int


ENVELOPE = Types.PICKLED_BYTE_ARRAY()
KEYED_ENVELOPE = Types.ROW([Types.STRING(), ENVELOPE])
# The decode output: (keyed envelope, watermark driver) for the JVM timestamp assigner.
TIMESTAMPED_ENVELOPE = Types.TUPLE([KEYED_ENVELOPE, Types.LONG()])
# The control topic's rows, broadcast to the scorers and the learner as the source reads them:
# (payload, topic, partition, offset, ingest time), the columns of pipeline._source_rows.
CONTROL_ROW = Types.ROW([BYTES, Types.STRING(), Types.INT(), Types.LONG(), Types.LONG()])
# Per kind, the latest valid command: (kind, content), pickled.
CONTROL_STATE = MapStateDescriptor("model-control", Types.STRING(), Types.PICKLED_BYTE_ARRAY())

DEAD_LETTERS = OutputTag("dead-letters", KAFKA_RECORD)


class DecodeAndValidate(ProcessFunction):
    """Events and labels, from one Kafka source over both topics."""

    def __init__(self, settings: Settings, schemas: dict[str, dict[str, Any]]) -> None:
        self._settings = settings
        self._schemas = schemas

    def open(self, runtime_context: RuntimeContext) -> None:
        # Secrets are not in the job graph: the Kafka password comes from this TaskManager.
        self._settings = s = self._settings.with_secrets_from_env()
        self._events = Codec("event", self._schemas["event"])
        self._labels = Codec("label", self._schemas["label"])
        self._labels_topic = s.topic_labels
        self._metrics = process_metrics(s.metrics_host, s.metrics_port)
        self._dead = DeadLetters(self._schemas["dead_letter"], self._metrics)
        self._max_ahead_ms = s.max_event_ahead_ms
        self._progress = PartitionProgress(s.source_idleness_ms)
        self._progress.expect(self._own_event_partitions(runtime_context), int(time.time() * 1000))

    def _own_event_partitions(self, runtime_context: RuntimeContext) -> list[tuple[str, int]]:
        """The events topic's partitions that this subtask's source reader is assigned (this
        operator is chained to the source, so its subtask is the reader's)."""
        from streamscore.job.watermarks import kafka_split_owner
        from streamscore.kafka_io import partitions_of

        topic = self._settings.topic_events
        try:
            partitions = partitions_of(self._settings, topic)
        except Exception:  # Kafka not reachable right now: the configured count
            log.warning("could not list %s's partitions; assuming events_partitions", topic)
            partitions = list(range(self._settings.events_partitions))
        subtask, readers = _subtask_index(runtime_context), _parallelism(runtime_context)
        return [(topic, p) for p in partitions if kafka_split_owner(topic, p, readers) == subtask]

    def process_element(self, value: Row, ctx: ProcessFunction.Context):  # type: ignore[override]
        # The columns of the source query in pipeline.build.
        payload, topic, partition, offset, ingest_time = value
        if topic == self._labels_topic:
            yield from self._label(payload, topic, partition, offset)
            return
        now_ms = int(time.time() * 1000)
        try:
            event = decode_event(
                payload, self._events, now_ms, self._max_ahead_ms, self._settings.max_record_bytes
            )
        except Rejection as rejection:
            yield DEAD_LETTERS, self._dead.row(rejection, topic, partition, offset, payload)
            return
        if ingest_time is None:
            ingest_time = now_ms
        envelope = tuple(
            ScoringInput(KIND_EVENT, event, payload, ingest_time, topic, partition, offset)
        )
        # The record's Flink timestamp drives the watermark only (see job/watermarks.py); the
        # scoring step uses the event's own time.
        yield (
            Row(event["user_id"], envelope),
            self._progress.observe((topic, partition), event["event_time"], now_ms, ingest_time),
        )

    def _label(self, payload: bytes, topic: str, partition: int, offset: int):  # type: ignore[no-untyped-def]
        try:
            label = decode_label(payload, self._labels, self._settings.max_record_bytes)
        except Rejection as rejection:
            self._metrics.labels.labels(rejection.reason).inc()
            yield DEAD_LETTERS, self._dead.row(rejection, topic, partition, offset, payload)
            return
        envelope = tuple(
            LabelInput(
                KIND_LABEL,
                label["event_id"],
                label["is_fraud"],
                label["label_time"],
                payload,
                topic,
                partition,
                offset,
            )
        )
        # A label has no event time of its own: it neither advances nor holds the watermark.
        yield Row(label["user_id"], envelope), self._progress.current(int(time.time() * 1000))


def _subtask_index(runtime_context: RuntimeContext) -> int:
    """This subtask's index. PyFlink 2.3's thread mode asks the Java RuntimeContext for
    ``getIndexOfThisSubtask``, which Flink 2 moved to ``TaskInfo``."""
    try:
        return runtime_context.get_index_of_this_subtask()
    except Exception:
        j_context = runtime_context._runtime_context  # type: ignore[attr-defined]
        return int(j_context.getTaskInfo().getIndexOfThisSubtask())


def _parallelism(runtime_context: RuntimeContext) -> int:
    """The operator's parallelism (see ``_subtask_index`` for the Flink 2 fallback)."""
    try:
        return runtime_context.get_number_of_parallel_subtasks()
    except Exception:
        j_context = runtime_context._runtime_context  # type: ignore[attr-defined]
        return int(j_context.getTaskInfo().getNumberOfParallelSubtasks())


class ControlReader:
    """Decodes and checks the control topic's records where they are applied.

    Each scoring subtask and the learner read the control broadcast themselves (rather than a
    separate Python decoder): in thread mode every Python operator of a TaskManager shares one
    interpreter, and a TaskManager running two of them was seen to hang when a task was
    cancelled, so the job keeps one Python operator per TaskManager."""

    def __init__(self, settings: Settings, schema_text: dict[str, Any], load_check: bool) -> None:
        self._codec = Codec("control", schema_text)
        self._job_name = settings.job_name
        self._load_check = load_check

    def read(self, payload: bytes) -> tuple[str, Any] | None:
        """``("ASSIGN", Assignment)`` or ``("CHALLENGER", (version, snapshot bytes))``; None for
        another job's record; ``Rejection`` with a ``control:*`` reason when it is unusable."""
        from streamscore.model.challenger import load_snapshot
        from streamscore.model.control import parse_assignment

        try:
            record = self._codec.decode(payload)
        except Exception as exc:
            raise Rejection("control:decode_error", f"{type(exc).__name__}: {exc}") from None
        if record["job_name"] != self._job_name:
            return None
        if record["kind"] == "ASSIGN":
            return "ASSIGN", parse_assignment(record, FEATURE_SET, load_check=self._load_check)
        data = record["challenger_model"]
        if not data or not record["challenger_version"]:
            raise Rejection("control:invalid", "CHALLENGER without version or model")
        if self._load_check:
            load_snapshot(data)
        return "CHALLENGER", (record["challenger_version"], data)


class ScoreEvents(KeyedBroadcastProcessFunction):
    def __init__(
        self, settings: Settings, schemas: dict[str, dict[str, Any]], model: ModelBundle | None
    ) -> None:
        self._settings = settings
        self._schemas = schemas
        self._model = model

    def open(self, runtime_context: RuntimeContext) -> None:
        from streamscore.feature_store import FeatureStoreWriter, connect
        from streamscore.model.decisions import CostModel

        # Secrets are not in the job graph: the Redis password comes from this TaskManager.
        s = self._settings.with_secrets_from_env()
        # PICKLED_BYTE_ARRAY: the ScoringState is pickled once per write (thread mode's
        # PRIMITIVE_ARRAY state converter would copy byte by byte, and fails on absent values).
        # Idle users and due labels are handled by event-time timers, not a state TTL: in thread
        # mode PyFlink 2.3 cannot hand a TTL config to the JVM.
        self._state = runtime_context.get_state(
            ValueStateDescriptor("scoring-state-v2", Types.PICKLED_BYTE_ARRAY())
        )
        self._retention_ms = FEATURE_SET.max_window_ms + FEATURE_SET.retention_slack_ms
        self._horizon_ms = s.label_horizon_ms
        self._park_wait_ms = s.allowed_lateness_ms + s.max_out_of_orderness_ms
        self._max_pending = s.max_pending_labels_per_user
        self._engine = FeatureEngine(FEATURE_SET)
        self._names = self._engine.names
        self._costs = CostModel.from_settings(s)
        self._metrics = process_metrics(s.metrics_host, s.metrics_port)
        self._dead = DeadLetters(self._schemas["dead_letter"], self._metrics)
        self._predictions = Codec("prediction", self._schemas["prediction"])
        self._outcomes = Codec("outcome", self._schemas["outcome"])
        self._topic_predictions = s.topic_predictions
        self._topic_outcomes = s.topic_outcomes
        self._topic_dead = s.topic_dead_letters
        self._scored = self._metrics.events.labels("scored")
        self._store = FeatureStoreWriter(
            connect(s),
            s.redis_key_prefix,
            FEATURE_SET.version,
            self._names,
            s.feature_ttl_s,
            self._metrics,
            s.redis_flush_max_records,
            s.redis_flush_interval_ms,
            max_pending_users=s.redis_pending_max_users,
        )
        self._lateness = s.allowed_lateness_ms
        self._control = ControlReader(s, self._schemas["control"], load_check=True)
        # Refused control records become dead letters once, from the first subtask.
        self._reports_control = _subtask_index(runtime_context) == 0
        # The models in use. They start from the model shipped with the job and change only
        # through the control broadcast (whose latest records the broadcast state keeps; after a
        # restart they are read back from it before the first record, see _sync).
        self._champion = Scorer(self._model, FEATURE_SET)
        self._candidate: Scorer | None = None
        self._canary_percent = 0
        self._challenger: Any = None  # a ShadowScorer
        self._synced = False
        self._publish_assignment()
        self._drift = self._drift_monitor()
        self._metrics.sources["drift"] = self._drift_samples

    def _drift_monitor(self) -> Any:
        """Data drift against the champion's training reference (monitoring/drift.py)."""
        from streamscore.monitoring.drift import monitor_for

        bundle = self._champion.bundle
        s = self._settings
        monitor = monitor_for(
            bundle.metadata if bundle else None, s.drift_windows_s, s.drift_min_events
        )
        if monitor is None and bundle is not None:
            log.warning(
                "model %s has no drift reference (trained before they were stored): no drift "
                "gauges until a model trained now is champion",
                bundle.version,
            )
        return monitor

    def _drift_samples(self) -> Any:
        drift = self._drift
        return drift.samples() if drift is not None else iter(())

    def close(self) -> None:
        # Also called when open() failed or was cancelled half way: a raise here would be
        # "an exception in the exception handler", which makes Flink kill the TaskManager.
        metrics = getattr(self, "_metrics", None)
        if metrics is not None and metrics.sources.get("drift") == self._drift_samples:
            del metrics.sources["drift"]
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()

    # --- the control broadcast ---------------------------------------------------------------
    def process_broadcast_element(self, value: Row, ctx: KeyedBroadcastProcessFunction.Context):  # type: ignore[override]
        # The columns of the source query in pipeline.build.
        payload, topic, partition, offset, _ingest_time = value
        try:
            command = self._control.read(payload)
        except Rejection as rejection:
            log.warning("control record %s/%d@%d refused: %s", topic, partition, offset, rejection)
            if self._reports_control:
                self._metrics.control.labels("?", rejection.reason).inc()
                yield self._dead_letter(rejection, topic, partition, offset, payload)
            return
        if command is None:
            return
        kind, content = command
        if self._reports_control:
            self._metrics.control.labels(kind, "accepted").inc()
        ctx.get_broadcast_state(CONTROL_STATE).put(kind, command)
        self._apply(kind, content)

    def _sync(self, ctx: KeyedBroadcastProcessFunction.ReadOnlyContext) -> None:
        """Once per (re)start: the latest assignment and snapshot from the broadcast state."""
        self._synced = True
        state = ctx.get_broadcast_state(CONTROL_STATE)
        for kind in ("ASSIGN", "CHALLENGER"):
            if state.contains(kind):
                stored_kind, content = state.get(kind)
                self._apply(stored_kind, content)

    def _apply(self, kind: str, content: Any) -> None:
        if kind == "ASSIGN":
            champion = content.champion
            if champion is not None and (
                self._champion.bundle is None or champion.version != self._champion.bundle.version
            ):
                self._champion = Scorer(champion, FEATURE_SET)
                self._drift = self._drift_monitor()
            candidate = content.candidate
            if candidate is None:
                self._candidate = None
            elif self._candidate is None or self._candidate.model_version != candidate.version:
                self._candidate = Scorer(candidate, FEATURE_SET)
            self._canary_percent = content.canary_percent if self._candidate else 0
            log.info(
                "assignment %s (%s): champion %s, candidate %s at %d %%",
                content.command_id,
                content.reason,
                self._champion.model_version,
                self._candidate.model_version if self._candidate else "-",
                self._canary_percent,
            )
            self._publish_assignment()
        elif kind == "CHALLENGER":
            from streamscore.model.challenger import ShadowScorer, load_snapshot

            version, data = content
            if self._challenger is None or self._challenger.version != version:
                self._challenger = ShadowScorer(version, load_snapshot(data), self._names)
                self._metrics.challenger_info.children.clear()
                self._metrics.challenger_info.labels(version).value = 1

    def _publish_assignment(self) -> None:
        info = self._metrics.model_info
        info.children.clear()
        info.labels("champion", self._champion.model_version, FEATURE_SET.version).value = 1
        if self._candidate is not None:
            info.labels("candidate", self._candidate.model_version, FEATURE_SET.version).value = (
                self._canary_percent / 100.0
            )

    # --- records -----------------------------------------------------------------------------
    def process_element(self, value: Any, ctx: KeyedBroadcastProcessFunction.ReadOnlyContext):  # type: ignore[override]
        if not self._synced:
            self._sync(ctx)
        if value[0] == KIND_EVENT:
            yield from self._score(value, ctx)
        else:
            yield from self._join(value, ctx)

    def _score(self, value: tuple, ctx: Any):  # type: ignore[no-untyped-def]
        # A ScoringInput, as a plain tuple (see there why).
        _kind, event, payload, ingest_time, topic, partition, offset = value
        event_time = event["event_time"]
        watermark = ctx.timer_service().current_watermark()
        metrics = self._metrics
        if event_time <= watermark:
            if event_time <= watermark - self._lateness:
                metrics.late_events.labels("dead_letter").inc()
                late = Rejection(
                    "late",
                    f"event_time {event_time} is more than allowed_lateness_ms={self._lateness} "
                    f"behind the watermark {watermark}",
                )
                yield self._dead_letter(late, topic, partition, offset, payload)
                return
            metrics.late_events.labels("scored").inc()

        state: ScoringState | None = self._state.value()
        if state is None:
            state = ScoringState(self._engine.new_state())
        vector = self._engine.update(state.features, event)

        user_id = event["user_id"]
        amount = event["amount"]
        scorer, arm = self._champion, "champion"
        champion_score: float | None = None
        if self._candidate is not None and canary_arm(user_id, self._canary_percent):
            scorer, arm = self._candidate, "candidate"
            champion_score = self._champion.score(vector)[0]
        score, model_version, fell_back = scorer.score(vector)
        decision = self._costs.decide(score, amount)
        challenger = self._challenger
        challenger_score = challenger.score(vector) if challenger is not None else None
        challenger_version = challenger.version if challenger is not None else None

        drift = self._drift
        if drift is not None:
            drift.observe(event_time, vector, score if champion_score is None else champion_score)

        event_id = event["event_id"]
        pending = state.pending
        if len(pending) >= self._max_pending:
            del pending[next(iter(pending))]  # the oldest: dicts keep insertion order
            metrics.labels.labels("dropped_pending").inc()
        outcome = PendingOutcome(
            event_time,
            amount,
            vector,
            score,
            decision,
            model_version,
            arm,
            self._canary_percent,
            champion_score,
            challenger_score,
            challenger_version,
        )
        pending[event_id] = pack(outcome)
        parked = state.parked.pop(event_id, None)
        if parked is not None:  # its label came first
            yield from self._close(state, event_id, outcome, parked, user_id)
        self._arm_timer(state, ctx, event_time + self._horizon_ms)
        self._state.update(state)

        degraded = []
        if fell_back:
            degraded.append("model")
            metrics.degraded.labels("model").inc()
        if not self._store.healthy:
            degraded.append("redis")
            metrics.degraded.labels("redis").inc()
        self._store.submit(user_id, event_time, event_id, vector)
        record = records.prediction(
            self._predictions,
            event,
            score,
            decision,
            model_version,
            FEATURE_SET.version,
            degraded,
            ingest_time,
            arm,
            challenger_score,
            challenger_version,
        )
        self._scored.inc()
        metrics.predictions.labels(decision, model_version).inc()
        metrics.scores.observe(score)
        metrics.latency.observe(max(0.0, time.time() - ingest_time / 1000.0))
        yield Row(self._topic_predictions, user_id.encode(), record)

    def _join(self, value: tuple, ctx: Any):  # type: ignore[no-untyped-def]
        # A LabelInput: (kind, event_id, then a ParkedLabel's fields in its order).
        event_id = value[1]
        parked = ParkedLabel(*value[2:])
        user_id = ctx.get_current_key()
        state: ScoringState | None = self._state.value()
        if state is None:
            state = ScoringState(self._engine.new_state())
        packed = state.pending.get(event_id)
        if packed is not None:
            yield from self._close(state, event_id, unpack(packed), parked, user_id)
        elif event_id in state.closed:
            reason = (
                "label:duplicate" if state.closed[event_id][1] == "labelled" else "label:expired"
            )
            yield self._label_dead_letter(reason, "", parked)
        elif event_id in state.parked:
            yield self._label_dead_letter("label:duplicate", "its event has not come yet", parked)
        else:
            # Its event may still come (topics are read at uneven speeds): wait for it until the
            # watermark says it can no longer be scored.
            state.parked[event_id] = parked
            self._metrics.labels.labels("parked").inc()
            self._arm_timer(state, ctx, parked.label_time + self._park_wait_ms)
        self._state.update(state)

    def _close(  # type: ignore[no-untyped-def]
        self,
        state: ScoringState,
        event_id: str,
        outcome: PendingOutcome,
        label: ParkedLabel,
        user_id: str,
    ):
        """Join a label to its pending outcome: an outcome record, or ``label:expired``."""
        del state.pending[event_id]
        if label.label_time - outcome.event_time > self._horizon_ms:
            state.closed[event_id] = (outcome.event_time, "expired")
            yield self._label_dead_letter(
                "label:expired",
                f"label_time {label.label_time} is more than label_horizon_ms="
                f"{self._horizon_ms} after the event ({outcome.event_time})",
                label,
            )
            return
        state.closed[event_id] = (outcome.event_time, "labelled")
        self._metrics.labels.labels("joined").inc()
        yield Row(
            self._topic_outcomes,
            user_id.encode(),
            records.outcome(self._outcomes, event_id, user_id, outcome, label, FEATURE_SET.version),
        )

    def on_timer(self, timestamp: int, ctx: KeyedBroadcastProcessFunction.OnTimerContext):  # type: ignore[override]
        state: ScoringState | None = self._state.value()
        if state is None:
            return
        state.timer_at = -1
        for event_id, packed in list(state.pending.items()):
            event_time = packed_event_time(packed)
            if event_time + self._horizon_ms <= timestamp:
                del state.pending[event_id]
                state.closed[event_id] = (event_time, "expired")
                self._metrics.labels.labels("expired_unlabelled").inc()
        for event_id, (event_time, _why) in list(state.closed.items()):
            if event_time + 2 * self._horizon_ms <= timestamp:
                del state.closed[event_id]
        for event_id, parked in list(state.parked.items()):
            if parked.label_time + self._park_wait_ms <= timestamp:
                del state.parked[event_id]
                yield self._label_dead_letter(
                    "label:unknown_event",
                    f"no event {event_id} for this user by the watermark {timestamp}",
                    parked,
                )
        newest = state.features.newest
        idle = newest < 0 or newest + self._retention_ms <= timestamp
        if idle and not state.pending and not state.closed and not state.parked:
            self._state.clear()
            self._metrics.expired_users.inc()
            return
        self._arm_timer(
            state,
            ctx,
            next_deadline(state, self._retention_ms, self._horizon_ms, self._park_wait_ms),
        )
        self._state.update(state)

    # --- helpers -----------------------------------------------------------------------------
    def _arm_timer(self, state: ScoringState, ctx: Any, deadline: int) -> None:
        """Keep one event-time timer per user, at its earliest deadline."""
        if state.timer_at < 0 or deadline < state.timer_at:
            ctx.timer_service().register_event_time_timer(deadline)
            state.timer_at = deadline

    def _dead_letter(
        self, rejection: Rejection, topic: str, partition: int, offset: int, payload: bytes
    ) -> Row:
        row = self._dead.row(rejection, topic, partition, offset, payload)
        return Row(self._topic_dead, row[0], row[1])

    def _label_dead_letter(self, reason: str, detail: str, label: ParkedLabel) -> Row:
        self._metrics.labels.labels(reason).inc()
        return self._dead_letter(
            Rejection(reason, detail or reason),
            label.topic,
            label.partition,
            label.offset,
            label.payload,
        )


class LearnChallenger(KeyedBroadcastProcessFunction):
    """The online challenger's learning copy and the live quality readouts (one subtask).

    Exactly once across failures without pickling the model per label: the model is stored in
    keyed state every ``challenger_publish_every`` labels, and the labels learned since then are
    appended to a list state. After a restart the model is read back and that tail re-learned
    before the first new label, so the restored learner is the one that saw each label once.

    It also receives the control broadcast, so an automatic rollback can send a complete ASSIGN
    (the champion's model file included): the control topic is compacted, and its latest ASSIGN
    alone must be enough for a job started from scratch.
    """

    def __init__(self, settings: Settings, schemas: dict[str, dict[str, Any]]) -> None:
        self._settings = settings
        self._schemas = schemas

    def open(self, runtime_context: RuntimeContext) -> None:
        from streamscore.model.challenger import DEFAULT_KIND
        from streamscore.model.decisions import CostModel
        from streamscore.monitoring.concept import ConceptDriftMonitor
        from streamscore.quality.live import LiveQuality

        s = self._settings
        self._model_state = runtime_context.get_state(
            ValueStateDescriptor("challenger-model", Types.PICKLED_BYTE_ARRAY())
        )
        self._tail = runtime_context.get_list_state(
            ListStateDescriptor("challenger-tail", Types.PICKLED_BYTE_ARRAY())
        )
        self._outcomes = Codec("outcome", self._schemas["outcome"])
        self._control = Codec("control", self._schemas["control"])
        self._metrics = process_metrics(s.metrics_host, s.metrics_port)
        self._names = FEATURE_SET.feature_names
        self._kind = DEFAULT_KIND
        self._publish_every = s.challenger_publish_every
        self._job_name = s.job_name
        self._quality = LiveQuality(
            CostModel.from_settings(s),
            s.quality_window_labels,
            s.rollback_margin,
            s.rollback_min_labels,
        )
        self._concept_drift = ConceptDriftMonitor()
        self._metrics.sources["quality"] = self._quality.samples
        self._metrics.sources["concept_drift"] = self._concept_drift.samples
        self._model: Any = None
        self._learned = 0
        self._assignment: Any = None  # the latest ASSIGN (control.Assignment), if any
        self._synced = False
        # No LightGBM here: the scorers load the models; this keeps only what a rollback sends.
        self._control_reader = ControlReader(s, self._schemas["control"], load_check=False)

    def close(self) -> None:
        # Readouts of a cancelled job must not stay on this TaskManager's endpoint.
        metrics = getattr(self, "_metrics", None)
        if metrics is not None:
            for name in ("quality", "concept_drift"):
                metrics.sources.pop(name, None)

    def process_broadcast_element(self, value: Row, ctx: KeyedBroadcastProcessFunction.Context):  # type: ignore[override]
        try:
            command = self._control_reader.read(value[0])
        except Rejection:
            return  # the scorers refuse it, report it and keep their models; so does this
        if command is not None and command[0] == "ASSIGN":
            ctx.get_broadcast_state(CONTROL_STATE).put("ASSIGN", command)
            self._assignment = command[1]
        yield from ()

    def _restore(self) -> None:
        from streamscore.model.challenger import load_snapshot, new_learner

        stored = self._model_state.value()
        if stored is None:
            self._model, self._learned = new_learner(self._kind), 0
        else:
            data, self._learned = stored
            self._model = load_snapshot(data)
        replayed = 0
        for item in self._tail.get() or ():
            vector, is_fraud = pickle.loads(item)
            self._model.learn_one(dict(zip(self._names, vector)), is_fraud)
            self._learned += 1
            replayed += 1
        log.info("challenger restored: %d labels learned (%d re-learned)", self._learned, replayed)

    def process_element(self, value: Any, ctx: KeyedBroadcastProcessFunction.ReadOnlyContext):  # type: ignore[override]
        from streamscore.model.challenger import dump_snapshot, version_name
        from streamscore.model.control import assign_record, control_key
        from streamscore.model.control import encode as encode_control

        if not self._synced:
            self._synced = True
            state = ctx.get_broadcast_state(CONTROL_STATE)
            if state.contains("ASSIGN"):
                self._assignment = state.get("ASSIGN")[1]
        if self._model is None:
            self._restore()
        outcome = self._outcomes.decode(value)
        is_fraud = outcome["is_fraud"]
        vector = outcome["features"]
        self._model.learn_one(dict(zip(self._names, vector)), is_fraud)
        self._learned += 1
        self._tail.add(pickle.dumps((vector, is_fraud), protocol=pickle.HIGHEST_PROTOCOL))
        self._metrics.labels.labels("learned").inc()
        rollback = self._quality.add(outcome)
        self._concept_drift.add(outcome)
        if self._learned % self._publish_every == 0:
            data = dump_snapshot(self._model)
            self._model_state.update((data, self._learned))
            self._tail.clear()
            version = version_name(self._kind, self._learned)
            yield Row(
                control_key(self._job_name, "CHALLENGER"),
                records.challenger_command(self._control, self._job_name, version, data),
            )
        assignment = self._assignment
        if rollback is not None and assignment is not None and assignment.candidate is not None:
            log.warning(
                "automatic rollback of %s: its net value per label is below champion %s's",
                assignment.candidate.version,
                assignment.champion.version,
            )
            self._metrics.control.labels("ASSIGN", "auto-rollback").inc()
            record = assign_record(
                assignment.champion, None, 0, "auto-rollback", job_name=self._job_name
            )
            yield Row(control_key(self._job_name), encode_control(record, self._control))
