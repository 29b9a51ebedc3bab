"""The scoring operator's work on its records, timers and control commands, apart from PyFlink.

``functions.ScoreEvents`` is the PyFlink function: it makes the keyed state, the key switch and
the broadcast state, and hands each batch, timer and control record to a ``ScoringOperator``
(this module), which does everything else (``functions`` says what). Kept apart so that this
part, which runs per record, is a plain class that mypyc compiles (``streamscore/native.py``);
PyFlink's function classes cannot be compiled as native classes.

Each batch crosses between the JVM and Python once: measured, those crossings and keyed-state
calls are what bound PyFlink's throughput, so everything else is done in plain Python between
them. An event costs a read of the user's state only when it is not cached
(``state.UserStateCache``), and a label a read of the label-join map only when its event is not
pending in Python (``state.JoinMap``). Writes wait in Python until the next checkpoint barrier
(the label join's changes also when ``state_write_behind_max`` of them wait, see
``write_join_changes``): then each changed user is written once, whatever number of its records
came in between, and all of them in one call into the JVM (``state_writes.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from prometheus_client.core import GaugeMetricFamily

from streamscore.config import Settings
from streamscore.errors import Rejection
from streamscore.features.definitions import FEATURE_SET
from streamscore.features.engine import FeatureEngine
from streamscore.job import records
from streamscore.job.avro_decoders import EventDecoder, LabelDecoder
from streamscore.job.avro_encoders import OutcomeEncoder, PredictionEncoder
from streamscore.job.batches import CurrentKey, OutputPacker, OutputRecord, unpack_records
from streamscore.job.decode import read_event, read_label
from streamscore.job.records import DeadLetters
from streamscore.job.state import (
    CLOSED,
    PARKED,
    PENDING,
    USER_STATE_NAME,
    JoinEntry,
    JoinMap,
    KnownUsers,
    PackedOutcome,
    ParkedLabel,
    PendingOutcome,
    ScoringState,
    UserStateCache,
    WriteAheadWindow,
    closed_deadline,
    closed_entry,
    entry_deadline,
    fresh_pending_entry,
    is_due,
    new_scoring_state,
    next_deadline,
    parked_entry,
    parked_label,
    pending_event_time,
    stored_outcome,
    summarise,
    sweep_phase,
    timer_time,
    unpack_users,
)
from streamscore.job.state_writes import JvmStateWrites, StateWriter
from streamscore.metrics import process_metrics
from streamscore.model.challenger import ShadowScorer, load_snapshot, new_learner
from streamscore.model.control import canary_arm
from streamscore.model.loading import ModelBundle
from streamscore.model.scorer import Scorer
from streamscore.monitoring.drift import DriftMonitor, monitor_for
from streamscore.serde import Codec

log = logging.getLogger(__name__)

# When writing ahead has not caught up this long before the next barrier is due, the memtables
# are flushed ahead anyway (ScoringOperator.flush_ahead): long enough for RocksDB to write them
# before the barrier, which otherwise waits for that flush (about 20-30 ms at 5,000 events/s).
FLUSH_AHEAD_LEAD_S: Final = 0.3

# A label whose event's entry is closed: why it is a dead letter, by how the entry was closed.
_CLOSED_REASONS: Final = {
    "labelled": "label:duplicate",
    "expired": "label:expired",
    "dropped": "label:pending_dropped",  # past max_pending_labels_per_user
}


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
        # The last snapshot checked (its bytes and the model they hold), for ``take_checked``.
        self._checked: tuple[bytes, Any] | None = None
        if load_check:
            # The modules a challenger's snapshot needs (river's, and what they import), loaded
            # now rather than by the first snapshot's unpickling, which held up the records
            # behind it for about 0.3 s in a drain (bench/HISTORY.md, twenty-eighth session).
            new_learner()

    def read(self, payload: bytes | None) -> tuple[str, Any] | None:
        """``("ASSIGN", Assignment)`` or ``("CHALLENGER", (version, snapshot bytes))``; None for
        another job's record; ``Rejection`` with a ``control:*`` reason when it is unusable (a
        tombstone of the compacted topic too)."""
        from streamscore.model.control import parse_assignment

        if payload is None:
            raise Rejection("control:decode_error", "a record without a value")
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
            self._checked = (data, load_snapshot(data))
        return "CHALLENGER", (record["challenger_version"], data)

    def take_checked(self, data: bytes) -> Any:
        """The model ``read`` loaded from ``data`` to check it (None if it did not: another
        snapshot, or one restored from the broadcast state), so that it is not loaded twice.
        Each is handed out once."""
        checked, self._checked = self._checked, None
        if checked is not None and checked[0] is data:
            return checked[1]
        return None


class Unscored:
    """An event whose features are computed, waiting for its batch's scores."""

    def __init__(
        self,
        event: dict[str, Any],
        user_id: str,
        ingest_time: int,
        state: ScoringState,
        vector: list[float],
    ) -> None:
        self.event = event
        self.user_id = user_id
        self.ingest_time = ingest_time
        self.state = state
        self.vector = vector


