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

    @Override
    public void processElement(StreamRecord<byte[]> element) throws Exception {
        byte[] packed = element.getValue();
        int at = 0;
        while (at < packed.length) {
            int topicLength = readInt(packed, at);
            at += 4;
            String topic = new String(packed, at, topicLength, StandardCharsets.UTF_8);
            at += topicLength;
            int keyLength = readInt(packed, at);
            at += 4;
            byte[] key = null;
            if (keyLength >= 0) {
                key = Arrays.copyOfRange(packed, at, at + keyLength);
                at += keyLength;
            }
            int valueLength = readInt(packed, at);
            at += 4;
            byte[] value = null;
            if (valueLength >= 0) {
                value = Arrays.copyOfRange(packed, at, at + valueLength);
                at += valueLength;
            }
            Row row = Row.of(topic, key, value);
            output.collect(
                    element.hasTimestamp()
                            ? new StreamRecord<>(row, element.getTimestamp())
                            : new StreamRecord<>(row));
        }
    }

    private static int readInt(byte[] data, int at) {
        return ((data[at] & 0xff) << 24)
                | ((data[at + 1] & 0xff) << 16)
                | ((data[at + 2] & 0xff) << 8)
                | (data[at + 3] & 0xff);
    }
}
