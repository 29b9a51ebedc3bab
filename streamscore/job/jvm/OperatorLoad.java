package streamscore.flink;

import java.util.concurrent.ConcurrentHashMap;

/**
 * The share of the wall-clock time a Python operator spends on its records, as it reports it,
 * for the {@link RecordBatcher} that feeds it to read.
 *
 * <p>The batcher and the operator are two tasks of one job on one TaskManager (the operator has
 * a second input, so Flink cannot chain them), and Flink loads a job's classes once per
 * TaskManager: this class's static table is what they share, keyed by the operator's name and
 * subtask index. A report older than {@link #STALE_NS} counts as idle, so an operator that
 * stopped reporting (restarted, cancelled, or idle for lack of records) does not keep its
 * batcher's waits long.
 */
public final class OperatorLoad {

    /** A report older than this (nanoseconds) reads as 0. */
    public static final long STALE_NS = 3_000_000_000L;

    private static final ConcurrentHashMap<String, Report> REPORTS = new ConcurrentHashMap<>();

    /** One report: the share and when it came. */
    private static final class Report {
        final double share;
        final long atNs;

        Report(double share, long atNs) {
            this.share = share;
            this.atNs = atNs;
        }
    }

    /** Made by reflection from Python (PyFlink's thread mode calls instance methods). */
    public OperatorLoad() {}

    /**
     * The operator {@code operator}, subtask {@code subtask}, was busy {@code share} of the time
     * over its last period.
     */
    public void report(String operator, int subtask, double share) {
        REPORTS.put(key(operator, subtask), new Report(share, System.nanoTime()));
    }

    /** The last share reported, or 0 if none is newer than {@link #STALE_NS}. */
    public static double share(String operator, int subtask) {
        return share(operator, subtask, System.nanoTime());
    }

    /** As {@link #share(String, int)}, at the {@code System.nanoTime()} reading {@code nowNs}. */
    public static double share(String operator, int subtask, long nowNs) {
        Report report = REPORTS.get(key(operator, subtask));
        if (report == null || nowNs - report.atNs > STALE_NS) {
            return 0.0;
        }
        return report.share;
    }

    private static String key(String operator, int subtask) {
        return operator + "/" + subtask;
    }
}
