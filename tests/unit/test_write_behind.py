"""Past ``state_write_behind_max`` waiting label-join changes, the scoring operator writes those
changes and leaves the users' values waiting for the checkpoint barrier
(``ScoringOperator.write_join_changes``): the state written is the same as with the limit never
reached, and each user's value is still pickled and written once per barrier, however many
times the join's changes overflowed in between.

Runs the operator outside Flink on the fakes of ``bench/operator_cost.py``, with the records and
timer service of ``test_timer_summary`` (every case of the join), once with the default limit
(never reached by this stream between its barriers) and once with a limit of a few entries."""

from __future__ import annotations

from tests.unit.test_timer_summary import EVENTS, _records, _run


def test_join_changes_overflowing_are_written_without_writing_the_users_again() -> None:
    records = _records(seed=12, events=EVENTS // 4)
    reference = _run(records, walk_always=False)
    small = _run(records, walk_always=False, overrides={"state_write_behind_max": 20})
    # The same outputs, label counts and state at the end.
    assert small["outputs"] == reference["outputs"]
    assert small["labels"] == reference["labels"]
    assert small["map"] == reference["map"]
    assert small["values"] == reference["values"]
    # The limit was reached (many more write-outs than the barriers and timers made) ...
    assert small["flushes"] > reference["flushes"] + 50, (small["flushes"], reference["flushes"])
    # ... and the users' values were written no more often: only at barriers, timers and cache
    # evictions, as with the limit never reached.
    assert small["value_writes"] == reference["value_writes"], (
        small["value_writes"],
        reference["value_writes"],
    )
