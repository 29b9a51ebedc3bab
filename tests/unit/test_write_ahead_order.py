"""The scoring operator keeps the order of changes that writing ahead needs only for batches that
can be followed by a write-ahead, those that are not full: a batch of ``scoring_batch_max_records``
(a backlog drains, nothing is written ahead) does not pay for it per record
(``state.UserStateCache.ordered``, ``state.JoinMap.ordered``; bench/HISTORY.md, twenty-sixth
session), while a batch cut by its wait, however large, does, so that its changes are written
ahead of the barrier rather than at it (twenty-ninth session). Runs ``ScoreEvents`` outside
Flink on the fakes of ``bench/operator_cost.py``."""

from __future__ import annotations

from typing import Any

from streamscore.job.batches import pack_records
from streamscore.job.state import WriteAheadWindow
from tests.unit.test_timer_summary import _Context, _records, _Timers, opened_score_events


def test_only_batches_that_are_not_full_put_their_changes_in_order() -> None:
    records = [record for _, record in _records(seed=21, events=200)]
    function = opened_score_events({"scoring_batch_max_records": 100})
    try:
        scoring = function._scoring
        ctx = _Context(_Timers())
        list(function.process_element(pack_records(records[:100]), ctx))  # full: a backlog drains
        assert not scoring._state.ordered and not scoring._join_map.ordered
        assert scoring._state.changed() and not scoring._state.oldest_changed(1_000)
        # One record short of full: the batch was cut by its wait (the operator keeps up).
        list(function.process_element(pack_records(records[100:199]), ctx))
        assert scoring._state.ordered and scoring._join_map.ordered
        assert scoring._state.oldest_changed(1_000) and scoring._join_map.oldest_changed(1_000)
    finally:
        function.close()


# The window open from the start: writing ahead follows every batch that is not full.
_ALWAYS_AHEAD = {"state_write_ahead_ms": 5_000, "checkpoint_interval_ms": 5_000}


def test_a_batch_s_outputs_leave_before_the_writes_it_leaves_behind() -> None:
    """``ScoreEvents.process_element`` yields the batch's outputs, which PyFlink hands to Flink
    one by one, before it writes users ahead of the barrier: the batch's records do not wait for
    those writes (bench/HISTORY.md, thirty-second session)."""
    records = [record for _, record in _records(seed=22, events=100)]
    function = opened_score_events(_ALWAYS_AHEAD)
    try:
        scoring = function._scoring
        outputs = function.process_element(pack_records(records[:60]), _Context(_Timers()))
        assert next(outputs)  # the batch's outputs, packed in one piece
        assert scoring._state.oldest_changed(1_000)  # not written yet
        assert list(outputs) == []
        assert not scoring._state.oldest_changed(1_000)  # written once the outputs had left
    finally:
        function.close()


class _Meter:
    """A load meter that notes, when a call's time is counted, whether changes still wait."""

    def __init__(self, scoring: Any) -> None:
        self.scoring = scoring
        self.waiting_when_counted: list[bool] = []

    def now(self) -> float:
        return 0.0

    def called(self, started: float) -> None:
        self.waiting_when_counted.append(bool(self.scoring._state.oldest_changed(1_000)))


def test_the_batcher_s_wait_does_not_count_the_writes_ahead() -> None:
    """The operator's busy share, which sets how long its batcher lets a batch wait, is the
    records' work only: counted with it, the writes ahead of each barrier made the batches of
    the second before it, and of the one after, wait the longest."""
    records = [record for _, record in _records(seed=23, events=100)]
    function = opened_score_events(_ALWAYS_AHEAD)
    try:
        meter = _Meter(function._scoring)
        function._load = meter
        list(function.process_element(pack_records(records[:60]), _Context(_Timers())))
        assert meter.waiting_when_counted == [True]
        assert not function._scoring._state.oldest_changed(1_000)
    finally:
        function.close()


class _FlushSpy:
    """``PythonStateWrites`` whose ``startFlush`` is counted (and answers ``possible``)."""

    def __init__(self, writes: Any, possible: bool = True) -> None:
        self._writes = writes
        self._possible = possible
        self.flushes = 0

    def write(self, packed: bytes) -> int:
        return int(self._writes.write(packed))

    def joinEntriesOf(self, user: str) -> bytes:  # noqa: N802 (the Java method's name)
        return bytes(self._writes.joinEntriesOf(user))

    def startFlush(self) -> bool:  # noqa: N802 (the Java method's name)
        self.flushes += 1
        return self._possible


def _one_at_a_time(function: Any, records: list[Any]) -> None:
    for record in records:
        list(function.process_element(pack_records([record]), _Context(_Timers())))


def test_memtables_are_flushed_once_per_interval_when_writing_ahead_has_caught_up() -> None:
    records = [record for _, record in _records(seed=24, events=200)]
    function = opened_score_events({**_ALWAYS_AHEAD, "state_write_ahead_users": 10})
    try:
        scoring = function._scoring
        spy = _FlushSpy(scoring._writer._jvm)
        scoring._writer._jvm = spy
        list(function.process_element(pack_records(records[:60]), _Context(_Timers())))
        assert spy.flushes == 0  # ten of the batch's users written: more wait
        _one_at_a_time(function, records[60:120])
        assert spy.flushes == 1  # caught up: once, however many batches follow
        assert not scoring._state.oldest_changed(1_000)
        list(function.process_element(b"", _Context(_Timers())))  # a barrier
        _one_at_a_time(function, records[120:130])
        assert spy.flushes == 2  # the next interval's
    finally:
        function.close()


def test_a_backend_that_cannot_flush_ahead_is_asked_once() -> None:
    """The changelog backend or the heap: ``startFlush`` answers False, and is not asked again."""
    records = [record for _, record in _records(seed=25, events=100)]
    function = opened_score_events(_ALWAYS_AHEAD)
    try:
        scoring = function._scoring
        spy = _FlushSpy(scoring._writer._jvm, possible=False)
        scoring._writer._jvm = spy
        _one_at_a_time(function, records[:20])
        list(function.process_element(b"", _Context(_Timers())))
        _one_at_a_time(function, records[20:40])
        assert spy.flushes == 1
    finally:
        function.close()


def test_memtables_are_flushed_ahead_shortly_before_the_barrier_even_if_not_caught_up() -> None:
    """Writing ahead that never catches up (many users changed, few written per batch) still
    flushes the memtables once, ``FLUSH_AHEAD_LEAD_S`` before the barrier is due."""
    from streamscore.job.scoring import FLUSH_AHEAD_LEAD_S

    records = [record for _, record in _records(seed=26, events=200)]
    now = [0.0]
    function = opened_score_events({"state_write_ahead_ms": 2_000, "state_write_ahead_users": 1})
    try:
        scoring = function._scoring
        spy = _FlushSpy(scoring._writer._jvm)
        scoring._writer._jvm = spy
        scoring._write_ahead_window = WriteAheadWindow(5.0, 2.0, clock=lambda: now[0])
        now[0] = 3.5  # the window is open, the barrier due in 1.5 s
        _one_at_a_time(function, records[:40])
        assert spy.flushes == 0  # a user written per batch, a user changed: never caught up
        now[0] = 5.0 - FLUSH_AHEAD_LEAD_S / 2
        _one_at_a_time(function, records[40:50])
        assert spy.flushes == 1
    finally:
        function.close()
