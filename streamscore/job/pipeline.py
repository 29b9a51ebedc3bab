"""Builds the scoring job's graph.

  Kafka events + labels (one Table API source, raw bytes + topic/partition/offset/timestamp)
    → DecodeAndValidate (Python) ─ side output → dead letters
    → event-time timestamps + per-partition bounded-out-of-orderness watermarks (JVM)
    → keyBy user (JVM) ─┐
  Kafka control (raw rows, JVM) ─ broadcast ─┤
    → ScoreEvents (Python, RocksDB state, keyed + broadcast) → (topic, key, value)
    → one Kafka sink: predictions, dead letters, labelled outcomes (topic picked in the JVM)
  Kafka outcomes → keyBy a constant (JVM) → LearnChallenger (Python, 1 subtask)
    → Kafka control (challenger snapshots, automatic rollbacks)

The timestamp assignment and key extraction use the same JVM classes PyFlink's own
``assign_timestamps_and_watermarks``/``key_by`` use, but fed directly by the decode function, so an
event crosses into Python twice instead of four times. Flink 2 has no stream iterations: the
learner reaches the scorers through the control topic, read back as broadcast state.
"""

from __future__ import annotations

import logging
from typing import Any

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.serialization import RowFieldExtractorSchema
from pyflink.common.typeinfo import Types
from pyflink.datastream import DataStream, KeyedStream, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment
from pyflink.util.java_utils import get_java_class

from streamscore.config import DeliveryGuarantee as Guarantee
from streamscore.config import Settings
from streamscore.job.functions import (
    BYTES,
    CONTROL_ROW,
    CONTROL_STATE,
    DEAD_LETTERS,
    ENVELOPE,
    KAFKA_RECORD,
    KEYED_ENVELOPE,
    ROUTED_RECORD,
    TIMESTAMPED_ENVELOPE,
    DecodeAndValidate,
    LearnChallenger,
    ScoreEvents,
)
from streamscore.kafka_io import connector_properties
from streamscore.model.loading import ModelBundle
from streamscore.resources import RECORD_TYPES, schema

log = logging.getLogger(__name__)

# Scoring and the sinks get their own slots (so, on single-slot TaskManagers, their own JVM and
# Python interpreter) apart from the source and decoding: the two Python stages then run in
# parallel instead of taking turns on one interpreter's GIL.
SCORING_SLOTS = "scoring"
# The learner too, on a TaskManager (interpreter) of its own: one Python operator per
# TaskManager (see functions.ControlReader).
LEARNING_SLOTS = "learning"
END_OF_TIME = 253_402_300_799_000  # 9999-12-31T23:59:59Z, SQL's last timestamp

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
    end_of_time_watermark: bool = False,
) -> str:
    """A raw-bytes Kafka source with the record's topic, partition, offset and timestamp.

    ``end_of_time_watermark``: the source's watermark is a constant far in the future, and the
    source is idle when quiet. For the control topic, broadcast into operators whose watermark is
    the minimum of their inputs': commands carry no event time and must never hold it back."""
    watermark = (
        f"""end_of_time AS TO_TIMESTAMP_LTZ({END_OF_TIME}, 3),
            WATERMARK FOR end_of_time AS end_of_time,
            """
        if end_of_time_watermark
        else ""
    )
    idle = "'scan.watermark.idle-timeout' = '1 s'," if end_of_time_watermark else ""
    security = "".join(
        f"'properties.{key}' = '{_quote(value)}',\n            "
        for key, value in connector_properties(s).items()
    )
    return f"""
        CREATE TEMPORARY TABLE {table} (
            payload BYTES,
            src_topic STRING METADATA FROM 'topic' VIRTUAL,
            src_partition INT METADATA FROM 'partition' VIRTUAL,
            src_offset BIGINT METADATA FROM 'offset' VIRTUAL,
            {watermark}kafka_time TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL
        ) WITH ({idle}
            'connector' = 'kafka',
            'topic' = '{_quote(";".join(topics))}',
            'properties.bootstrap.servers' = '{_quote(s.kafka_bootstrap)}',
            'properties.group.id' = '{_quote(group)}',
            'properties.isolation.level' = 'read_committed',
            'scan.startup.mode' = '{startup_mode}',
            'properties.auto.offset.reset' = 'earliest',
            {security}'format' = 'raw'
        )"""


def _source_rows(t_env: StreamTableEnvironment, table: str) -> DataStream:
    """The source table as rows (payload, topic, partition, offset, ingest time in millis).

    Thread mode hands TIMESTAMP_LTZ to Python as an opaque Java object, and SQL forbids casting
    it to a number, so the Kafka timestamp becomes epoch millis here (the session is UTC, so the
    string round trip is exact)."""
    return t_env.to_data_stream(
        t_env.sql_query(
            "SELECT payload, src_topic, src_partition, src_offset, "
            "UNIX_TIMESTAMP(CAST(kafka_time AS STRING)) * 1000 "
            f"+ EXTRACT(MILLISECOND FROM kafka_time) AS ingest_time FROM {table}"
        )
    )


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
        jvm = get_gateway().jvm
        j_serializer = (
            jvm.org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchemaBuilder()
        )
        j_serializer.setTopicSelector(
            jvm.org.apache.flink.python.util.PythonConnectorUtils.createFirstColumnTopicSelector(
                get_java_class(jvm.org.apache.flink.connector.kafka.sink.TopicSelector)
            )
        )
        j_serializer.setKeySerializationSchema(RowFieldExtractorSchema(1)._j_serialization_schema)
        j_serializer.setValueSerializationSchema(RowFieldExtractorSchema(2)._j_serialization_schema)
        builder._j_builder.setRecordSerializer(j_serializer.build())
    builder.set_property("linger.ms", "5")
    for key, value in connector_properties(s).items():
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


