"""The scoring operator keeps the order of changes that writing ahead needs only for batches that
can be followed by a write-ahead, those that are not full: a batch of ``scoring_batch_max_records``
(a backlog drains, nothing is written ahead) does not pay for it per record
(``state.UserStateCache.ordered``, ``state.JoinMap.ordered``; bench/HISTORY.md, twenty-sixth
session), while a batch cut by its wait, however large, does, so that its changes are written
ahead of the barrier rather than at it (twenty-ninth session). Runs ``ScoreEvents`` outside
Flink on the fakes of ``bench/operator_cost.py``."""

from __future__ import annotations

from streamscore.job.batches import pack_records
from tests.unit.test_timer_summary import _Context, _records, _Timers, opened_score_events


def test_only_batches_that_are_not_full_put_their_changes_in_order() -> None:
    records = [record for _, record in _records(seed=21, events=200)]
    function = opened_score_events({"scoring_batch_max_records": 100})
    try:
        scoring = function._scoring
        ctx = _Context(_Timers())
        function.process_element(pack_records(records[:100]), ctx)  # full: a backlog drains
        assert not scoring._state.ordered and not scoring._join_map.ordered
        assert scoring._state.changed() and not scoring._state.oldest_changed(1_000)
        # One record short of full: the batch was cut by its wait (the operator keeps up).
        function.process_element(pack_records(records[100:199]), ctx)
        assert scoring._state.ordered and scoring._join_map.ordered
        assert scoring._state.oldest_changed(1_000) and scoring._join_map.oldest_changed(1_000)
    finally:
        function.close()
