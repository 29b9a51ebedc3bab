"""The feature store writer's pace: every flush interval while the job keeps up, each user's
newest write once per catch-up interval while it catches up on a backlog (``FlushPace``).

Pure logic on a fake clock, and the scoring operator outside Flink reporting its full batches;
tests/e2e/test_pipeline.py checks against the real job that Redis still ends with each user's
newest features."""

from __future__ import annotations

from streamscore.feature_store import FlushPace
from tests.unit.test_feature_store_pending import FakeRedis, make_writer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pace(clock: Clock, max_queued: int = 1000) -> FlushPace:
    return FlushPace(0.02, 1.0, max_queued, clock=clock)


def test_keeping_up_sends_at_every_wake() -> None:
    clock = Clock()
    p = pace(clock)
    for _ in range(5):
        clock.now += 0.02
        assert p.due(queued=10)
    assert not p.catching_up


def test_catching_up_sends_once_per_catch_up_interval() -> None:
    clock = Clock()
    p = pace(clock)
    assert p.due(queued=10)  # sent at 100.0
    sent = []
    for step in range(1, 151):  # 3 s of 20 ms wakes, a full batch before each
        clock.now = 100.0 + step * 0.02
        p.behind()
        if p.due(queued=10):
            sent.append(round(clock.now - 100.0, 2))
    assert p.catching_up
    assert sent == [1.0, 2.0, 3.0]


def test_caught_up_once_an_interval_passes_without_a_full_batch() -> None:
    clock = Clock()
    p = pace(clock)
    p.behind()
    clock.now += 0.02
    assert not p.due(queued=10)
    assert p.catching_up
    clock.now += 0.5
    assert not p.due(queued=10)  # still within the interval of the last full batch
    clock.now += 0.6
    assert p.due(queued=10)
    assert not p.catching_up
    clock.now += 0.02
    assert p.due(queued=10)  # and from then on at every wake


def test_a_half_full_queue_is_sent_at_once_while_catching_up() -> None:
    clock = Clock()
    p = pace(clock, max_queued=1000)
    assert p.due(queued=1)
    p.behind()
    clock.now += 0.02
    assert not p.due(queued=499)
    assert p.due(queued=500)


def test_the_catch_up_interval_is_never_shorter_than_the_flush_interval() -> None:
    clock = Clock()
    p = FlushPace(0.5, 0.1, 1000, clock=clock)
    assert p.due(queued=1)
    p.behind()
    clock.now += 0.2
    assert not p.due(queued=1)
    clock.now += 0.3
    assert p.due(queued=1)


def test_only_each_users_newest_queued_write_is_sent_and_the_rest_counted() -> None:
    client = FakeRedis()
    writer = make_writer(client)
    for event_time in range(1, 11):
        for user_id in ("u1", "u2", "u3"):
            writer.submit(user_id, event_time, f"{user_id}@{event_time}", [float(event_time)])
    writer.flush()
    assert sorted(client.sent) == ["u1", "u2", "u3"]
    assert client.stored == {"u1": 10, "u2": 10, "u3": 10}
    registry = writer._metrics.registry
    written = registry.get_sample_value(
        "streamscore_feature_store_writes_total", {"result": "written"}
    )
    superseded = registry.get_sample_value(
        "streamscore_feature_store_writes_total", {"result": "superseded"}
    )
    assert (written, superseded) == (3, 27)


def test_past_max_queued_users_the_user_queued_longest_ago_is_dropped() -> None:
    client = FakeRedis()
    writer = make_writer(client, max_queued=3)
    for user_id in ("u1", "u2", "u3"):
        writer.submit(user_id, 1, f"{user_id}@1", [1.0])
    writer.submit("u1", 2, "u1@2", [2.0])  # replaced in place: nothing dropped
    writer.submit("u4", 1, "u4@1", [1.0])  # a fourth user: u1, queued first, goes
    writer.submit("u5", 1, "u5@1", [1.0])  # and then u2
    writer.flush()
    assert client.sent == ["u3", "u4", "u5"]
    dropped = writer._metrics.registry.get_sample_value(
        "streamscore_feature_store_writes_total", {"result": "dropped"}
    )
    assert dropped == 2


def test_the_writer_sleeps_through_the_catch_up_interval() -> None:
    clock = Clock()
    p = pace(clock)
    assert p.wait_s() == 0.02
    assert p.due(queued=1)  # sent at 100.0
    p.behind()
    clock.now += 0.3
    assert not p.due(queued=1)
    assert abs(p.wait_s() - 0.7) < 1e-9  # until a second after the last send
    clock.now += 0.7
    p.behind()  # the drain goes on
    assert p.due(queued=1) and p.catching_up
    assert abs(p.wait_s() - 1.0) < 1e-9
    clock.now += 1.5  # no full batch for longer than the interval
    assert p.due(queued=1) and not p.catching_up
    assert p.wait_s() == 0.02


def test_a_full_scoring_batch_sends_the_writer_to_its_catch_up_pace() -> None:
    """The scoring operator (outside Flink, as in test_write_ahead_order) reports a full batch
    to the feature store's writer, and only a full one."""
    from streamscore.job.batches import pack_records
    from tests.unit.test_timer_summary import _Context, _records, _Timers, opened_score_events

    records = [record for _, record in _records(seed=31, events=200)]
    function = opened_score_events({"scoring_batch_max_records": 100})
    try:
        pace = function._scoring._store._pace
        ctx = _Context(_Timers())
        list(function.process_element(pack_records(records[:99]), ctx))  # cut by its wait
        pace.due(queued=1)
        assert not pace.catching_up
        list(function.process_element(pack_records(records[99:199]), ctx))  # full
        pace.due(queued=1)
        assert pace.catching_up
    finally:
        function.close()
