"""Builds the scoring job's graph.

  Kafka events + labels (one Kafka source: rows of key, raw bytes, topic/partition/offset and
    timestamp, and per-partition watermarks from the Kafka timestamps, with idleness, all in
    the JVM) → keyBy the Kafka key (JVM; none with one scoring subtask) → RecordBatcher (JVM) ─┐
  Kafka control (the same rows, JVM) → OutsideEventTime (JVM) ─ broadcast ───────────────────┤
    → ScoreEvents (Python, RocksDB state keyed by user, + broadcast): per record of the batch,
      decode, validate, late rule, features, scores, label join → packed (topic, key, value)s
    → OutputUnpacker (JVM) → one Kafka sink: predictions, dead letters, labelled outcomes
      (topic picked in the JVM)
  Kafka outcomes (the same rows under one key, JVM) → RecordBatcher (JVM, chained) →
    LearnChallenger (Python, 1 subtask)
    → Kafka control (challenger snapshots, automatic rollbacks)

Each batch of events and labels crosses into Python once (job/batches.py). That rests on the
contract for producers of the events topic: the record's key is the event's ``user_id`` and its
timestamp the event's ``event_time`` (``streamscore produce`` stamps both); the scoring operator
checks both per record and dead-letters a record that breaks it (``key_mismatch``,
``timestamp_mismatch``). Flink 2 has no stream iterations: the learner reaches the scorers through
the control topic, read back as broadcast state.
"""

from __future__ import annotations

import logging
from typing import Any

from pyflink.common.serialization import RowFieldExtractorSchema
from pyflink.common.typeinfo import Types
from pyflink.datastream import DataStream, KeyedStream, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink
from pyflink.java_gateway import get_gateway

from streamscore.config import DeliveryGuarantee as Guarantee
from streamscore.config import Settings
from streamscore.job import SCORING_OPERATOR
from streamscore.job.functions import (
    BYTES,
    CONTROL_STATE,
    INPUT_BATCH,
    KAFKA_RECORD,
    ROUTED_RECORD,
    LearnChallenger,
    ScoreEvents,
)
from streamscore.job.jvm_jar import kafka_jar, operators_jar
from streamscore.job.load import SCORING_LOAD
from streamscore.kafka_io import connector_properties
from streamscore.model.loading import ModelBundle
from streamscore.resources import RECORD_TYPES, schema
from streamscore.stack.stack import layout_of

log = logging.getLogger(__name__)

# The learner, on a TaskManager (interpreter) of its own: one Python operator per
# TaskManager (see functions.ControlReader).
LEARNING_SLOTS = "learning"

# How often the source's split watermarks are compared for alignment (Flink's default is 1 s,
# which a paused labels partition could wait on top of the drift).
ALIGNMENT_UPDATE_MS = 100


def kafka_source(
    env: StreamExecutionEnvironment,
    s: Settings,
    name: str,
    uid: str,
    topics: list[str],
    group: str,
    start_from: str,
    keyed: bool,
    key: str | None = None,
    event_time: bool = False,
) -> Any:
    """The records of ``topics`` as the job's input rows (``jvm/kafka/KafkaRecordRows.java``:
    key, payload, topic, partition, offset, Kafka timestamp; behind their key when ``keyed``,
    with ``key`` instead of each record's own when given), a Java stream.

    ``event_time``: the record's Kafka timestamp is its event time. The source keeps a watermark
    per partition, ``max_out_of_orderness_ms`` behind its newest timestamp
    (``jvm/LaggingWatermarks.java``), idle after ``source_idleness_ms`` without records, and
    emits their minimum, so a partition read faster than another cannot push the watermark past
    the other's waiting events. Its partitions are read in step by event time
    (``source_alignment_drift_ms``), so that labels, stamped with their label time, do not run
    ahead of their events in a backlog. Without it, no watermarks (the control topic, taken out
    of event time by ``_outside_event_time``, and the learner's outcomes).

    ``start_from``: ``earliest``, ``latest``, or ``group-offsets`` (the group's committed offsets,
    the earliest where it has none). A job restored from a checkpoint or savepoint continues from
    the offsets stored in it."""
    jvm = get_gateway().jvm
    offsets = jvm.org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer
    if start_from == "earliest":
        starting = offsets.earliest()
    elif start_from == "latest":
        starting = offsets.latest()
    elif start_from == "group-offsets":
        reset = jvm.org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer
        starting = offsets.committedOffsets(reset.OffsetResetStrategy.EARLIEST)
    else:
        raise ValueError(f"start_from: {start_from!r} is not earliest, latest or group-offsets")
    builder = (
        jvm.org.apache.flink.connector.kafka.source.KafkaSource.builder()
        .setBootstrapServers(s.kafka_bootstrap)
        .setTopics(_java_strings(topics))
        .setGroupId(group)
        .setStartingOffsets(starting)
        .setDeserializer(jvm.streamscore.flink.kafka.KafkaRecordRows(keyed, key))
    )
    for property_name, value in source_properties(s).items():
        builder = builder.setProperty(property_name, value)
    if event_time:
        strategy = event_time_watermarks(s, name)
    else:
        strategy = jvm.org.apache.flink.api.common.eventtime.WatermarkStrategy.noWatermarks()
    stream = env._j_stream_execution_environment.fromSource(builder.build(), strategy, name)
    return stream.uid(uid)


