"""The job's Python operators, as PyFlink sees them.

``ScoreEvents`` (keyed by the Kafka key, i.e. the user; state in RocksDB; the control broadcast
as its second input) gets the records of the events and labels topics as raw bytes, in batches
packed by the JVM (``batches.py``). Its ``scoring.ScoringOperator`` decodes and validates each
(or dead-letters it with the reason), checks it against its key and timestamp, applies the late
rule, updates the user's windowed aggregates, scores with the champion or the canary candidate
and the challenger in shadow, decides by expected cost, joins labels to what was decided, and
returns every record it produces (predictions, dead letters, labelled outcomes) as ``(topic,
key, value)``, packed in one piece per call, for one Kafka sink that picks the topic in the JVM.
The control topic (model assignments, challenger snapshots) is broadcast as raw rows and
checked where it is applied (``scoring.ControlReader``). ``LearnChallenger`` (one subtask)
learns from the labelled outcomes, measures live quality and publishes challenger snapshots and
automatic rollbacks to the control topic.

In thread mode each TaskManager has one Python interpreter; the job keeps one Python operator
per TaskManager (each scoring subtask; the learner).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from typing import Any

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import (
    KeyedBroadcastProcessFunction,
    RuntimeContext,
)
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor

from streamscore import native, os_thread_names
from streamscore.config import Settings
from streamscore.errors import Rejection
from streamscore.features.definitions import FEATURE_SET
from streamscore.job import interpreter, records, thread_priority
from streamscore.job.avro_decoders import OutcomeDecoder
from streamscore.job.batches import (
    CurrentKey,
    KeySwitch,
    java_keyed_state_backend,
    unpack_records,
)
from streamscore.job.floor import FloorOperator
from streamscore.job.load import SCORING_LOAD, LoadMeter
from streamscore.job.scoring import ControlReader, ScoringOperator
from streamscore.job.state import JOIN_STATE_NAME, USER_STATE_NAME
from streamscore.job.state_writes import JvmStateWrites
from streamscore.metrics import process_metrics
from streamscore.model.compiled_learning import ChallengerLearner
from streamscore.model.loading import ModelBundle
from streamscore.model.publish_cadence import PublishCadence
from streamscore.serde import Codec

log = logging.getLogger(__name__)

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
# (key bytes, value bytes): what a Kafka sink with a fixed topic writes.
KAFKA_RECORD = Types.ROW([BYTES, BYTES])
# (topic, key bytes, value bytes): what the scoring operator emits; its sink takes the topic
# from the first column in the JVM (no Python on the way out).
ROUTED_RECORD = Types.ROW([Types.STRING(), BYTES, BYTES])


# Each Kafka record as the job's sources read it (pipeline.kafka_source, jvm/kafka/
# KafkaRecordRows.java): (key, payload, topic, partition, offset, Kafka timestamp). The control
# topic's records are broadcast to the scorers and the learner as such rows.
INPUT_ROW = Types.ROW(
    [Types.STRING(), BYTES, Types.STRING(), Types.INT(), Types.LONG(), Types.LONG()]
)
# The same, behind the key the JVM partitions by (its first field).
KEYED_INPUT = Types.ROW([Types.STRING(), INPUT_ROW])
# What the scoring operator receives: a batch of those records packed by the JVM
# (batches.py), behind the key of its first record. It returns one packed BYTES per call.
INPUT_BATCH = Types.ROW([Types.STRING(), BYTES])
# Per kind, the latest valid command: (kind, content), pickled.
CONTROL_STATE = MapStateDescriptor("model-control", Types.STRING(), Types.PICKLED_BYTE_ARRAY())


def _subtask_index(runtime_context: RuntimeContext) -> int:
    """This subtask's index. PyFlink 2.3's thread mode asks the Java RuntimeContext for
    ``getIndexOfThisSubtask``, which Flink 2 moved to ``TaskInfo``."""
    try:
        return runtime_context.get_index_of_this_subtask()
    except Exception:
        j_context = runtime_context._runtime_context  # type: ignore[attr-defined]
        return int(j_context.getTaskInfo().getIndexOfThisSubtask())


def java_state_writes(
    runtime_context: RuntimeContext, user_state: Any, join_state: Any
) -> JvmStateWrites:
    """``StateWrites`` (``jvm/StateWrites.java``) bound to the Java states behind ``user_state``
    (a value state) and ``join_state`` (a map state with string keys). The class is in the job's
    jar, which only the job's class loader sees (pemja's ``findClass`` does not): it is loaded
    through that loader and made by reflection."""
    j_context = runtime_context._runtime_context  # type: ignore[attr-defined]
    writes = j_context.getUserCodeClassLoader().loadClass("streamscore.flink.StateWrites")
    writes = writes.newInstance()
    writes.bind(
        java_keyed_state_backend(runtime_context),
        user_state._state,  # PyFlink 2.3's thread-mode state objects hold the Java state here
        join_state._state,
    )
    return writes  # type: ignore[no-any-return]


class ScoreEvents(KeyedBroadcastProcessFunction):
    """The scoring operator as PyFlink sees it: keyed state, the current key, the broadcast
    state and the operator's lifecycle. Each batch, timer and control record goes to a
    ``scoring.ScoringOperator``, which does the work (compiled, see ``native.py``)."""

    def __init__(
        self, settings: Settings, schemas: dict[str, dict[str, Any]], model: ModelBundle | None
    ) -> None:
        self._settings = settings
        self._schemas = schemas
        self._model = model

    def open(self, runtime_context: RuntimeContext) -> None:
        # Secrets are not in the job graph: the Redis password comes from this TaskManager.
        s = self._settings.with_secrets_from_env()
        # PICKLED_BYTE_ARRAY: the ScoringState is pickled once per write (thread mode's
        # PRIMITIVE_ARRAY state converter would copy byte by byte, and fails on absent values).
        # Idle users and due labels are handled by event-time timers, not a state TTL: in thread
        # mode PyFlink 2.3 cannot hand a TTL config to the JVM.
        self._keys = self._key_switch(runtime_context)
        self._synced = False
        user_state = runtime_context.get_state(
            ValueStateDescriptor(USER_STATE_NAME, Types.PICKLED_BYTE_ARRAY())
        )
        join_state = runtime_context.get_map_state(
            MapStateDescriptor(JOIN_STATE_NAME, Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        )
        self._scoring: ScoringOperator | FloorOperator
        if s.scoring_floor != "off":
            self._scoring = FloorOperator(s, self._schemas, self._model)
        else:
            self._scoring = ScoringOperator(
                s,
                self._schemas,
                self._model,
                self._keys,
                user_state,
                join_state,
                self._state_writes(runtime_context, user_state, join_state),
                # Refused control records become dead letters once, from the first subtask.
                reports_control=_subtask_index(runtime_context) == 0,
            )
        self._load = LoadMeter(self._load_reporter(runtime_context))
        self._priority = s.scoring_thread_realtime_priority
        self._feeders_too = s.scoring_feeders_realtime
        self._prioritised = False
        self._realtime = False
        self._feeders: list[int] = []
        log.info("scoring path: %s", native.mode)
        interpreter.settle(s.python_gc_full_collection_every, s.python_gc_young_threshold)
        interpreter.hand_over_gil_within(s.python_switch_interval_ms)
        self._survivors = interpreter.SurvivorFreeze(s.python_gc_sweep_every_checkpoints)

    def _key_switch(self, runtime_context: RuntimeContext) -> CurrentKey:
        """Flink's current key is the batch's first user: each access to a user's state or
        timers switches it to that user first. (A probe outside Flink gives its own.)"""
        return KeySwitch(java_keyed_state_backend(runtime_context))

    def _state_writes(
        self, runtime_context: RuntimeContext, user_state: Any, join_state: Any
    ) -> JvmStateWrites:
        """The JVM side of the state writes (a probe outside Flink gives
        ``state_writes.PythonStateWrites``)."""
        return java_state_writes(runtime_context, user_state, join_state)

    def _load_reporter(self, runtime_context: RuntimeContext) -> Callable[[float], None]:
        """Where the operator's busy share goes: ``OperatorLoad`` (``jvm/OperatorLoad.java``),
        which this subtask's ``RecordBatcher`` reads to choose its batch wait (``load.py``).
        Loaded through the job's class loader, as ``StateWrites`` is. (A probe outside Flink
        gives its own.)"""
        j_context = runtime_context._runtime_context  # type: ignore[attr-defined]
        j_load = j_context.getUserCodeClassLoader().loadClass("streamscore.flink.OperatorLoad")
        j_load = j_load.newInstance()
        subtask = _subtask_index(runtime_context)

        def report(share: float) -> None:
            j_load.report(SCORING_LOAD, subtask, share)

        return report

    def close(self) -> None:
        # Also called when open() failed or was cancelled half way: a raise here would be
        # "an exception in the exception handler", which makes Flink kill the TaskManager.
        scoring = getattr(self, "_scoring", None)
        if scoring is not None:
            scoring.close()
        if getattr(self, "_realtime", False):
            thread_priority.release(feeders=self._feeders)
        interpreter.release()

    def process_broadcast_element(self, value: Row, ctx: KeyedBroadcastProcessFunction.Context):  # type: ignore[override]
        # An INPUT_ROW (pipeline.kafka_source).
        _key, payload, topic, partition, offset, _timestamp = value
        out, command = self._scoring.read_control(payload, topic, partition, offset)
        if command is not None:
            kind, content = command
            ctx.get_broadcast_state(CONTROL_STATE).put(kind, command)
            self._scoring.apply(kind, content)
        yield from out

    def _sync(self, ctx: KeyedBroadcastProcessFunction.ReadOnlyContext) -> None:
        """Once per (re)start: the latest assignment and snapshot from the broadcast state."""
        self._synced = True
        state = ctx.get_broadcast_state(CONTROL_STATE)
        for kind in ("ASSIGN", "CHALLENGER"):
            if state.contains(kind):
                stored_kind, content = state.get(kind)
                self._scoring.apply(stored_kind, content)

    def process_element(self, value: bytes, ctx: KeyedBroadcastProcessFunction.ReadOnlyContext):  # type: ignore[override]
        """A batch of records (an empty one announces a checkpoint barrier): all its outputs,
        packed in one piece."""
        if value and not self._synced:
            self._sync(ctx)
        elif not value and not self._prioritised:
            # The first checkpoint: every task of the job runs (thread_priority.py).
            self._prioritised = True
            feeders = []
            if self._feeders_too and self._priority > 0:
                feeders = os_thread_names.threads_named(thread_priority.FEEDER_NAME_PREFIXES)
            self._realtime = thread_priority.take_realtime(self._priority, feeders=feeders)
            self._feeders = feeders if self._realtime else []
        started = self._load.now()
        outputs = self._scoring.process_batch(value, ctx)
        # The batcher's wait follows the records' work only: the writes ahead of a barrier
        # (below) are done only while the operator keeps up, and counting them as busy made the
        # batches of the last second before each barrier, and of the one after, wait the
        # longest (bench/HISTORY.md, thirty-second session).
        self._load.called(started)
        # A generator: PyFlink hands each output to Flink as it is yielded, so the batch's
        # predictions leave before the writes its changes leave behind, rather than after.
        yield from outputs
        self._scoring.after_batch()
        if value:
            self._survivors.batch()
        else:  # the state written out for the barrier: the survivors are settled
            self._survivors.checkpoint()

    def on_timer(self, timestamp: int, ctx: KeyedBroadcastProcessFunction.OnTimerContext):  # type: ignore[override]
        key = ctx.get_current_key()
        # The caches know users by the string the records name them by: should PyFlink ever
        # hand over the key in its declared type (a row of one string, pipeline._KEY_TYPE)
        # rather than the string, a timer would read a copy of the user's state behind the
        # cached one's back.
        user_id: str = key[0] if isinstance(key, Row) else key
        started = self._load.now()
        outputs = self._scoring.on_timer(user_id, timestamp, ctx)
        self._load.called(started)
        return outputs


class LearnChallenger(KeyedBroadcastProcessFunction):
    """The online challenger's learning copy and the live quality readouts (one subtask).

    Exactly once across failures without pickling the model per label: the model is stored in
    keyed state with each snapshot it publishes (every ``challenger_publish_every`` labels, at
    most one per ``challenger_publish_min_interval_ms``: ``PublishCadence``), and the labels
    learned since then are appended to a list state (one item per batch of outcomes). After a
    restart the model is read back and that tail re-learned before the first new label, so the
    restored learner is the one that saw each label once.

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
        self._outcomes = OutcomeDecoder(self._schemas["outcome"])
        self._control = Codec("control", self._schemas["control"])
        self._metrics = process_metrics(s.metrics_host, s.metrics_port)
        self._names = FEATURE_SET.feature_names
        self._kind = DEFAULT_KIND
        self._cadence: PublishCadence | None = None
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
        self._learner: ChallengerLearner | None = None
        self._learned = 0
        self._assignment: Any = None  # the latest ASSIGN (control.Assignment), if any
        self._synced = False
        # No LightGBM here: the scorers load the models; this keeps only what a rollback sends.
        self._control_reader = ControlReader(s, self._schemas["control"], load_check=False)
        interpreter.settle(s.python_gc_full_collection_every)

    def close(self) -> None:
        # Readouts of a cancelled job must not stay on this TaskManager's endpoint.
        metrics = getattr(self, "_metrics", None)
        if metrics is not None:
            for name in ("quality", "concept_drift"):
                metrics.sources.pop(name, None)
        interpreter.release()

    def process_broadcast_element(self, value: Row, ctx: KeyedBroadcastProcessFunction.Context):  # type: ignore[override]
        try:
            command = self._control_reader.read(value[1])  # an INPUT_ROW's payload
        except Rejection:
            return  # the scorers refuse it, report it and keep their models; so does this
        if command is not None and command[0] == "ASSIGN":
            ctx.get_broadcast_state(CONTROL_STATE).put("ASSIGN", command)
            self._assignment = command[1]
        yield from ()

    def _restore(self) -> ChallengerLearner:
        """The learner as of the last stored model and the tail learned since."""
        from streamscore.model.challenger import load_snapshot, new_learner

        stored = self._model_state.value()
        if stored is None:
            model, self._learned = new_learner(self._kind), 0
        else:
            data, self._learned = stored
            model = load_snapshot(data)
        learner = self._learner = ChallengerLearner(model, self._names)
        replayed = 0
        for item in self._tail.get() or ():
            # One item per batch: a list of (vector, is_fraud); before batches, one pair.
            pairs = pickle.loads(item)
            for vector, is_fraud in pairs if isinstance(pairs, list) else [pairs]:
                learner.learn_one(vector, is_fraud)
                self._learned += 1
                replayed += 1
        log.info("challenger restored: %d labels learned (%d re-learned)", self._learned, replayed)
        s = self._settings
        self._cadence = PublishCadence(
            s.challenger_publish_every,
            s.challenger_publish_min_interval_ms / 1000,
            time.monotonic,
            learned=replayed,
        )
        return learner

    def process_element(self, value: bytes, ctx: KeyedBroadcastProcessFunction.ReadOnlyContext):  # type: ignore[override]
        """A batch of labelled outcomes (``batches.py``), learned in order. What was learned
        since the last stored model goes to the tail state once per batch."""
        from streamscore.model.challenger import dump_snapshot, version_name
        from streamscore.model.control import assign_record, control_key
        from streamscore.model.control import encode as encode_control

        if not self._synced:
            self._synced = True
            state = ctx.get_broadcast_state(CONTROL_STATE)
            if state.contains("ASSIGN"):
                self._assignment = state.get("ASSIGN")[1]
        learner = self._learner if self._learner is not None else self._restore()
        cadence = self._cadence
        assert cadence is not None  # made with the learner
        out: list[Row] = []
        tail: list[tuple[list[float], bool]] = []
        learned = self._metrics.labels.labels("learned")
        for record in unpack_records(value):
            payload = record[1]
            assert payload is not None  # outcomes are the scoring operator's own records
            outcome = self._outcomes.decode(payload)
            is_fraud = outcome["is_fraud"]
            vector = outcome["features"]
            learner.learn_one(vector, is_fraud)
            self._learned += 1
            tail.append((vector, is_fraud))
            learned.inc()
            rollback = self._quality.add(outcome)
            self._concept_drift.add(outcome)
            if cadence.learned():
                cadence.published()
                data = dump_snapshot(learner.model())
                self._model_state.update((data, self._learned))
                self._tail.clear()
                tail = []
                version = version_name(self._kind, self._learned)
                out.append(
                    Row(
                        control_key(self._job_name, "CHALLENGER"),
                        records.challenger_command(self._control, self._job_name, version, data),
                    )
                )
            assignment = self._assignment
            if rollback is not None and assignment is not None and assignment.candidate is not None:
                log.warning(
                    "automatic rollback of %s: its net value per label is below champion %s's",
                    assignment.candidate.version,
                    assignment.champion.version,
                )
                self._metrics.control.labels("ASSIGN", "auto-rollback").inc()
                command = assign_record(
                    assignment.champion, None, 0, "auto-rollback", job_name=self._job_name
                )
                out.append(Row(control_key(self._job_name), encode_control(command, self._control)))
        if tail:
            self._tail.add(pickle.dumps(tail, protocol=pickle.HIGHEST_PROTOCOL))
        return out
