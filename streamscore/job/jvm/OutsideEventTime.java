package streamscore.flink;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus;

/**
 * Forwards its records and takes their stream out of event time: it drops every watermark and
 * watermark status from upstream and declares its output idle once, when it opens.
 *
 * <p>For the control topic, which is broadcast into the scoring operator beside the events. A
 * two-input operator's watermark is the minimum over its inputs that are not idle, so an input
 * that is idle for good leaves the watermark to the other one alone: commands carry no event
 * time and must neither hold the events' watermark back nor push it forward. Records still flow
 * through an idle stream; only its watermarks do not count.
 *
 * <p>Before this operator the control source carried a constant watermark at the end of time,
 * idle after a second without commands. When a command came while the events were idle, the end
 * of time became the scoring operator's watermark: every user's timer fired at once, and since
 * a watermark never goes back, timers registered later (label horizons, parked labels, idle
 * users' clean-up) could not fire before the job restarted.
 */
public class OutsideEventTime<T> extends AbstractStreamOperator<T>
        implements OneInputStreamOperator<T, T> {

    private static final long serialVersionUID = 1L;

    @Override
    public void open() throws Exception {
        super.open();
        output.emitWatermarkStatus(WatermarkStatus.IDLE);
    }

    @Override
    public void processElement(StreamRecord<T> element) {
        output.collect(element);
    }

    @Override
    public void processWatermark(Watermark mark) {
        // Dropped: this stream has no event time (class comment).
    }

    @Override
    public void processWatermarkStatus(WatermarkStatus watermarkStatus) {
        // Dropped: the output stays idle whatever the source says about its partitions.
    }
}
