package streamscore.flink;

import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkGeneratorSupplier;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;

/**
 * Watermarks a fixed lag behind the newest record timestamp seen: the newest minus {@code lagMs},
 * emitted periodically ({@code pipeline.auto-watermark-interval}) once a record came. A Kafka
 * source makes one per partition and emits their minimum.
 *
 * <p>The watermark of the Table API's {@code WATERMARK FOR t AS t - INTERVAL 'lag'}, which the
 * job used until the forty-first session, so the late rule ({@code event_time <= watermark})
 * draws its line where it did; Flink's {@code forBoundedOutOfOrderness} emits one millisecond
 * less. (The table's generator took the last record's timestamp at each emit, not the newest, so
 * an out-of-order record just before an emit held its watermark back until the next one.)
 */
public final class LaggingWatermarks<T> implements WatermarkGenerator<T> {

    private final long lagMs;
    private long newest = Long.MIN_VALUE;

    private LaggingWatermarks(long lagMs) {
        this.lagMs = lagMs;
    }

    /** The strategy whose generators lag {@code lagMs} behind their newest record timestamp. */
    public static <T> WatermarkStrategy<T> strategy(long lagMs) {
        if (lagMs < 0) {
            throw new IllegalArgumentException("a watermark's lag cannot be negative: " + lagMs);
        }
        return WatermarkStrategy.forGenerator(new Supplier<T>(lagMs));
    }

    @Override
    public void onEvent(T event, long eventTimestamp, WatermarkOutput output) {
        if (eventTimestamp > newest) {
            newest = eventTimestamp;
        }
    }

    @Override
    public void onPeriodicEmit(WatermarkOutput output) {
        if (newest != Long.MIN_VALUE) {
            output.emitWatermark(new Watermark(newest - lagMs));
        }
    }

    private static final class Supplier<T> implements WatermarkGeneratorSupplier<T> {
        private static final long serialVersionUID = 1L;
        private final long lagMs;

        Supplier(long lagMs) {
            this.lagMs = lagMs;
        }

        @Override
        public WatermarkGenerator<T> createWatermarkGenerator(Context context) {
            return new LaggingWatermarks<>(lagMs);
        }
    }
}