def _keyed_by_first_field(j_rows: Any, value_type: Any) -> KeyedStream:
    """Key a Java stream of rows (key, value) by its first field, in the JVM."""
    jvm = get_gateway().jvm
    j_keyed = j_rows.keyBy(jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(j_keyed, value_type, DataStream(j_rows))


def _event_time_keyed(decoded: DataStream, s: Settings) -> KeyedStream:
    """Timestamps/watermarks from the decode output's second field, then key by its key field."""
    gateway = get_gateway()
    jvm = gateway.jvm
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_millis(s.max_out_of_orderness_ms)
    ).with_idleness(Duration.of_millis(s.source_idleness_ms))
    j_timestamped = decoded._j_data_stream.assignTimestampsAndWatermarks(
        strategy._j_watermark_strategy.withTimestampAssigner(
            jvm.org.apache.flink.streaming.api.functions.python.eventtime.CustomTimestampAssigner()
        )
    ).name("event-time-watermarks")
    j_keyed_envelopes = j_timestamped.map(
        jvm.org.apache.flink.streaming.api.functions.python.eventtime.RemoveTimestampMapFunction(),
        KEYED_ENVELOPE.get_java_type_info(),
    ).name("strip-timestamp")
    return _keyed_by_first_field(j_keyed_envelopes, ENVELOPE)


def build(env: StreamExecutionEnvironment, s: Settings, model: ModelBundle | None) -> None:
    # The functions below are pickled into the job graph with these settings: no secrets in
    # there (the functions read them from their TaskManager's environment, see functions.py).
    s = s.without_secrets()
    schemas: dict[str, dict[str, Any]] = {name: schema(name) for name in RECORD_TYPES}
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.local-time-zone", "UTC")
    startup = _STARTUP_MODES[s.start_from]
    t_env.execute_sql(
        source_ddl(s, "raw_input", [s.topic_events, s.topic_labels], s.consumer_group, startup)
    )
    # The control topic is compacted: from its start, a new job gets the latest commands.
    t_env.execute_sql(
        source_ddl(s, "raw_control", [s.topic_control], f"{s.consumer_group}-control",
                   "earliest-offset", end_of_time_watermark=True)
    )  # fmt: skip
    # The learner starts at the end: it learns from this job's outcomes, not earlier runs'.
    t_env.execute_sql(
        source_ddl(s, "raw_outcomes", [s.topic_outcomes], f"{s.consumer_group}-learner",
                   "latest-offset")
    )  # fmt: skip

    decoded = _source_rows(t_env, "raw_input").process(
        DecodeAndValidate(s, schemas), output_type=TIMESTAMPED_ENVELOPE
    )
    decoded.name("decode-validate").uid("decode-validate")

    control = _as_row_type(_source_rows(t_env, "raw_control"), CONTROL_ROW)

    scored = (
        _event_time_keyed(decoded, s)
        .connect(control.broadcast(CONTROL_STATE))
        .process(ScoreEvents(s, schemas, model), output_type=ROUTED_RECORD)
    )
    scored.name("features-score").uid("features-score").slot_sharing_group(SCORING_SLOTS)
    scored.set_parallelism(s.scoring_parallelism)
    routed = scored.sink_to(kafka_sink(s, None, "scored"))
    routed.name("scored-sink").uid("scored-sink")
    routed.slot_sharing_group(SCORING_SLOTS).set_parallelism(s.scoring_parallelism)

    dead = decoded.get_side_output(DEAD_LETTERS)
    dead_letters = dead.sink_to(kafka_sink(s, s.topic_dead_letters, "dead-letters"))
    dead_letters.name("dead-letters-sink").uid("dead-letters-sink")

    outcomes = _as_row_type(
        t_env.to_data_stream(t_env.sql_query("SELECT 'all', payload FROM raw_outcomes")),
        Types.ROW([Types.STRING(), BYTES]),
    )
    learned = (
        _keyed_by_first_field(outcomes._j_data_stream, BYTES)
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
    env.enable_checkpointing(s.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    conf = Configuration()
    conf.set_string("python.execution-mode", s.python_execution_mode)
    conf.set_string("state.backend.type", "rocksdb")
    conf.set_string("execution.checkpointing.incremental", "true")
    conf.set_string(
        "execution.checkpointing.min-pause", str(min(500, s.checkpoint_interval_ms // 2))
    )
    conf.set_string("pipeline.name", s.job_name)
    # Chained JVM operators pass records on without copying them; none of ours mutates one.
    conf.set_string("pipeline.object-reuse", "true")
    env.configure(conf)