def source_properties(s: Settings) -> dict[str, str]:
    """The Kafka consumer properties of the job's sources: only what transactions committed
    (exactly once end to end), the fetch sizes of the settings, and a secured broker's."""
    return {
        "isolation.level": "read_committed",
        "fetch.min.bytes": str(s.source_fetch_min_bytes),
        "fetch.max.wait.ms": str(s.source_fetch_max_wait_ms),
        **connector_properties(s),
    }


def event_time_watermarks(s: Settings, group: str) -> Any:
    """The events source's Java ``WatermarkStrategy``: per partition ``max_out_of_orderness_ms``
    behind its newest record timestamp (``jvm/LaggingWatermarks.java``), idle after
    ``source_idleness_ms``, and, unless ``source_alignment_drift_ms`` is 0, read in step with
    the other sources of alignment ``group`` (checked every ``ALIGNMENT_UPDATE_MS``)."""
    jvm = get_gateway().jvm
    duration = jvm.java.time.Duration
    strategy = jvm.streamscore.flink.LaggingWatermarks.strategy(s.max_out_of_orderness_ms)
    strategy = strategy.withIdleness(duration.ofMillis(s.source_idleness_ms))
    if s.source_alignment_drift_ms > 0:
        strategy = strategy.withWatermarkAlignment(
            group,
            duration.ofMillis(s.source_alignment_drift_ms),
            duration.ofMillis(ALIGNMENT_UPDATE_MS),
        )
    return strategy


def _java_strings(values: list[str]) -> Any:
    """``values`` as a ``java.util.List``, made explicitly: the builder's ``setTopics`` is
    overloaded (``String...`` and ``List<String>``), and this picks the list's."""
    strings = get_gateway().jvm.java.util.ArrayList()
    for value in values:
        strings.add(value)
    return strings


def _input_batches(j_rows: Any, s: Settings) -> KeyedStream:
    """The events and labels (``KEYED_INPUT`` rows), partitioned by the Kafka key and packed into
    batches in the JVM (``RecordBatcher``), keyed by their first record's key (``INPUT_BATCH``).

    The batcher runs in each scoring subtask after the key shuffle (with one scoring subtask,
    in the source's chain), so a batch holds only users whose state that subtask keeps; the
    scoring operator switches the key per record. A record without a key is keyed by ``''``:
    the scoring operator dead-letters it (``key_mismatch``), as the JVM's key selector cannot
    take a null."""
    # One scoring subtask reads every partition itself: no shuffle, so the batcher runs in the
    # source's chain and records are not serialized between them.
    shuffle = s.scoring_parallelism > 1
    return _batched(
        j_rows,
        s,
        "batch-records",
        s.scoring_parallelism,
        shuffle=shuffle,
        announce_barriers=True,
        load_name=SCORING_LOAD,
    )


