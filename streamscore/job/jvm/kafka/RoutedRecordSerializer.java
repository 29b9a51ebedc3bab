package streamscore.flink.kafka;

import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.flink.types.Row;

/**
 * The scoring job's rows (topic, key, value), as {@code OutputUnpacker} makes them, as Kafka
 * records: the record's topic is the row's first field, its key and value the row's bytes as they
 * are, its timestamp the stream record's (none when it has none or a negative one), no partition
 * (the producer's partitioner picks it from the key) and no headers: what the connector's own
 * serializer built with a topic selector and two {@code RowFieldExtractorSchema}s writes.
 *
 * <p>Why not that serializer: its builder wraps every topic selector in a cache keyed by the
 * record itself (a hash map cleared every five records), so each record's row was hashed twice,
 * its key and value bytes included ({@code Row.hashCode}: {@code Arrays.hashCode} of each byte
 * array), and put in the map, for a topic the row already names: about 2 % of the scoring thread
 * in a drain (bench/HISTORY.md, fortieth session).
 *
 * <p>Compiled apart from the other operators, against the Kafka connector's jar (its producer
 * classes are shaded into it): {@code jvm_jar.kafka_jar}.
 */
public class RoutedRecordSerializer implements KafkaRecordSerializationSchema<Row> {

    private static final long serialVersionUID = 1L;

    @Override
    public ProducerRecord<byte[], byte[]> serialize(
            Row row, KafkaSinkContext context, Long timestamp) {
        return new ProducerRecord<>(
                (String) row.getField(0),
                null,
                timestamp == null || timestamp < 0L ? null : timestamp,
                (byte[]) row.getField(1),
                (byte[]) row.getField(2));
    }
}
