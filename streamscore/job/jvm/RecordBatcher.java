package streamscore.flink;

import org.apache.flink.api.common.operators.ProcessingTimeService.ProcessingTimeCallback;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.runtime.tasks.ProcessingTimeService;
import org.apache.flink.types.Row;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Packs the records of the events and labels topics into batches, so that the Python scoring
 * operator is called once per batch instead of once per record.
 *
 * <p>It sits between the key shuffle and the Python operator, in the same subtask, so a batch
 * holds only users of that subtask's key groups. It keeps no state: a batch is handed on when it
 * is full ({@code maxRecords}), when its oldest record has waited {@code maxWaitMs}, before every
 * watermark (so the Python operator sees each record under the watermark it would have seen
 * alone), before every checkpoint barrier ({@link #prepareSnapshotPreBarrier}, so a checkpoint
 * holds the Python operator's state after every record before the barrier) and at the end of
 * input.
 *
 * <p>Input: rows (key, (key, payload, topic, partition, offset, Kafka timestamp)). Output: rows
 * (first record's key, packed batch), where the packed batch is, per record, big-endian:
 * key length (int) and UTF-8 bytes, payload length (int, -1 for null) and bytes, topic length
 * (int) and UTF-8 bytes, partition (int), offset (long), Kafka timestamp (long). The batch's
 * record timestamp is its last record's.
 */
public class RecordBatcher extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, ProcessingTimeCallback {

    private static final long serialVersionUID = 1L;

    private final int maxRecords;
    private final long maxWaitMs;

    private transient byte[] buffer;
    private transient int size;
    private transient int count;
    private transient String firstKey;
    private transient long lastTimestamp;
    private transient boolean hasTimestamp;
    private transient boolean timerPending;

    public RecordBatcher(int maxRecords, long maxWaitMs) {
        if (maxRecords < 1 || maxWaitMs < 0) {
            throw new IllegalArgumentException("maxRecords >= 1 and maxWaitMs >= 0 required");
        }
        this.maxRecords = maxRecords;
        this.maxWaitMs = maxWaitMs;
    }

    @Override
    public void open() throws Exception {
        super.open();
        buffer = new byte[64 * 1024];
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row record = (Row) element.getValue().getField(1);
        String key = (String) record.getField(0);
        if (count == 0) {
            firstKey = key;
            if (maxWaitMs > 0 && !timerPending) {
                timerPending = true;
                ProcessingTimeService clock = getProcessingTimeService();
                clock.registerTimer(clock.getCurrentProcessingTime() + maxWaitMs, this);
            }
        }
        writeString(key);
        writeBytes((byte[]) record.getField(1));
        writeString((String) record.getField(2));
        writeInt((Integer) record.getField(3));
        writeLong((Long) record.getField(4));
        writeLong((Long) record.getField(5));
        count++;
        if (element.hasTimestamp()) {
            lastTimestamp = element.getTimestamp();
            hasTimestamp = true;
        }
        if (count >= maxRecords || maxWaitMs == 0) {
            flush();
        }
    }

    /** The wait is over: hand on what there is (a batch started since waits at most this). */
    @Override
    public void onProcessingTime(long time) throws Exception {
        timerPending = false;
        flush();
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        flush();
        super.processWatermark(mark);
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        flush();
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void finish() throws Exception {
        flush();
        super.finish();
    }

    private void flush() {
        if (count == 0) {
            return;
        }
        Row batch = Row.of(firstKey, Arrays.copyOf(buffer, size));
        if (hasTimestamp) {
            output.collect(new StreamRecord<>(batch, lastTimestamp));
        } else {
            output.collect(new StreamRecord<>(batch));
        }
        size = 0;
        count = 0;
        firstKey = null;
        hasTimestamp = false;
    }

    private void ensure(int more) {
        if (size + more > buffer.length) {
            buffer = Arrays.copyOf(buffer, Math.max(buffer.length * 2, size + more));
        }
    }

    private void writeInt(int value) {
        ensure(4);
        buffer[size++] = (byte) (value >>> 24);
        buffer[size++] = (byte) (value >>> 16);
        buffer[size++] = (byte) (value >>> 8);
        buffer[size++] = (byte) value;
    }

    private void writeLong(long value) {
        writeInt((int) (value >>> 32));
        writeInt((int) value);
    }

    private void writeBytes(byte[] value) {
        if (value == null) {
            writeInt(-1);
            return;
        }
        writeInt(value.length);
        ensure(value.length);
        System.arraycopy(value, 0, buffer, size, value.length);
        size += value.length;
    }

    private void writeString(String value) {
        writeBytes(value == null ? new byte[0] : value.getBytes(StandardCharsets.UTF_8));
    }
}