def _batched(
    j_rows: Any,
    s: Settings,
    name: str,
    parallelism: int,
    slot_group: str | None = None,
    shuffle: bool = True,
    announce_barriers: bool = False,
    load_name: str | None = None,
) -> KeyedStream:
    """``KEYED_INPUT`` rows, shuffled by their key and packed into batches by ``RecordBatcher``
    (``name``: its name and uid), as a stream keyed by each batch's first key.

    ``shuffle=False`` only where the rows come from one subtask and go to one: the batcher then
    takes them as they come (every key belongs to that one subtask's key groups).
    ``announce_barriers``: an empty batch before each checkpoint barrier (``RecordBatcher``), for
    an operator that writes its state behind (``ScoreEvents``). ``load_name``: the name under
    which the operator fed reports how busy it is (``load.py``), which sets the batch wait
    between ``scoring_batch_max_wait_ms`` and ``scoring_batch_busy_wait_ms``; None for a fixed
    ``scoring_batch_max_wait_ms``."""
    jvm = get_gateway().jvm
    j_shuffled = j_rows
    if shuffle:
        j_partitioned = j_rows.keyBy(jvm.KeyByKeySelector(), _KEY_TYPE.get_java_type_info())
        # The shuffle itself, without making the batcher a keyed operator (it keeps no state).
        j_shuffled = jvm.org.apache.flink.streaming.api.datastream.DataStream(
            j_rows.getExecutionEnvironment(), j_partitioned.getTransformation()
        )
    elif parallelism != 1:
        raise ValueError("records can skip the key shuffle only from one subtask to one")
    j_batches = j_shuffled.transform(
        name,
        INPUT_BATCH.get_java_type_info(),
        jvm.streamscore.flink.RecordBatcher(
            s.scoring_batch_max_records,
            s.scoring_batch_max_wait_ms,
            s.scoring_batch_busy_wait_ms if load_name is not None else s.scoring_batch_max_wait_ms,
            load_name,
            announce_barriers,
        ),
    )
    j_batches.uid(name).setParallelism(parallelism)
    if slot_group is not None:
        j_batches.slotSharingGroup(slot_group)
    # A batch is already a batch: it goes on at once rather than wait for a network buffer.
    j_batches.setBufferTimeout(0)
    j_keyed = (
        jvm.org.apache.flink.streaming.api.datastream.DataStreamUtils.reinterpretAsKeyedStream(
            j_batches, jvm.KeyByKeySelector(), _KEY_TYPE.get_java_type_info()
        )
    )
    return KeyedStream(j_keyed, BYTES, DataStream(j_batches))


def _outside_event_time(stream: DataStream) -> DataStream:
    """``stream`` idle for good, without watermarks (``OutsideEventTime``): for the control
    records broadcast into operators whose watermark is the minimum of their inputs', which
    must follow the events alone. (A constant watermark at the end of time, idle when quiet,
    became the scorers' watermark whenever a command came while the events were idle: timers
    fired early and then never again before a restart; a constant at the epoch held the
    watermark still while the challenger published.)"""
    jvm = get_gateway().jvm
    j_stream = stream._j_data_stream
    j_untimed = j_stream.transform(
        "control-outside-event-time", j_stream.getType(), jvm.streamscore.flink.OutsideEventTime()
    )
    j_untimed.uid("control-outside-event-time").setParallelism(j_stream.getParallelism())
    return DataStream(j_untimed)


def _unpacked_outputs(scored: DataStream, s: Settings) -> DataStream:
    """The scoring operator's packed outputs as (topic, key, value) rows (``OutputUnpacker``)."""
    jvm = get_gateway().jvm
    j_rows = scored._j_data_stream.transform(
        "unpack-outputs", ROUTED_RECORD.get_java_type_info(), jvm.streamscore.flink.OutputUnpacker()
    )
    j_rows.uid("unpack-outputs").setParallelism(s.scoring_parallelism)
    return DataStream(j_rows)


def sink_properties(s: Settings) -> dict[str, str]:
    """The Kafka producer properties of the job's sinks, apart from the delivery guarantee's."""
    return {
        "linger.ms": str(s.sink_linger_ms),
        "batch.size": str(s.sink_batch_bytes),
        **connector_properties(s),
    }


def kafka_sink(s: Settings, topic: str | None, name: str) -> KafkaSink:
    """Rows (key, value) to ``topic``; with ``topic=None``, rows (topic, key, value) to the
    topic each names, chosen in the JVM (PyFlink's own topic selector would add a Python map)."""
    builder = KafkaSink.builder().set_bootstrap_servers(s.kafka_bootstrap)
    if topic is not None:
        builder.set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(topic)
            .set_key_serialization_schema(RowFieldExtractorSchema(0))
            .set_value_serialization_schema(RowFieldExtractorSchema(1))
            .build()
        )
    else:
        # Ours (jvm/kafka/RoutedRecordSerializer.java): the connector's own, built with a topic
        # selector, hashed every record's bytes twice to cache a topic the row already names.
        builder._j_builder.setRecordSerializer(
            get_gateway().jvm.streamscore.flink.kafka.RoutedRecordSerializer()
        )
    for key, value in sink_properties(s).items():
        builder.set_property(key, value)
    if s.delivery_guarantee is Guarantee.EXACTLY_ONCE:
        builder = (
            builder.set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
            .set_transactional_id_prefix(f"{s.job_name}-{name}")
            .set_property("transaction.timeout.ms", str(s.transaction_timeout_ms))
        )
    else:
        builder = builder.set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
    return builder.build()


