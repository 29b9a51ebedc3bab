package streamscore.flink;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Unpacks what the Python scoring operator returns for a batch (one packed byte array) into the
 * rows (topic, key, value) the Kafka sink writes, in the JVM: one crossing out of Python per
 * batch instead of one per output record.
 *
 * <p>The packed form is, per output record, big-endian: topic length (int) and UTF-8 bytes, key
 * length (int, -1 for null) and bytes, value length (int, -1 for null) and bytes. Each row keeps
 * the timestamp of the packed record it came from.
 */
public class OutputUnpacker extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<byte[], Row> {

    private static final long serialVersionUID = 1L;

    private transient byte[] packed;
    private transient int at;

    @Override
    public void processElement(StreamRecord<byte[]> element) throws Exception {
        packed = element.getValue();
        at = 0;
        while (at < packed.length) {
            int topicLength = readInt();
            String topic = new String(packed, at, topicLength, StandardCharsets.UTF_8);
            at += topicLength;
            byte[] key = readField();
            byte[] value = readField();
            Row row = Row.of(topic, key, value);
            output.collect(
                    element.hasTimestamp()
                            ? new StreamRecord<>(row, element.getTimestamp())
                            : new StreamRecord<>(row));
        }
        packed = null;
    }

    /** A length (-1 for null) and that many bytes. */
    private byte[] readField() {
        int length = readInt();
        if (length < 0) {
            return null;
        }
        byte[] field = Arrays.copyOfRange(packed, at, at + length);
        at += length;
        return field;
    }

    private int readInt() {
        int value =
                ((packed[at] & 0xff) << 24)
                        | ((packed[at + 1] & 0xff) << 16)
                        | ((packed[at + 2] & 0xff) << 8)
                        | (packed[at + 3] & 0xff);
        at += 4;
        return value;
    }
}
