package streamscore.flink;

/**
 * How long {@link RecordBatcher} lets a batch wait for more records: longer while the operator
 * it feeds is busy.
 *
 * <p>Every batch costs the same fixed work (a call into Python, a channel hand-over, thread
 * wake-ups, network buffers), so near the box's capacity fewer, larger batches leave more of it
 * for the records (bench/HISTORY.md, eleventh session: a 20 ms wait instead of 5 ms cost 7 to
 * 27 % less CPU per event at steady rates); a lightly loaded job should not pay a long wait in
 * latency. The operator runs in another task than the batcher (it has a second input), so it
 * measures its own share of the wall-clock time and reports it ({@link OperatorLoad}): up to
 * {@link #IDLE_SHARE} a batch waits the shortest time, from {@link #BUSY_SHARE} on the
 * longest, in proportion between. An operator whose batches grow becomes less busy, and the
 * wait settles between the two.
 */
public final class BatchWait {

    /** Up to this share of the time busy, the shortest wait. */
    public static final double IDLE_SHARE = 0.25;
    /** From this share on, the longest wait. */
    public static final double BUSY_SHARE = 0.5;

    private BatchWait() {}

    /**
     * The wait when the operator was busy {@code share} of the time: {@code shortest} up to
     * {@link #IDLE_SHARE}, {@code longest} from {@link #BUSY_SHARE}, in proportion between.
     */
    public static long forShare(double share, long shortest, long longest) {
        if (share <= IDLE_SHARE) {
            return shortest;
        }
        if (share >= BUSY_SHARE) {
            return longest;
        }
        double part = (share - IDLE_SHARE) / (BUSY_SHARE - IDLE_SHARE);
        return shortest + Math.round(part * (longest - shortest));
    }
}
