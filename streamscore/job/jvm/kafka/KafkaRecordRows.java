package streamscore.flink.kafka;

import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

import java.nio.charset.StandardCharsets;

/**
 * Kafka records as the job's input rows, made straight from the consumer's record: (key, payload,
 * topic, partition, offset, Kafka timestamp in epoch milliseconds), the key decoded as UTF-8 and
 * {@code ""} for a record without one (the scoring operator dead-letters it as {@code
 * key_mismatch}; the JVM's key selector cannot take a null), the payload's bytes as they are
 * (null for a tombstone). With {@code keyed}, the row is behind its key: (key, row), the shape
 * the key shuffle and {@code RecordBatcher} take. A fixed {@code key} replaces every record's.
 *
 * <p>Why not the Table API's Kafka source with the raw format, which the job used until the
 * forty-first session: each record became a {@code RowData} of the raw format's columns and
 * metadata, went through a generated projection that turned the timestamp into a {@code
 * TIMESTAMP_LTZ} and back into milliseconds ({@code EXTRACT}, with a time zone looked up per
 * record), and was converted to a {@code Row} by the table-to-stream conversion. The source
 * tasks' threads used 0.21-0.23 of a core in a drain, and under 0.03 with this deserializer
 * (bench/HISTORY.md, forty-first session).
 */
public class KafkaRecordRows implements KafkaRecordDeserializationSchema<Row> {

    private static final long serialVersionUID = 1L;

    private final boolean keyed;
    private final String key;

    /** {@code key}: every record's key instead of its own, or null for its own. */
    public KafkaRecordRows(boolean keyed, String key) {
        this.keyed = keyed;
        this.key = key;
    }

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Row> out) {
        String recordKey = key;
        if (recordKey == null) {
            byte[] bytes = record.key();
            recordKey = bytes == null ? "" : new String(bytes, StandardCharsets.UTF_8);
        }
        Row row =
                Row.of(
                        recordKey,
                        record.value(),
                        record.topic(),
                        record.partition(),
                        record.offset(),
                        record.timestamp());
        out.collect(keyed ? Row.of(recordKey, row) : row);
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        TypeInformation<Row> row =
                Types.ROW(
                        Types.STRING,
                        PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO,
                        Types.STRING,
                        Types.INT,
                        Types.LONG,
                        Types.LONG);
        return keyed ? Types.ROW(Types.STRING, row) : row;
    }
}
