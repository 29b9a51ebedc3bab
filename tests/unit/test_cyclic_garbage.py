"""The scoring operator leaves no cyclic garbage: what lets it freeze its survivors after every
batch (``interpreter.SurvivorFreeze``) with young collections out of the way, so that CPython's
cyclic collector never walks the users' state and join entries it keeps (6-8 % of the operator's
time when it did). Frozen garbage in a reference cycle would only go at the next sweep, an hour
apart by default: if the operator's records made such garbage, it would pile up.

Runs the operator outside Flink on the fakes of ``bench/operator_cost.py`` with the records and
timer service of ``test_timer_summary`` (every case of the label join, timers that expire and
drop entries, a feature store that is down: its writes fail and are retried), plus malformed and
late events (dead letters), with the collector off; then everything frozen is handed back and
collected, and the objects found in reference cycles are counted."""

from __future__ import annotations

import gc
from collections import Counter

from streamscore.config import Settings
from streamscore.job.batches import pack_records
from tests.unit.test_timer_summary import (
    EVENTS,
    _Context,
    _records,
    _run,
    _Timers,
    opened_score_events,
)


def test_events_labels_bad_records_and_timers_leave_no_cyclic_garbage() -> None:
    records = _records(seed=13, events=EVENTS // 4)
    extra = []
    for i, (at, (user, payload, topic, partition, offset, timestamp)) in enumerate(records):
        if topic != "events" or i % 40:
            continue
        # Bytes that are no event (decode_error), and the event again an hour later: late.
        extra.append((at, (user, b"\x07not avro", topic, partition, offset, timestamp)))
        extra.append((at + 3_600_000, (user, payload, topic, partition, offset, timestamp)))
    records = sorted(records + extra, key=lambda item: item[0])
    try:
        result = _run(records, walk_always=False, count_cyclic_garbage=True)
    finally:
        gc.enable()  # also if the run failed with the collector off
    reasons: Counter[str] = Counter()
    for (topic, _, value), n in result["outputs"].items():
        if topic == "dead-letters":
            reasons[value.split("'reason', '")[1].split("'")[0]] += n
    # Every kind of record came through: a test that made no dead letters or joins proves little.
    assert reasons["late"] > 0 and reasons["decode_error"] > 0, reasons
    assert result["labels"].get("joined", 0) > 0 and result["labels"].get("expired_unlabelled")
    assert result["cyclic_garbage"] == 0


def test_the_scoring_function_freezes_each_batch_s_survivors_and_raises_the_threshold() -> None:
    """The wiring of the above in ``ScoreEvents``: after each batch nothing is left for the
    young collection (``gc.freeze`` empties the young generation), and the scoring interpreter's
    young threshold is the setting's."""
    records = [record for _, record in _records(seed=14, events=200)]
    thresholds = gc.get_threshold()
    function = opened_score_events()
    try:
        assert gc.get_threshold()[0] == Settings().python_gc_young_threshold
        frozen = gc.get_freeze_count()
        for start in range(0, len(records), 50):
            list(
                function.process_element(
                    pack_records(records[start : start + 50]), _Context(_Timers())
                )
            )
            assert gc.get_count()[0] == 0
        assert gc.get_freeze_count() > frozen  # the batches' survivors (the users' state)
    finally:
        function.close()
        gc.set_threshold(*thresholds)
