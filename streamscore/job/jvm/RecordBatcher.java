package streamscore.flink;

import org.apache.flink.api.common.operators.ProcessingTimeService.ProcessingTimeCallback;
import org.apache.flink.metrics.Gauge;
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
 * is full ({@code maxRecords}), when its oldest record has waited (see below), before every
 * watermark (so the Python operator sees each record under the watermark it would have seen
 * alone), before every checkpoint barrier ({@link #prepareSnapshotPreBarrier}, so a checkpoint
 * holds the Python operator's state after every record before the barrier) and at the end of
 * input.
 *
 * <p>How long a batch waits follows the load ({@link BatchWait}): with a {@code loadName}, the
 * share of the time the operator it feeds reported itself busy ({@link OperatorLoad}) sets it,
 * from {@code maxWaitMs} when idle to {@code busyWaitMs} when busy; without one, or with both
 * equal, it is {@code maxWaitMs}. A wait of 0 hands on every record alone. The wait in force is
 * the operator metric {@value #WAIT_METRIC}.
 *
 * <p>Input: rows (key, (key, payload, topic, partition, offset, Kafka timestamp)). Output: rows
 * (first record's key, packed batch), where the packed batch is, per record, big-endian:
 * key length (int) and UTF-8 bytes, payload length (int, -1 for null) and bytes, topic length
 * (int) and UTF-8 bytes, partition (int), offset (long), Kafka timestamp (long). The batch's
 * record timestamp is its last record's.
 *
 * <p>With {@code announceBarriers}, an empty batch (no records, under the key of the last record
 * handed on, so a key of this subtask's key groups) follows the last batch before every
 * checkpoint barrier and at the end of input, whenever records were handed on since the last
 * one: the Python operator keeps its state writes until then, and makes them before the barrier
 * reaches it. The operator is not chained to this one (it has a second input, the broadcast
 * control stream, so Flink runs it as a task of its own): the empty batch goes through the same
 * channel as the batches, ahead of the barrier, and with aligned checkpoints (the job's, see
 * {@code pipeline.py}) the operator handles it before its snapshot. Unaligned checkpoints would
 * let the barrier overtake it.
 */
public class RecordBatcher extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, ProcessingTimeCallback {

    private static final long serialVersionUID = 1L;

    private final int maxRecords;
    private final long maxWaitMs;
    private final long busyWaitMs;
    private final String loadName;
    private final boolean announceBarriers;

    /** The operator metric with the wait in force, in milliseconds. */
    public static final String WAIT_METRIC = "batchWaitMs";

    private transient byte[] buffer;
    private transient int size;
    private transient int count;
    private transient String firstKey;
    private transient long lastTimestamp;
    private transient boolean hasTimestamp;
    private transient boolean timerPending;
    private transient String lastKey;
    private transient boolean handedOn;
    private transient boolean finished;
    private transient int subtask;
    private transient long waitMs;

    /**
     * {@code loadName}: the name under which the operator fed reports its load ({@link
     * OperatorLoad}), or null for a fixed wait of {@code maxWaitMs}.
     */
    public RecordBatcher(
            int maxRecords,
            long maxWaitMs,
            long busyWaitMs,
            String loadName,
            boolean announceBarriers) {
        if (maxRecords < 1 || maxWaitMs < 0 || busyWaitMs < maxWaitMs) {
            throw new IllegalArgumentException(
                    "maxRecords >= 1 and 0 <= maxWaitMs <= busyWaitMs required");
        }
        this.maxRecords = maxRecords;
        this.maxWaitMs = maxWaitMs;
        this.busyWaitMs = busyWaitMs;
        this.loadName = loadName;
        this.announceBarriers = announceBarriers;
    }

    @Override
    public void open() throws Exception {
        super.open();
        buffer = new byte[64 * 1024];
        subtask = getRuntimeContext().getTaskInfo().getIndexOfThisSubtask();
        waitMs = maxWaitMs;
        getMetricGroup().gauge(WAIT_METRIC, (Gauge<Long>) () -> waitMs);
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row record = (Row) element.getValue().getField(1);
        String key = (String) record.getField(0);
        if (count == 0) {
            firstKey = key;
            waitMs = currentWait();
            if (waitMs > 0 && !timerPending) {
                timerPending = true;
                ProcessingTimeService clock = getProcessingTimeService();
                clock.registerTimer(clock.getCurrentProcessingTime() + waitMs, this);
            }
        }
        lastKey = key;
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
        if (count >= maxRecords || waitMs == 0) {
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
        // After finish() (a final checkpoint) the operators after this one are finished too:
        // finish() announced the end already.
        if (!finished) {
            announce();
        }
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void finish() throws Exception {
        flush();
        announce();
        finished = true;
        super.finish();
    }

    /** The wait for a batch started now: set by the fed operator's load, if it reports one. */
    private long currentWait() {
        if (loadName == null || busyWaitMs == maxWaitMs) {
            return maxWaitMs;
        }
        return BatchWait.forShare(OperatorLoad.share(loadName, subtask), maxWaitMs, busyWaitMs);
    }

    /** The empty batch that tells the Python operator to make its waiting state writes. */
    private void announce() {
        if (announceBarriers && handedOn) {
            output.collect(new StreamRecord<>(Row.of(lastKey, new byte[0])));
            handedOn = false;
        }
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
        handedOn = true;
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
