from streamscore.job.watermarks import (
    NO_PROGRESS,
    PartitionProgress,
    java_string_hash,
    kafka_split_owner,
)


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


def test_an_expected_partition_holds_the_watermark_until_its_first_record() -> None:
    progress = PartitionProgress(idleness_ms=10_000)
    progress.expect([0, 1], now_ms=0)
    # Partition 0's whole backlog is read first: partition 1, not seen yet, holds the watermark.
    assert progress.observe(0, 300_000, now_ms=1_000) == NO_PROGRESS
    assert progress.observe(1, 1_000, now_ms=2_000) == 1_000
    # The input starts long after the job: idleness counts from the first record, so the
    # partitions not seen yet still hold the watermark, and stop once silent for 10 s of flow.
    late_input = PartitionProgress(idleness_ms=10_000)
    late_input.expect([0, 1], now_ms=0)
    assert late_input.observe(0, 5_000, now_ms=60_000) == NO_PROGRESS
    assert late_input.observe(0, 6_000, now_ms=65_000) == NO_PROGRESS
    assert late_input.observe(0, 7_000, now_ms=70_001) == 7_000


def test_after_a_pause_of_the_whole_input_every_partition_gets_time_to_deliver() -> None:
    progress = PartitionProgress(idleness_ms=10_000)
    progress.observe(0, 1_000, now_ms=0)
    progress.observe(1, 1_000, now_ms=0)
    # 60 s of silence, then partition 0 first: partition 1 may still have records on the way.
    assert progress.observe(0, 90_000, now_ms=60_000) == 1_000
    assert progress.observe(1, 80_000, now_ms=61_000) == 80_000


def test_java_string_hash_matches_java() -> None:
    # Values of String.hashCode() in Java.
    assert java_string_hash("") == 0
    assert java_string_hash("events") == -1291329255
    assert java_string_hash("hello world, this overflows") == 161437415
    assert java_string_hash("Aa") == java_string_hash("BB") == 2112


def test_kafka_split_owner_is_round_robin_from_the_topics_start_index() -> None:
    owners = [kafka_split_owner("events", p, 3) for p in range(6)]
    start = owners[0]
    assert owners == [(start + p) % 3 for p in range(6)]
    assert all(kafka_split_owner("events", p, 1) == 0 for p in range(4))


def test_while_the_reader_is_behind_no_partition_turns_idle() -> None:
    # A backlog: every record was appended at 0, and is read 20 s and more later. Partition 0's
    # batch is handed out first; partition 1's records wait behind it, for longer than 10 s.
    progress = PartitionProgress(idleness_ms=10_000)
    progress.expect([0, 1], now_ms=0)
    assert progress.observe(0, 1_000, now_ms=20_000, appended_ms=0) == NO_PROGRESS
    assert progress.observe(0, 300_000, now_ms=35_000, appended_ms=0) == NO_PROGRESS
    assert progress.observe(1, 2_000, now_ms=36_000, appended_ms=0) == 2_000
    # Caught up (fresh records): a partition silent for 10 s is idle again.
    assert progress.observe(0, 310_000, now_ms=40_000, appended_ms=39_990) == 2_000
    assert progress.observe(0, 315_000, now_ms=45_000, appended_ms=44_990) == 2_000
    assert progress.observe(0, 320_000, now_ms=50_001, appended_ms=50_000) == 320_000