# The key the JVM partitions by: a row of one string, as PyFlink's own key_by makes it (the
# keyed state's layout depends on it).
_KEY_TYPE = Types.ROW([Types.STRING()])


def build(env: StreamExecutionEnvironment, s: Settings, model: ModelBundle | None) -> None:
    # The functions below are pickled into the job graph with these settings: no secrets in
    # there (the functions read them from their TaskManager's environment, see functions.py).
    s = s.without_secrets()
    schemas: dict[str, dict[str, Any]] = {name: schema(name) for name in RECORD_TYPES}
    # The source runs at the scoring parallelism, in the scorers' slots: each TaskManager reads
    # its share of the partitions, and the key shuffle sends each record to its user's scorer.
    j_input = kafka_source(
        env, s, "raw_input", "source-input", [s.topic_events, s.topic_labels],
        s.consumer_group, s.start_from, keyed=True, event_time=True,
    )  # fmt: skip
    keyed_input = _input_batches(j_input.setParallelism(s.scoring_parallelism), s)
    # The control topic is compacted: from its start, a new job gets the latest commands.
    j_control = kafka_source(
        env, s, "raw_control", "source-control", [s.topic_control],
        f"{s.consumer_group}-control", "earliest", keyed=False,
    )  # fmt: skip
    control = _outside_event_time(DataStream(j_control))

    scored = keyed_input.connect(control.broadcast(CONTROL_STATE)).process(
        ScoreEvents(s, schemas, model), output_type=BYTES
    )
    scored.name(SCORING_OPERATOR).uid("features-score")
    scored.set_parallelism(s.scoring_parallelism)
    routed = _unpacked_outputs(scored, s).sink_to(kafka_sink(s, None, "scored"))
    routed.name("scored-sink").uid("scored-sink").set_parallelism(s.scoring_parallelism)

    # The outcomes as KEYED_INPUT rows under one key, in batches like the scorers' records. The
    # learner starts at the end: it learns from this job's outcomes, not earlier runs'.
    j_outcomes = kafka_source(
        env, s, "raw_outcomes", "source-outcomes", [s.topic_outcomes],
        f"{s.consumer_group}-learner", "latest", keyed=True, key="all",
    )  # fmt: skip
    j_outcomes.setParallelism(1).slotSharingGroup(LEARNING_SLOTS)
    learned = (
        _batched(j_outcomes, s, "batch-outcomes", 1, LEARNING_SLOTS, shuffle=False)
        .connect(control.broadcast(CONTROL_STATE))
        .process(LearnChallenger(s, schemas), output_type=KAFKA_RECORD)
    )
    learned.name("learn-challenger").uid("learn-challenger").set_parallelism(1)
    learned.slot_sharing_group(LEARNING_SLOTS)
    commands = learned.sink_to(kafka_sink(s, s.topic_control, "control"))
    commands.name("control-sink").uid("control-sink").set_parallelism(1)
    commands.slot_sharing_group(LEARNING_SLOTS)


def configure(env: StreamExecutionEnvironment, s: Settings) -> None:
    """Settings the job carries itself, so it behaves the same on any cluster of this version."""
    from pyflink.common import Configuration
    from pyflink.datastream import CheckpointingMode

    env.set_parallelism(s.parallelism)
    env.set_buffer_timeout(s.buffer_timeout_ms)
    # The job's own JVM operators (job/jvm/), shipped with the job like the connector jar.
    jars = layout_of(s).flink_jars
    env.add_jars(operators_jar(jars).as_uri(), kafka_jar(jars).as_uri())
    env.enable_checkpointing(s.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    conf = Configuration()
    conf.set_string("python.execution-mode", s.python_execution_mode)
    conf.set_string("state.backend.type", "rocksdb")
    conf.set_string("execution.checkpointing.incremental", "true")
    # Aligned barriers, stated rather than assumed: the scoring operator writes its waiting state
    # when the empty batch that RecordBatcher sends ahead of each barrier reaches it, through the
    # channel the barrier follows; an unaligned barrier would overtake it (RecordBatcher.java).
    conf.set_string("execution.checkpointing.unaligned.enabled", "false")
    conf.set_string("state.backend.rocksdb.compression.per.level", s.rocksdb_compression_per_level)
    conf.set_string("state.backend.rocksdb.use-bloom-filter", str(s.rocksdb_bloom_filter).lower())
    conf.set_string(
        "execution.checkpointing.min-pause", str(min(500, s.checkpoint_interval_ms // 2))
    )
    conf.set_string("pipeline.name", s.job_name)
    # Chained JVM operators pass records on without copying them; none of ours mutates one.
    conf.set_string("pipeline.object-reuse", "true")
    env.configure(conf)
