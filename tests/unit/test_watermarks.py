from streamscore.job.watermarks import PartitionProgress


def test_the_slowest_active_partition_holds_the_watermark() -> None:
    progress = PartitionProgress(idleness_ms=10_000)
    assert progress.observe(0, 1_000, now_ms=0) == 1_000
    assert progress.observe(1, 500, now_ms=1) == 500
    # Partition 0 races ahead (a backlog read unevenly): the watermark waits for partition 1.
    assert progress.observe(0, 60_000, now_ms=2) == 500
    assert progress.observe(1, 700, now_ms=3) == 700


def test_out_of_order_events_do_not_move_a_partition_back() -> None:
    progress = PartitionProgress(idleness_ms=10_000)
    progress.observe(0, 5_000, now_ms=0)
    assert progress.observe(0, 4_000, now_ms=1) == 5_000


def test_an_idle_partition_stops_holding_the_watermark_back() -> None:
    progress = PartitionProgress(idleness_ms=10_000)
    progress.observe(1, 500, now_ms=0)
    assert progress.observe(0, 9_000, now_ms=5_000) == 500
    assert progress.observe(0, 20_000, now_ms=10_001) == 20_000  # partition 1 silent for > 10 s
    assert progress.observe(1, 600, now_ms=10_002) == 600  # active again: it counts again
