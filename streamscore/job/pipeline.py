"""Builds the scoring job's graph.

  Kafka (raw bytes + topic/partition/offset/timestamp metadata, via the Table API's Kafka source)
    → DecodeAndValidate (Python) ─ side output → dead letters
    → event-time timestamps + bounded-out-of-orderness watermarks with idleness (JVM)
    → keyBy user (JVM) → ScoreEvents (Python, RocksDB state) ─ side output (late) → dead letters
    → predictions (Kafka sink, exactly-once or at-least-once)

The timestamp assignment and key extraction use the same JVM classes PyFlink's own
``assign_timestamps_and_watermarks``/``key_by`` use, but fed directly by the decode function, so an
event crosses into Python twice instead of four times.
"""

from __future__ import annotations

import logging
from typing import Any

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.serialization import RowFieldExtractorSchema
from pyflink.datastream import DataStream, KeyedStream, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment

from streamscore.config import DeliveryGuarantee as Guarantee
from streamscore.config import Settings
from streamscore.job.functions import (
    DEAD_LETTERS,
    EVENT_ENVELOPE,
    KAFKA_RECORD,
    KEYED_ENVELOPE,
    LATE_EVENTS,
    TIMESTAMPED_ENVELOPE,
    DecodeAndValidate,
    ScoreEvents,
)
from streamscore.model.loading import ModelBundle
from streamscore.resources import RECORD_TYPES, schema

log = logging.getLogger(__name__)

# Scoring and the sinks get their own slots (so, on single-slot TaskManagers, their own JVM and
# Python interpreter) apart from the source and decoding: the two Python stages then run in
# parallel instead of taking turns on one interpreter's GIL.
SCORING_SLOTS = "scoring"

_STARTUP_MODES = {
    "earliest": "earliest-offset",
    "latest": "latest-offset",
    "group-offsets": "group-offsets",
}


def source_ddl(s: Settings) -> str:
    def quote(value: str) -> str:
        return value.replace("'", "''")

    return f"""
        CREATE TEMPORARY TABLE raw_events (
            payload BYTES,
            src_topic STRING METADATA FROM 'topic' VIRTUAL,
            src_partition INT METADATA FROM 'partition' VIRTUAL,
            src_offset BIGINT METADATA FROM 'offset' VIRTUAL,
            kafka_time TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL
        ) WITH (
            'connector' = 'kafka',
            'topic' = '{quote(s.topic_events)}',
            'properties.bootstrap.servers' = '{quote(s.kafka_bootstrap)}',
            'properties.group.id' = '{quote(s.consumer_group)}',
            'properties.isolation.level' = 'read_committed',
            'scan.startup.mode' = '{_STARTUP_MODES[s.start_from]}',
            'properties.auto.offset.reset' = 'earliest',
            'format' = 'raw'
        )"""


def kafka_sink(s: Settings, topic: str, name: str) -> KafkaSink:
    serializer = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(topic)
        .set_key_serialization_schema(RowFieldExtractorSchema(0))
        .set_value_serialization_schema(RowFieldExtractorSchema(1))
        .build()
    )
    builder = (
        KafkaSink.builder()
        .set_bootstrap_servers(s.kafka_bootstrap)
        .set_record_serializer(serializer)
        .set_property("linger.ms", "5")
    )
    if s.delivery_guarantee is Guarantee.EXACTLY_ONCE:
        builder = (
            builder.set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
            .set_transactional_id_prefix(f"{s.job_name}-{name}")
            .set_property("transaction.timeout.ms", str(s.transaction_timeout_ms))
        )
    else:
        builder = builder.set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
    return builder.build()


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
    from pyflink.common.typeinfo import Types

    j_keyed = j_keyed_envelopes.keyBy(
        jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, EVENT_ENVELOPE, DataStream(j_keyed_envelopes))


def build(env: StreamExecutionEnvironment, s: Settings, model: ModelBundle | None) -> None:
    schemas: dict[str, dict[str, Any]] = {name: schema(name) for name in RECORD_TYPES}
    t_env = StreamTableEnvironment.create(env)
    # UTC, so the string round trip below is exact (no DST gaps or repeats).
    t_env.get_config().set("table.local-time-zone", "UTC")
    t_env.execute_sql(source_ddl(s))
    # Thread mode hands TIMESTAMP_LTZ to Python as an opaque Java object, and SQL forbids
    # casting it to a number, so the Kafka timestamp becomes epoch millis here.
    raw = t_env.to_data_stream(
        t_env.sql_query(
            "SELECT payload, src_topic, src_partition, src_offset, "
            "UNIX_TIMESTAMP(CAST(kafka_time AS STRING)) * 1000 "
            "+ EXTRACT(MILLISECOND FROM kafka_time) "
            "AS ingest_time FROM raw_events"
        )
    )

    decoded = raw.process(DecodeAndValidate(s, schemas), output_type=TIMESTAMPED_ENVELOPE)
    decoded.name("decode-validate").uid("decode-validate")
    scored = _event_time_keyed(decoded, s).process(
        ScoreEvents(s, schemas, model), output_type=KAFKA_RECORD
    )
    scored.name("features-score").uid("features-score").slot_sharing_group(SCORING_SLOTS)
    scored.set_parallelism(s.scoring_parallelism)

    predictions = scored.sink_to(kafka_sink(s, s.topic_predictions, "predictions"))
    predictions.name("predictions-sink").uid("predictions-sink")
    predictions.slot_sharing_group(SCORING_SLOTS).set_parallelism(s.scoring_parallelism)
    dead = decoded.get_side_output(DEAD_LETTERS).union(scored.get_side_output(LATE_EVENTS))
    dead_letters = dead.sink_to(kafka_sink(s, s.topic_dead_letters, "dead-letters"))
    dead_letters.name("dead-letters-sink").uid("dead-letters-sink")
    dead_letters.slot_sharing_group(SCORING_SLOTS).set_parallelism(s.scoring_parallelism)


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
