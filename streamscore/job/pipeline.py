"""Builds the scoring job's graph.

  Kafka events + labels (one Table API source: key, raw bytes, topic/partition/offset, and
    per-partition watermarks from the Kafka timestamps, with idleness, all in the JVM)
    → keyBy the Kafka key (JVM; none with one scoring subtask) → RecordBatcher (JVM) ─┐
  Kafka control (raw rows, JVM) → OutsideEventTime (JVM) ─ broadcast ─────────────────┤
    → ScoreEvents (Python, RocksDB state keyed by user, + broadcast): per record of the batch,
      decode, validate, late rule, features, scores, label join → packed (topic, key, value)s
    → OutputUnpacker (JVM) → one Kafka sink: predictions, dead letters, labelled outcomes
      (topic picked in the JVM)
  Kafka outcomes → keyBy a constant (JVM) → RecordBatcher (JVM) → LearnChallenger (Python,
    1 subtask)
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
from pyflink.table import StreamTableEnvironment

from streamscore.config import DeliveryGuarantee as Guarantee
from streamscore.config import Settings
from streamscore.job import SCORING_OPERATOR
from streamscore.job.functions import (
    BYTES,
    CONTROL_ROW,
    CONTROL_STATE,
    INPUT_BATCH,
    KAFKA_RECORD,
    KEYED_INPUT,
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

_STARTUP_MODES = {
    "earliest": "earliest-offset",
    "latest": "latest-offset",
    "group-offsets": "group-offsets",
}


def _quote(value: str) -> str:
    return value.replace("'", "''")


def source_ddl(
    s: Settings,
    table: str,
    topics: list[str],
    group: str,
    startup_mode: str,
    watermark: str = "none",
) -> str:
    """A raw-bytes Kafka source with the record's topic, partition, offset and timestamp.

    ``watermark``:
    * ``"event_time"``: the record's Kafka timestamp is its event time. The source keeps a
      watermark per partition (bounded out-of-orderness ``max_out_of_orderness_ms``, idle after
      ``source_idleness_ms`` without records) and emits their minimum, so a partition read
      faster than another cannot push the watermark past the other's waiting events. It also
      has the record's key (``msg_key``), the column the job partitions by. Its partitions are
      read in step by event time (``source_alignment_drift_ms``), so that labels, stamped with
      their label time, do not run ahead of their events in a backlog.
    * ``"none"``: no watermark (the control topic, taken out of event time by
      ``_outside_event_time``, and the learner's outcomes)."""
    columns, options = "", ""
    if watermark == "event_time":
        bound_s = s.max_out_of_orderness_ms / 1000
        columns = f"""WATERMARK FOR kafka_time AS kafka_time - INTERVAL '{bound_s:.3f}' SECOND,
            """
        alignment = _alignment_options(s, table)
        options = f"""{alignment}'scan.watermark.idle-timeout' = '{s.source_idleness_ms} ms',
            'key.format' = 'raw',
            'key.fields' = 'msg_key',
            'value.fields-include' = 'EXCEPT_KEY',
            'value.format' = 'raw'"""
    else:
        options = "'format' = 'raw'"
    key = "msg_key STRING,\n            " if watermark == "event_time" else ""
    security = "".join(
        f"'properties.{key}' = '{_quote(value)}',\n            "
        for key, value in connector_properties(s).items()
    )
    return f"""
        CREATE TEMPORARY TABLE {table} (
            {key}payload BYTES,
            src_topic STRING METADATA FROM 'topic' VIRTUAL,
            src_partition INT METADATA FROM 'partition' VIRTUAL,
            src_offset BIGINT METADATA FROM 'offset' VIRTUAL,
            {columns}kafka_time TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL
        ) WITH (
            'connector' = 'kafka',
            'topic' = '{_quote(";".join(topics))}',
            'properties.bootstrap.servers' = '{_quote(s.kafka_bootstrap)}',
            'properties.group.id' = '{_quote(group)}',
            'properties.isolation.level' = 'read_committed',
            'properties.fetch.min.bytes' = '{s.source_fetch_min_bytes}',
            'properties.fetch.max.wait.ms' = '{s.source_fetch_max_wait_ms}',
            'scan.startup.mode' = '{startup_mode}',
            'properties.auto.offset.reset' = 'earliest',
            {security}{options}
        )"""


def _alignment_options(s: Settings, group: str) -> str:
    """The table options of watermark alignment (``source_alignment_drift_ms``), or none."""
    if s.source_alignment_drift_ms <= 0:
        return ""
    return f"""'scan.watermark.alignment.group' = '{_quote(group)}',
            'scan.watermark.alignment.max-drift' = '{s.source_alignment_drift_ms} ms',
            'scan.watermark.alignment.update-interval' = '{ALIGNMENT_UPDATE_MS} ms',
            """


# The Kafka timestamp as epoch millis. Thread mode hands TIMESTAMP_LTZ to Python as an opaque
# Java object, and SQL forbids casting it to a number; EXTRACT works on the value itself (a
# string round trip through UNIX_TIMESTAMP showed up in the JVM's profile).
_EPOCH_MILLIS = "EXTRACT(EPOCH FROM kafka_time) * 1000 + EXTRACT(MILLISECOND FROM kafka_time)"


def _source_rows(t_env: StreamTableEnvironment, table: str) -> DataStream:
    """The source table as rows (payload, topic, partition, offset, ingest time in millis)."""
    return t_env.to_data_stream(
        t_env.sql_query(
            "SELECT payload, src_topic, src_partition, src_offset, "
            f"{_EPOCH_MILLIS} AS ingest_time FROM {table}"
        )
    )


def _input_batches(t_env: StreamTableEnvironment, table: str, s: Settings) -> KeyedStream:
    """The events and labels, partitioned by the Kafka key and packed into batches in the JVM
    (``RecordBatcher``), keyed by their first record's key (``INPUT_BATCH``).

    The batcher runs in each scoring subtask after the key shuffle (with one scoring subtask,
    in the source's chain), so a batch holds only users whose state that subtask keeps; the
    scoring operator switches the key per record. A record without a key is keyed by ``''``:
    the scoring operator dead-letters it (``key_mismatch``), as the JVM's key selector cannot
    take a null."""
    rows = t_env.to_data_stream(
        t_env.sql_query(
            "SELECT COALESCE(msg_key, ''), ROW(COALESCE(msg_key, ''), payload, src_topic, "
            f"src_partition, src_offset, {_EPOCH_MILLIS}) FROM {table}"
        )
    )
    j_rows = _as_row_type(rows, KEYED_INPUT)._j_data_stream
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


def _as_row_type(stream: DataStream, row_type: Any) -> DataStream:
    """The Table API types its rows with ExternalTypeInfo, which PyFlink's two-input operators
    cannot take; declaring the same rows as a RowTypeInfo keeps them in the JVM."""
    stream._j_data_stream.getTransformation().setOutputType(row_type.get_java_type_info())
    return stream


# The key the JVM partitions by: a row of one string, as PyFlink's own key_by makes it (the
# keyed state's layout depends on it).
_KEY_TYPE = Types.ROW([Types.STRING()])


def build(env: StreamExecutionEnvironment, s: Settings, model: ModelBundle | None) -> None:
    # The functions below are pickled into the job graph with these settings: no secrets in
    # there (the functions read them from their TaskManager's environment, see functions.py).
    s = s.without_secrets()
    schemas: dict[str, dict[str, Any]] = {name: schema(name) for name in RECORD_TYPES}
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.local-time-zone", "UTC")
    startup = _STARTUP_MODES[s.start_from]
    t_env.execute_sql(
        source_ddl(s, "raw_input", [s.topic_events, s.topic_labels], s.consumer_group, startup,
                   watermark="event_time")
    )  # fmt: skip
    # The control topic is compacted: from its start, a new job gets the latest commands.
    t_env.execute_sql(
        source_ddl(s, "raw_control", [s.topic_control], f"{s.consumer_group}-control",
                   "earliest-offset")
    )  # fmt: skip
    # The learner starts at the end: it learns from this job's outcomes, not earlier runs'.
    t_env.execute_sql(
        source_ddl(s, "raw_outcomes", [s.topic_outcomes], f"{s.consumer_group}-learner",
                   "latest-offset")
    )  # fmt: skip

    # The source runs at the scoring parallelism, in the scorers' slots: each TaskManager reads
    # its share of the partitions, and the key shuffle sends each record to its user's scorer.
    t_env.get_config().set("table.exec.resource.default-parallelism", str(s.scoring_parallelism))
    keyed_input = _input_batches(t_env, "raw_input", s)
    t_env.get_config().set("table.exec.resource.default-parallelism", str(s.parallelism))

    control = _outside_event_time(_as_row_type(_source_rows(t_env, "raw_control"), CONTROL_ROW))

    scored = keyed_input.connect(control.broadcast(CONTROL_STATE)).process(
        ScoreEvents(s, schemas, model), output_type=BYTES
    )
    scored.name(SCORING_OPERATOR).uid("features-score")
    scored.set_parallelism(s.scoring_parallelism)
    routed = _unpacked_outputs(scored, s).sink_to(kafka_sink(s, None, "scored"))
    routed.name("scored-sink").uid("scored-sink").set_parallelism(s.scoring_parallelism)

    # The outcomes as INPUT_ROWs under one key, in batches like the scorers' records.
    outcomes = _as_row_type(
        t_env.to_data_stream(
            t_env.sql_query(
                "SELECT 'all', ROW('all', payload, src_topic, src_partition, src_offset, "
                f"{_EPOCH_MILLIS}) FROM raw_outcomes"
            )
        ),
        KEYED_INPUT,
    )
    learned = (
        _batched(outcomes._j_data_stream, s, "batch-outcomes", 1, LEARNING_SLOTS)
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
