"""The training set read back from the topics: the job's order, its late rule, its horizon."""

from streamscore.model.topics_dataset import first_labels, job_order, without_late_events


def event(event_id: str, event_time: int) -> dict:
    return {"event_id": event_id, "event_time": event_time}


def test_partitions_keep_their_offset_order_and_merge_by_timestamp() -> None:
    records = [(10, 0, event("a", 1)), (30, 0, event("b", 2)), (20, 1, event("c", 3)),
               (25, 0, event("d", 4))]  # fmt: skip
    # partition 0's own order stays a, b, d even though d has an earlier timestamp than b
    assert [r[2]["event_id"] for r in job_order(records)] == ["a", "c", "b", "d"]


def test_events_beyond_the_allowed_lateness_are_left_out() -> None:
    ordered = [
        (0, 0, event("p0-new", 100_000)),
        (0, 1, event("p1-new", 100_000)),
        (0, 0, event("at-the-limit", 100_000 - 5_000 - 60_000)),  # dead-lettered by the job
        (0, 0, event("late-ok-2", 100_000 - 5_000 - 59_999)),
        (0, 1, event("too-late", 1_000)),
    ]
    kept = [e["event_id"] for e in without_late_events(ordered, 5_000, 60_000)]
    assert kept == ["p0-new", "p1-new", "late-ok-2"]


def test_the_slowest_partition_holds_the_watermark() -> None:
    ordered = [(0, 1, event("slow", 10_000)), (0, 0, event("fast", 1_000_000)),
               (0, 1, event("slow-2", 20_000))]  # fmt: skip
    kept = [e["event_id"] for e in without_late_events(ordered, 5_000, 60_000)]
    assert kept == ["slow", "fast", "slow-2"]


def test_first_label_within_the_horizon() -> None:
    times = {"a": 1_000, "b": 1_000, "c": 1_000}
    labels = [
        {"event_id": "a", "is_fraud": True, "label_time": 2_000},
        {"event_id": "a", "is_fraud": False, "label_time": 3_000},  # a duplicate
        {"event_id": "b", "is_fraud": True, "label_time": 1_000 + 600_001},  # expired
        {"event_id": "ghost", "is_fraud": True, "label_time": 2_000},  # unknown event
    ]
    assert first_labels(labels, times, 600_000) == {"a": True}