class UnscoredEvents:
    """A batch's events waiting for their scores, and their users' states.

    The users' states are kept here too: a second event of a user, waiting as well, must find
    the state the first one updated, and a state made for a new user enters the user cache
    only when its event is scored, as before."""

    def __init__(self) -> None:
        self.events: list[Unscored] = []
        self.states: dict[str, ScoringState] = {}


class ScoringOperator:
    """Per record of a batch: decode, checks, the late rule, features, scores, the label join and
    every output; per timer, the user's due labels and idle state; the models in use, as the
    control broadcast assigns them."""

    def __init__(
        self,
        settings: Settings,
        schemas: dict[str, dict[str, Any]],
        model: ModelBundle | None,
        keys: CurrentKey,
        user_state: Any,
        join_state: Any,
        state_writes: JvmStateWrites,
        reports_control: bool,
    ) -> None:
        """``settings`` with their secrets; ``user_state`` and ``join_state`` are Flink's value
        state of ``ScoringState`` and map state of join entries, read through PyFlink's state
        API and written through ``state_writes`` (``state_writes.py``); ``reports_control``:
        this subtask turns refused control records into dead letters (one subtask does)."""
        from streamscore.feature_store import FeatureStoreWriter, connect
        from streamscore.model.decisions import CostModel

        s = settings
        self._settings = settings
        self._schemas = schemas
        self._keys = keys
        # Writes wait for the checkpoint barrier (RecordBatcher announces it with an empty batch)
        # or for this many waiting writes; 0 writes every change at once.
        self._write_behind_max = s.state_write_behind_max
        # Written ahead of the barrier after batches that are not full (write_ahead), from
        # state_write_ahead_ms before the next barrier is due.
        self._write_ahead_users = s.state_write_ahead_users
        self._write_ahead_window = WriteAheadWindow(
            s.checkpoint_interval_ms / 1000, s.state_write_ahead_ms / 1000
        )
        # A batch of this many records was cut by its size, not by its wait, a watermark or a
        # barrier: records are queueing (a backlog drains).
        self._full_batch = s.scoring_batch_max_records
        deferred = self._write_behind_max > 0
        self._writer = StateWriter(state_writes, keys)
        # The memtables are flushed once per interval, when writing ahead has caught up
        # (write_ahead), so that the checkpoint's own flush, which the barrier waits for, is small.
        self._flushed_ahead = False
        self._flush_ahead_possible = True
        # Whether an empty batch will announce the next barrier (see on_timer): records came
        # since the last one, so the batcher owes one (RecordBatcher.announce).
        self._barrier_announced = False
        # Whether the last batch may be followed by a write-ahead (after_batch).
        self._write_ahead_after = False
        self._metrics = process_metrics(s.metrics_host, s.metrics_port)
        # The users with state when this subtask opened (restored from a checkpoint or a
        # savepoint, or none), listed in one call: users not among them and not kept since are
        # new without a read (KnownUsers).
        listing_started = time.monotonic()
        listed = state_writes.userKeys(USER_STATE_NAME) if s.state_known_users_error > 0 else None
        users = unpack_users(listed) if listed is not None else None
        known = KnownUsers(users, s.state_known_users_error)
        if users is not None:
            log.info(
                "%d users with state in this subtask, listed in %.0f ms: users never seen are "
                "new without a read", len(users), (time.monotonic() - listing_started) * 1000,
            )  # fmt: skip
        skipped = self._metrics.state_reads_skipped
        self._state = UserStateCache(
            user_state, keys, s.state_cache_users, deferred, self._writer, known,
            skipped.labels("user"),
        )  # fmt: skip
        # event id -> its entry in the label join (job/state.py): a record touches one entry.
        self._join_map = JoinMap(
            join_state,
            keys,
            s.pending_cache_outcomes,
            deferred,
            self._writer,
            self._metrics.join_state_reads,
            known,
            skipped.labels("join"),
        )
        self._packer = OutputPacker()
        # A batch's events are scored together (_score_unscored): the model's trees stay in the
        # CPU's caches while it walks them for one event after another.
        self._unscored = UnscoredEvents()
        self._scores_per_batch = s.scoring_scores_per_batch
        # Read by hand (avro_decoders): what fastavro's reader gives, at a fraction of its cost.
        self._events = EventDecoder(self._schemas["event"])
        self._labels = LabelDecoder(self._schemas["label"])
        self._topic_labels = s.topic_labels
        self._max_ahead_ms = s.max_event_ahead_ms
        self._max_record_bytes = s.max_record_bytes
        self._retention_ms = FEATURE_SET.max_window_ms + FEATURE_SET.retention_slack_ms
        self._horizon_ms = s.label_horizon_ms
        self._park_wait_ms = s.allowed_lateness_ms + s.max_out_of_orderness_ms
        self._max_pending = s.max_pending_labels_per_user
        self._engine = FeatureEngine(FEATURE_SET)
        # Read once: FEATURE_SET belongs to a module that is not compiled, so each read of its
        # attribute is a dictionary lookup and a generic attribute get (two per labelled event).
        self._feature_set_version: str = FEATURE_SET.version
        self._names = self._engine.names
        self._costs = CostModel.from_settings(s)
        self._dead = DeadLetters(self._schemas["dead_letter"], self._metrics)
        self._predictions = PredictionEncoder(self._schemas["prediction"])
        self._outcomes = OutcomeEncoder(self._schemas["outcome"])
        self._topic_predictions = s.topic_predictions
        self._topic_outcomes = s.topic_outcomes
        self._topic_dead = s.topic_dead_letters
        metrics = self._metrics
        self._scored = metrics.events.labels("scored")
        self._late_dropped = metrics.late_events.labels("dead_letter")
        self._late_scored = metrics.late_events.labels("scored")
        self._joined = metrics.labels.labels("joined")
        self._latency = metrics.latency
        self._score_histogram = metrics.scores
        self._lateness = s.allowed_lateness_ms
        self._out_of_orderness_ms = s.max_out_of_orderness_ms
        self._control = ControlReader(s, self._schemas["control"], load_check=True)
        # Refused control records become dead letters once, from the first subtask.
        self._reports_control = reports_control
        # The models in use. They start from the model shipped with the job and change only
        # through the control broadcast (whose latest records the broadcast state keeps; after a
        # restart ScoreEvents reads them back from it before the first record).
        self._compile_trees = s.model_compile_trees
        self._champion = Scorer(model, FEATURE_SET, self._compile_trees)
        self._candidate: Scorer | None = None
        self._canary_percent = 0
        # Typed (not Any), so that, compiled, scoring with them is a direct call.
        self._challenger: ShadowScorer | None = None
        self._publish_assignment()
        self._drift: DriftMonitor | None = self._drift_monitor()
        # Last, the writer thread and the drift gauges' registration: nothing after them can fail
        # and leave them behind (ScoreEvents.close closes only an operator that was made).
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
            catch_up_flush_interval_ms=s.redis_catch_up_flush_interval_ms,
        )
        self._metrics.sources["drift"] = self._drift_samples
        self._metrics.sources["model_compiled"] = self._compiled_samples

    def _drift_monitor(self) -> DriftMonitor | None:
        """Data drift against the champion's training reference (monitoring/drift.py)."""
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

    def _compiled_samples(self) -> Any:
        """Whether each deciding model's trees run compiled (``model_compile_trees``)."""
        family = GaugeMetricFamily(
            "streamscore_model_compiled",
            "1 where the model's trees run compiled to machine code (their scores checked equal "
            "to LightGBM's), 0 while LightGBM walks them: while they compile after a model "
            "load, or for good where they failed (the TaskManager's log says why)",
            labels=["role", "model_version"],
        )
        for role, scorer in (("champion", self._champion), ("candidate", self._candidate)):
            if scorer is not None:
                family.add_metric([role, scorer.model_version], 1.0 if scorer.compiled else 0.0)
        return iter((family,))

    def close(self) -> None:
        metrics = self._metrics
        if metrics.sources.get("drift") == self._drift_samples:
            del metrics.sources["drift"]
        if metrics.sources.get("model_compiled") == self._compiled_samples:
            del metrics.sources["model_compiled"]
        self._store.close()

    # --- the control broadcast ---------------------------------------------------------------
    def read_control(
        self, payload: bytes | None, topic: str, partition: int, offset: int
    ) -> tuple[list[bytes], tuple[str, Any] | None]:
        """A control record: what it produces (a dead letter if refused, from the reporting
        subtask), and the command to keep and apply (None: refused, or another job's)."""
        try:
            command = self._control.read(payload)
        except Rejection as rejection:
            log.warning("control record %s/%d@%d refused: %s", topic, partition, offset, rejection)
            if not self._reports_control:
                return [], None
            self._metrics.control.labels("?", rejection.reason).inc()
            dead = self._dead_letter(rejection, topic, partition, offset, payload)
            return [self._packer.pack([dead])], None
        if command is not None and self._reports_control:
            self._metrics.control.labels(command[0], "accepted").inc()
        return [], command

    def apply(self, kind: str, content: Any) -> None:
        """Use what a control command (``ControlReader.read``) says from now on."""
        if kind == "ASSIGN":
            champion = content.champion
            if champion is not None and (
                self._champion.bundle is None or champion.version != self._champion.bundle.version
            ):
                self._champion = Scorer(champion, FEATURE_SET, self._compile_trees)
                self._drift = self._drift_monitor()
            candidate = content.candidate
            if candidate is None:
                self._candidate = None
            elif self._candidate is None or self._candidate.model_version != candidate.version:
                self._candidate = Scorer(candidate, FEATURE_SET, self._compile_trees)
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
            version, data = content
            model = self._control.take_checked(data)
            if self._challenger is None or self._challenger.version != version:
                if model is None:
                    model = load_snapshot(data)
                self._challenger = ShadowScorer(version, model, self._names)
                self._metrics.challenger_info.children.clear()
                self._metrics.challenger_info.labels(version).value = 1.0

    def _publish_assignment(self) -> None:
        info = self._metrics.model_info
        info.children.clear()
        info.labels("champion", self._champion.model_version, FEATURE_SET.version).value = 1.0
        if self._candidate is not None:
            info.labels("candidate", self._candidate.model_version, FEATURE_SET.version).value = (
                self._canary_percent / 100.0
            )

    # --- records -----------------------------------------------------------------------------
    def process_batch(self, value: bytes, ctx: Any) -> list[bytes]:
        """A batch of Kafka records of the events and labels topics (``batches.py``), each
        decoded, checked and applied in turn to its own user's state; what they produce is
        returned packed, in one piece. An empty batch announces a checkpoint barrier: the
        waiting state writes are made before it."""
        self._keys.forget_current()
        self._barrier_announced = bool(value)
        if not value:
            self.write_deferred()
            self._write_ahead_window.barrier()
            self._flushed_ahead = False
            return []
        now_ms = int(time.time() * 1000)
        # The batcher hands a batch on before each watermark: one read serves the whole batch.
        # Never a watermark ahead of the clock's "now - out-of-orderness": events stamped up to
        # max_event_ahead_ms ahead of the clock are accepted and carry the watermark with them,
        # which would make the on-time events after them late.
        watermark = min(
            ctx.timer_service().current_watermark(),
            now_ms - self._out_of_orderness_ms,
        )
        out: list[OutputRecord] = []
        topic_labels = self._topic_labels
        batch = unpack_records(value)
        records = len(batch)
        # Only a batch that is not full can be followed by a write-ahead (below), which takes
        # the users changed longest ago first: the changes of full batches (a backlog drains)
        # are not put in order, which cost two dictionary writes and a queue item per record.
        # (Until the twenty-ninth session the line was half full: at 5,000 events/s a batch
        # waiting 20 ms for a busy operator holds about 200 records, and the changes of those
        # over 250, unordered, were never written ahead and waited for the barrier: 20-48 ms of
        # write-out there after a 300,000-event drain instead of 0.7-25; bench/HISTORY.md.)
        ordered = records < self._full_batch
        if not ordered:
            self._store.behind()
        self._state.ordered = ordered
        self._join_map.ordered = ordered
        unscored = self._unscored
        for key, payload, topic, partition, offset, timestamp in batch:
            if topic == topic_labels:
                if key in unscored.states:  # its user has events waiting for their scores
                    self._score_unscored(out, ctx)
                self._label(out, key, payload, topic, partition, offset, ctx)
                continue
            try:
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
                out.append(self._dead_letter(rejection, topic, partition, offset, payload))
                continue
            assert payload is not None  # read_event rejects a record without one
            self._features(out, event, key, payload, timestamp, topic, partition, offset, watermark)
            if not self._scores_per_batch:
                self._score_unscored(out, ctx)
        self._score_unscored(out, ctx)
        self._write_ahead_after = ordered
        return [self._packer.pack(out)] if out else []

    def after_batch(self) -> None:
        """The writes a batch leaves behind: every waiting label-join change past
        ``state_write_behind_max`` of them, or else, in the stretch before a barrier and after
        a batch that was not full, a share of the changed users written ahead. Called once the
        batch's outputs have been handed to Flink (``ScoreEvents.process_element``), so that
        its records do not wait for these writes."""
        ordered, self._write_ahead_after = self._write_ahead_after, False
        if self._join_map.changed_entries > self._write_behind_max:
            self.write_join_changes()
        elif ordered and self._write_ahead_users and self._write_ahead_window.is_open():
            self.write_ahead()

    def write_ahead(self) -> None:
        """In the last ``state_write_ahead_ms`` before the next barrier is due, while the
        operator keeps up: after each batch, the users whose state or join entries changed
        since they were last written, those changed longest ago first, at most
        ``state_write_ahead_users`` of each, in one call into the JVM. So the write-out before
        the barrier, which holds up every record behind it, is left with the last batches'
        changes, and the writes are spread over the batches before it. Close to the barrier few
        users change again after they were written (each that does is written again): the price is a
        share of extra writes, not three times as many (bench/HISTORY.md, eleventh session). Not
        while batches are full (draining a backlog): then each changed user is written once, at the
        barrier."""
        most = self._write_ahead_users
        state, join = self._state, self._join_map
        users = state.oldest_changed(most)
        joined = join.oldest_changed(most)
        if users or joined:
            for user in {*users, *joined}:
                state.stage(user)
                join.stage(user)
            written = self._writer.flush()
            self._metrics.state_written_ahead.inc(written)
        if not self._flushed_ahead and (
            (len(users) < most and len(joined) < most)
            or self._write_ahead_window.due_in() < FLUSH_AHEAD_LEAD_S
        ):
            self.flush_ahead()

    def flush_ahead(self) -> None:
        """Once per checkpoint interval, when writing ahead has caught up (what is left changes
        batch by batch), or else ``FLUSH_AHEAD_LEAD_S`` before the barrier is due: RocksDB's
        memtables flushed in its background threads (``StateWrites.startFlush``). The
        checkpoint's synchronous part flushes them on the task's thread, and every record behind
        the barrier waits for it; flushed ahead, it is left with the changes made since (at
        5,000 events/s its median fell from 35-40 ms to 15-20; bench/HISTORY.md, thirty-second
        session). Not with a state backend other than RocksDB's own (the changelog backend, the
        heap): ``startFlush`` says so once and is not asked again."""
        self._flushed_ahead = True
        if not self._flush_ahead_possible:
            return
        if self._writer.start_flush():
            self._metrics.state_flushed_ahead.inc()
        else:
            self._flush_ahead_possible = False
            log.info("the keyed state backend is not RocksDB's own: no memtable flush ahead")

    def write_join_changes(self) -> None:
        """Every waiting label-join change, in one call into the JVM; the users' values keep
        waiting for the barrier. Past ``state_write_behind_max`` waiting join changes: they grow
        with the records (two per event in a drain), while the users' changed values are bounded
        by the user cache (a changed user leaving it is written first) and, written once per
        checkpoint, cost one pickle per user however many of its events came. Writing the
        users too here, as before, pickled each of them again at every such write-out: from
        about 10,000 events/s with 5 s checkpoints, once or more per interval."""
        started = time.perf_counter()
        join = self._join_map
        entries = join.changed_entries
        for user in list(join.changed()):
            join.stage(user)
        self._writer.flush()
        seconds = time.perf_counter() - started
        self._metrics.state_writes.observe(seconds)
        log.debug("join changes written: %d entries in %.1f ms", entries, 1000 * seconds)

    def write_deferred(self) -> None:
        """Every waiting state write, in one call into the JVM (``state_writes.py``): per user
        its value if it changed and its changed join entries."""
        started = time.perf_counter()
        state, join = self._state, self._join_map
        users = set(state.changed()).union(join.changed())
        entries = join.changed_entries
        for user in users:
            state.stage(user)
            join.stage(user)
        staged = time.perf_counter()
        self._writer.flush()
        seconds = time.perf_counter() - started
        self._metrics.state_writes.observe(seconds)
        log.debug("state written: %d users, %d join entries in %.1f ms (%.1f ms to stage them)",
                  len(users), entries, 1000 * seconds, 1000 * (staged - started))  # fmt: skip

    def _label(
        self,
        out: list[OutputRecord],
        key: str,
        payload: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        ctx: Any,
    ) -> None:
        try:
            label = read_label(payload, key, self._labels, self._max_record_bytes)
        except Rejection as rejection:
            self._metrics.labels.labels(rejection.reason).inc()
            out.append(self._dead_letter(rejection, topic, partition, offset, payload))
            return
        assert payload is not None  # read_label rejects a record without one
        parked = ParkedLabel(
            label["is_fraud"], label["label_time"], payload, topic, partition, offset
        )
        out.extend(self._join(key, label["event_id"], parked, ctx))

    def _features(
        self,
        out: list[OutputRecord],
        event: dict[str, Any],
        user_id: str,
        payload: bytes,
        ingest_time: int,
        topic: str,
        partition: int,
        offset: int,
        watermark: int,
    ) -> None:
        """An event's late rule and features; what follows from its score waits for the
        batch's (``_score_unscored``)."""
        event_time = event["event_time"]
        if event_time <= watermark:
            if event_time <= watermark - self._lateness:
                self._late_dropped.inc()
                late = Rejection(
                    "late",
                    f"event_time {event_time} is more than allowed_lateness_ms={self._lateness} "
                    f"behind the watermark {watermark}",
                )
                out.append(self._dead_letter(late, topic, partition, offset, payload))
                return
            self._late_scored.inc()
        unscored = self._unscored
        state: ScoringState | None = unscored.states.get(user_id)
        if state is None:
            state = self._state.get(user_id)
            if state is None:
                state = new_scoring_state(self._engine.new_state())
            unscored.states[user_id] = state
        vector = self._engine.update(state.features, event)
        unscored.events.append(Unscored(event, user_id, ingest_time, state, vector))

    def _score_unscored(self, out: list[OutputRecord], ctx: Any) -> None:
        """Score the events waiting since the batch began or since its last label for one of
        their users, in one call per model, then the rest of each event in its order: its label
        join, timer and state, feature-store write and prediction."""
        unscored = self._unscored
        events = unscored.events
        if not events:
            return
        vectors = [item.vector for item in events]
        champion = self._champion.score_many(vectors)
        candidate = self._candidate
        candidate_scores: list[tuple[float, str, bool]] = []
        canary: list[bool] = []
        if candidate is not None:
            canary_percent = self._canary_percent
            canary = [canary_arm(item.user_id, canary_percent) for item in events]
            candidate_scores = candidate.score_many(
                [vector for vector, arm in zip(vectors, canary) if arm]
            )
        next_candidate = 0
        for position, item in enumerate(events):
            champion_score: float | None = None
            scored = champion[position]
            arm = "champion"
            if canary and canary[position]:
                champion_score = scored[0]
                scored = candidate_scores[next_candidate]
                next_candidate += 1
                arm = "candidate"
            self._scored_event(out, item, scored, arm, champion_score, ctx)
        events.clear()
        unscored.states.clear()

    def _scored_event(
        self,
        out: list[OutputRecord],
        item: Unscored,
        scored: tuple[float, str, bool],
        arm: str,
        champion_score: float | None,
        ctx: Any,
    ) -> None:
        event, user_id, vector, state = item.event, item.user_id, item.vector, item.state
        event_time: int = event["event_time"]  # typed: its sums below are machine integers
        metrics = self._metrics
        amount = event["amount"]
        score, model_version, fell_back = scored
        decision = self._costs.decide(score, amount)
        challenger = self._challenger
        challenger_score = challenger.score(vector) if challenger is not None else None
        challenger_version = challenger.version if challenger is not None else None

        drift = self._drift
        if drift is not None:
            drift.observe(event_time, vector, score if champion_score is None else champion_score)

        event_id = event["event_id"]
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
        join = self._join_map
        parked_ids = state.parked_ids
        entry: JoinEntry | None = None
        if state.parked and (parked_ids is None or event_id in parked_ids):
            entry = join.get(user_id, event_id)
        if entry is not None and entry[0] == PARKED:  # its label came first
            state.parked -= 1
            if parked_ids is not None:
                del parked_ids[event_id]
            label = parked_label(entry)
            out.append(self._close(event_id, event_time, outcome, None, label, user_id, state))
        else:
            join.put(user_id, event_id, fresh_pending_entry(outcome))
            if state.due is not None:
                state.due.add_pending(event_time + self._horizon_ms)
        self._arm_timer(user_id, state, ctx, event_time + self._horizon_ms)
        self._state.put(user_id, state)

        degraded = []
        if fell_back:
            degraded.append("model")
            metrics.degraded.labels("model").inc()
        if not self._store.healthy:
            degraded.append("redis")
            metrics.degraded.labels("redis").inc()
        self._store.submit(user_id, event_time, event_id, vector)
        ingest_time = item.ingest_time
        record = records.prediction(
            self._predictions,
            event,
            score,
            decision,
            model_version,
            self._feature_set_version,
            degraded,
            ingest_time,
            arm,
            challenger_score,
            challenger_version,
        )
        self._scored.inc()
        metrics.predictions.labels(decision, model_version).inc()
        self._score_histogram.observe(score)
        self._latency.observe(max(0.0, time.time() - ingest_time / 1000.0))
        out.append((self._topic_predictions, user_id.encode(), record))

    def _join(
        self, user_id: str, event_id: str, label: ParkedLabel, ctx: Any
    ) -> list[OutputRecord]:
        join = self._join_map
        entry = join.get(user_id, event_id)
        if entry is None:
            # Its event may still come (topics are read at uneven speeds): wait for it until the
            # watermark says it can no longer be scored.
            state: ScoringState | None = self._state.get(user_id)
            if state is None:
                state = new_scoring_state(self._engine.new_state())
            join.put(user_id, event_id, parked_entry(label))
            state.parked += 1
            gives_up = label.label_time + self._park_wait_ms
            if state.parked_ids is not None:
                state.parked_ids[event_id] = gives_up
            if state.due is not None:
                state.due.add_parked(gives_up)
            self._metrics.labels.labels("parked").inc()
            self._arm_timer(user_id, state, ctx, gives_up)
            self._state.put(user_id, state)
            return []
        kind = entry[0]
        if kind == PENDING:
            event_time = pending_event_time(entry)
            # The owner's state only for its join summary (state.DueSummary), and only if the
            # cache holds it. Not held (a label comes long after its event, and with many users
            # the user has left the cache), its read and unpickle were 12 % of the scoring thread
            # with 1,000,000 users, and the whole state was then written again
            # (bench/HISTORY.md, forty-fourth session). Its summary then still counts this entry
            # as pending, so the timer at the pending deadline walks the map and rebuilds it: an
            # error towards walking, which the summary allows, and the outputs are the same
            # (tests/unit/test_timer_summary.py).
            owner: ScoringState | None = self._state.cached(user_id)
            if owner is not None:
                if owner.due is not None and not owner.due.remove_pending(
                    event_time + self._horizon_ms
                ):
                    owner.due = None  # counted under another horizon: rebuilt by the next walk
                self._state.put(user_id, owner)
            packed = stored_outcome(entry)
            if packed is None:  # made in this run and not written yet: the outcome itself
                fresh: PendingOutcome = entry[1]
                return [self._close(event_id, event_time, fresh, None, label, user_id, owner)]
            return [self._close(event_id, event_time, None, packed, label, user_id, owner)]
        if kind == CLOSED:
            reason = _CLOSED_REASONS.get(entry[2], "label:expired")
            return [self._label_dead_letter(reason, "", label)]
        return [self._label_dead_letter("label:duplicate", "its event has not come yet", label)]

    def _close(
        self,
        event_id: str,
        event_time: int,
        outcome: PendingOutcome | None,
        packed: PackedOutcome | None,
        label: ParkedLabel,
        user_id: str,
        state: ScoringState | None,
    ) -> OutputRecord:
        """Join a label to its pending outcome (``outcome``, or ``packed`` as the map stores
        it; its event at ``event_time``): an outcome record, or ``label:expired``. The closed
        entry it leaves is counted in the user's ``state`` (already marked changed)."""
        if state is not None and state.due is not None:
            horizon = self._horizon_ms
            state.due.add_closed(
                closed_deadline(event_time, horizon, sweep_phase(user_id, horizon))
            )
        if label.label_time - event_time > self._horizon_ms:
            self._join_map.put(user_id, event_id, closed_entry(event_time, "expired"))
            return self._label_dead_letter(
                "label:expired",
                f"label_time {label.label_time} is more than label_horizon_ms="
                f"{self._horizon_ms} after the event ({event_time})",
                label,
            )
        self._join_map.put(user_id, event_id, closed_entry(event_time, "labelled"))
        self._joined.inc()
        version = self._feature_set_version
        if outcome is not None:
            record = records.outcome(self._outcomes, event_id, user_id, outcome, label, version)
        else:
            assert packed is not None
            record = records.stored_outcome(
                self._outcomes, event_id, user_id, packed, label, version
            )
        return self._topic_outcomes, user_id.encode(), record

    def on_timer(self, user_id: str, timestamp: int, ctx: Any) -> list[bytes]:
        """Walk the user's join map: expire what is due, cap what is pending, re-arm.

        Flink set the timer's user as the current key. What the timer changes waits, like a
        record's changes, for the write-out before the next barrier when records came since
        the last one: the batcher then announces that barrier (``RecordBatcher``), through the
        channel the records came by, ahead of it. Otherwise (no record yet in this run, none
        since the last barrier, or the end of input's timers after its last announcement) no
        announcement would come, and the changes are written at once, with whatever of the
        user's state was waiting. When every firing wrote at once (until the thirty-fourth
        session), the timers of a drain pickled their users' states again and again: 6 % of
        the scoring thread in a 1,000,000-event drain (bench/HISTORY.md)."""
        self._keys.assume(user_id)
        try:
            return self._on_timer(user_id, timestamp, ctx)
        finally:
            if not self._barrier_announced:
                self._state.stage(user_id)
                self._join_map.stage(user_id)
                self._writer.flush()

    def _on_timer(self, user_id: str, timestamp: int, ctx: Any) -> list[bytes]:
        if timestamp > int(time.time() * 1000) + self._max_ahead_ms:
            # Fired by a watermark ahead of any event (the end of input's, which a stop with
            # --drain sends): nothing is due. Forget the timer (registering it again here would
            # fire it again at once) so that the user's next record arms a new one.
            spurious: ScoringState | None = self._state.get(user_id)
            if spurious is not None:
                spurious.timer_at = -1
                self._state.put(user_id, spurious)
            return []
        state: ScoringState | None = self._state.get(user_id)
        if state is None:
            return []
        state.timer_at = -1
        if not is_due(state, timestamp, self._retention_ms, self._max_pending):
            # The usual firing: armed at an event's pending deadline, whose label has come
            # since. Nothing is due, so the map is not read (state.DueSummary).
            self._arm_timer(user_id, state, ctx, next_deadline(state, self._retention_ms))
            self._state.put(user_id, state)
            return []
        join = self._join_map
        horizon, park_wait = self._horizon_ms, self._park_wait_ms
        phase = sweep_phase(user_id, horizon)
        out: list[OutputRecord] = []
        kept: dict[str, JoinEntry] = {}  # event id -> what stays in the map
        pending: list[tuple[int, str]] = []  # (event time, event id) of what stays pending
        for event_id, entry in join.items(user_id):
            kind = entry[0]
            if entry_deadline(entry, horizon, park_wait, phase) > timestamp:
                kept[event_id] = entry
                if kind == PENDING:
                    pending.append((pending_event_time(entry), event_id))
            elif kind == PENDING:
                expired = closed_entry(pending_event_time(entry), "expired")
                join.put(user_id, event_id, expired)
                kept[event_id] = expired
                self._metrics.labels.labels("expired_unlabelled").inc()
            elif kind == CLOSED:
                join.remove(user_id, event_id)
            else:
                join.remove(user_id, event_id)
                state.parked -= 1
                out.append(
                    self._label_dead_letter(
                        "label:unknown_event",
                        f"no event {event_id} for this user by the watermark {timestamp}",
                        parked_label(entry),
                    )
                )
        # A user with more unlabelled events than the cap loses the oldest: checked here, not
        # per event, so it bounds the state between timers rather than at every record. A small
        # closed entry stays in each one's place, so that its label, if it still comes, is a
        # dead letter that says why (``label:pending_dropped``) rather than an unknown event.
        if len(pending) > self._max_pending:
            pending.sort()
            for event_time, event_id in pending[: len(pending) - self._max_pending]:
                dropped = closed_entry(event_time, "dropped")
                join.put(user_id, event_id, dropped)
                kept[event_id] = dropped
                self._metrics.labels.labels("dropped_pending").inc()
        newest = state.features.newest
        idle = newest < 0 or newest + self._retention_ms <= timestamp
        if idle and not kept:
            self._state.clear(user_id)
            self._metrics.expired_users.inc()
        else:
            state.due = summarise(kept.values(), horizon, park_wait, phase)
            # The walk saw the whole map: the parked labels are known from here on.
            state.parked_ids = {
                event_id: entry_deadline(kept_entry, horizon, park_wait, phase)
                for event_id, kept_entry in kept.items()
                if kept_entry[0] == PARKED
            }
            self._arm_timer(user_id, state, ctx, next_deadline(state, self._retention_ms))
            self._state.put(user_id, state)
        return [self._packer.pack(out)] if out else []

    # --- helpers -----------------------------------------------------------------------------
    def _arm_timer(self, user_id: str, state: ScoringState, ctx: Any, deadline: int) -> None:
        """Keep one event-time timer per user, at its earliest deadline (rounded up)."""
        at = timer_time(deadline)
        if state.timer_at < 0 or at < state.timer_at:
            self._keys.to(user_id)
            ctx.timer_service().register_event_time_timer(at)
            state.timer_at = at

    def _dead_letter(
        self, rejection: Rejection, topic: str, partition: int, offset: int, payload: bytes | None
    ) -> OutputRecord:
        row = self._dead.row(rejection, topic, partition, offset, payload)
        return (self._topic_dead, row[0], row[1])

    def _label_dead_letter(self, reason: str, detail: str, label: ParkedLabel) -> OutputRecord:
        self._metrics.labels.labels(reason).inc()
        return self._dead_letter(
            Rejection(reason, detail or reason),
            label.topic,
            label.partition,
            label.offset,
            label.payload,
        )
