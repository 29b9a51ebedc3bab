"""The scoring operator's timers with the join map's due summary (``state.DueSummary``): a
firing with nothing due does not walk the map, and what the timers do is exactly what walking
at every firing did.

The operator runs outside Flink on the fakes of ``bench/operator_cost.py`` (pure logic: no
Redis reachable, so the feature store's writes fail and are counted, in both runs alike), with
a timer service that fires each user's registered timers as the watermark passes them, in
timestamp order, as Flink does. The same records go through twice: once as the job runs, once
with every user's summary made unknown before each firing, which makes every firing walk the
map as before the summary existed. Outputs, label counters and the join map at the end must
be the same, with far fewer walks."""

from __future__ import annotations

import gc
import heapq
import pickle
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from streamscore.config import Settings
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.job.batches import pack_records, unpack_outputs
from streamscore.job.state import CLOSED, PENDING
from streamscore.resources import RECORD_TYPES, schema
from streamscore.serde import Codec

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import operator_cost  # noqa: E402 (bench/ is a folder of scripts, not a package)

HORIZON_MS = 600_000
EVENTS = 12_000  # 2,400 s of event time: four horizons
MAX_PENDING = 4


class _Timers:
    """Flink's timer service for one operator: event-time timers per (key, time), each firing
    once, in time order, as the watermark passes it."""

    def __init__(self) -> None:
        self.watermark = -(2**62)
        self.queue: list[tuple[int, str]] = []
        self.registered: set[tuple[int, str]] = set()

    def current_watermark(self) -> int:
        return self.watermark

    def register_event_time_timer(self, timestamp: int) -> None:
        timer = (timestamp, operator_cost._Key.current)
        if timer not in self.registered:
            self.registered.add(timer)
            heapq.heappush(self.queue, timer)


class _Context(operator_cost._Context):
    def __init__(self, timers: _Timers) -> None:
        self._timers = timers

    def timer_service(self) -> Any:
        return self._timers


class _CountedMapState(operator_cost._MapState):
    """The fake map state, counting the walks (each reads a user's whole map) and the reads of
    one entry."""

    walks = 0
    reads = 0

    def get(self, key: str) -> Any:
        _CountedMapState.reads += 1
        return super().get(key)

    def items(self) -> list[tuple[str, bytes]]:
        _CountedMapState.walks += 1
        return super().items()


class _CountedValueState(operator_cost._ValueState):
    """The fake value state of the users' ``ScoringState``, counting the reads and writes."""

    def __init__(self) -> None:
        super().__init__()
        self.updates = 0
        self.reads = 0

    def value(self) -> Any:
        self.reads += 1
        return super().value()

    def update(self, value: Any) -> None:
        self.updates += 1
        super().update(value)


class _RuntimeContext(operator_cost._RuntimeContext):
    def get_state(self, descriptor: Any) -> _CountedValueState:
        self.value_state = _CountedValueState()
        return self.value_state

    def get_map_state(self, descriptor: Any) -> _CountedMapState:
        self.map_state = _CountedMapState()
        return self.map_state


def _records(seed: int, events: int) -> list[tuple[int, tuple[Any, ...]]]:
    """(event time, input record) of events of 100 users, one every 20 s of event time for each
    (as in a drain of the benchmark's 10,000 users), and their labels, with every case of the
    join: labels a few seconds later, labels before their event (parked), never labelled
    (they expire), labelled after the horizon, labelled twice, labels of events never sent
    (unknown), and one user with only unlabelled events, past the pending cap."""
    event_codec, label_codec = Codec("event"), Codec("label")
    generator = TransactionGenerator(
        GeneratorConfig(users=100, seed=seed, events_per_second=5, start_ms=1_767_225_600_000)
    )
    out: list[tuple[int, tuple[Any, ...]]] = []
    for i in range(events):
        event = next(generator).event
        user, t = event["user_id"], event["event_time"]
        out.append((t, (user, event_codec.encode(event), "events", 0, i, t)))

        def label(event_id: str, label_time: int, at: int, user: str = user, i: int = i) -> None:
            body = {"event_id": event_id, "user_id": user, "is_fraud": i % 7 == 0,
                    "label_time": label_time}  # fmt: skip
            out.append((at, (user, label_codec.encode(body), "labels", 0, i, label_time)))

        kind = i % 23
        if kind == 1 or user == "u-000003":
            continue  # never labelled (and u-000003 piles up past the cap)
        if kind == 2:
            label(event["event_id"], t + 2_000, t - 3_000)  # read before its event
        elif kind == 3:
            label(event["event_id"], t + HORIZON_MS + 5_000, t + HORIZON_MS + 5_000)
        elif kind == 4:
            label(event["event_id"], t + 2_000, t + 2_000)
            label(event["event_id"], t + 9_000, t + 9_000)  # twice
        elif kind == 5:
            label(f"ghost-{i}", t + 2_000, t + 2_000)
        else:
            label(event["event_id"], t + 2_000, t + 2_000 + (i % 5) * 1_000)
    out.sort(key=lambda item: item[0])
    return out


def opened_score_events(overrides: dict[str, Any] | None = None) -> Any:
    """``ScoreEvents`` on ``bench/operator_cost.py``'s fakes, opened: no metrics port, and a
    feature store that is down (nothing listens on port 1). The caller closes it."""
    s = Settings().with_overrides({"metrics_port": 0, "redis_port": 1, **(overrides or {})})
    function = operator_cost._ScoreEvents(s, {name: schema(name) for name in RECORD_TYPES}, None)
    function.open(operator_cost._RuntimeContext())
    return function


def _run(
    records: list[tuple[int, tuple[Any, ...]]],
    walk_always: bool,
    overrides: dict[str, Any] | None = None,
    count_cyclic_garbage: bool = False,
    model: Any = None,
    assignment: Any = None,
    timers_at_once: bool = False,
    fire_after_end: bool = False,
    forget_parked: bool = False,
) -> dict[str, Any]:
    """The records through the operator in batches of 25, each user's timers fired as the
    watermark passes them and a checkpoint barrier every 500 records. With
    ``count_cyclic_garbage``, the collector is off while they run, and what is left in reference
    cycles is counted at the end (frozen objects too: the operator freezes its survivors).
    ``model``: the job's model (a ``ModelBundle``; None: the fallback rules); ``assignment``: a
    ``control.Assignment`` applied before the first record. ``timers_at_once``: every firing's
    changes written at once, as when no barrier announcement is due (``on_timer``);
    ``fire_after_end``: the timers left after the last barrier fired too (as the end of input's
    watermark does), with no record after them; ``forget_parked``: before each batch, every
    cached user's parked labels made unknown (``ScoringState.parked_ids``), as in states read
    back from Flink's; ``left_waiting``: whether any of their changes
    were left unwritten. The Flink state after each barrier (and at the end) is in
    ``snapshots``. The predictions are among the
    outputs without the two fields that are not the records' (``scored_time``, the wall clock,
    and ``degraded``, which says whether the unreachable feature store was yet found down)."""
    s = Settings().with_overrides(
        {
            "metrics_port": 0,
            "redis_port": 1,  # nothing listens: the feature store fails, counted, in both runs
            "label_horizon_ms": HORIZON_MS,
            "max_pending_labels_per_user": MAX_PENDING,
            **(overrides or {}),
        }
    )
    function = operator_cost._ScoreEvents(s, {name: schema(name) for name in RECORD_TYPES}, model)
    runtime = _RuntimeContext()
    function.open(runtime)
    if assignment is not None:
        function._scoring.apply("ASSIGN", assignment)
    if count_cyclic_garbage:
        gc.disable()
    operator = function._scoring
    labels = operator._metrics.labels
    before = {name: child.value for name, child in labels.children.items()}
    skipped = operator._metrics.state_reads_skipped
    skipped_before = {name: child.value for name, child in skipped.children.items()}
    timers = _Timers()
    ctx = _Context(timers)
    outputs: Counter[tuple[str, str, Any]] = Counter()
    dead_letters, predictions = Codec("dead_letter"), Codec("prediction")

    def take(packed: list[bytes]) -> None:
        for piece in packed:
            for topic, key, value in unpack_outputs(piece):
                if topic == s.topic_predictions:
                    prediction = predictions.decode(value)
                    del prediction["scored_time"], prediction["degraded"]
                    value = repr(sorted(prediction.items()))
                elif topic == s.topic_dead_letters:  # without the time it was made
                    dead = dead_letters.decode(value)
                    value = repr(sorted((k, v) for k, v in dead.items() if "time" not in k))
                outputs[(topic, key.decode(), value)] += 1

    snapshots: list[tuple[dict[str, bytes], dict[tuple[str, str], bytes]]] = []
    left_waiting = False

    def snapshot() -> tuple[dict[str, bytes], dict[tuple[str, str], bytes]]:
        return dict(runtime.value_state._values), dict(runtime.map_state._entries)

    def fire_timers() -> None:
        """Each user's timers at or before the watermark, in time order."""
        while timers.queue and timers.queue[0][0] <= timers.watermark:
            timestamp, user = heapq.heappop(timers.queue)
            timers.registered.discard((timestamp, user))
            operator_cost._Key.current = user
            if walk_always:
                state = operator._state.get(user)
                if state is not None:
                    state.due = None
            if timers_at_once:
                operator._barrier_announced = False
            take(function.on_timer(timestamp, _TimerContext(ctx, user)))

    _CountedMapState.walks = _CountedMapState.reads = 0
    for start in range(0, len(records), 25):
        batch = [record for _, record in records[start : start + 25]]
        if forget_parked:
            for user in list(operator._state._entries):
                operator._state._entries[user].parked_ids = None
        take(function.process_element(pack_records(batch), ctx))
        # The watermark: the newest time read, less the out-of-orderness, as the job's sources.
        timers.watermark = max(timers.watermark, records[start + len(batch) - 1][0] - 5_000)
        fire_timers()
        if start % 500 == 0:
            take(function.process_element(b"", ctx))  # a checkpoint barrier: the write-out
            snapshots.append(snapshot())
    take(function.process_element(b"", ctx))
    snapshots.append(snapshot())
    if fire_after_end:
        timers.watermark = 2**62  # the end of input's watermark fires every timer left
        fire_timers()
        snapshots.append(snapshot())
        operator.write_deferred()  # what was still waiting, which nothing would have written
        left_waiting = snapshot() != snapshots[-1]
    cyclic_garbage = -1
    if count_cyclic_garbage:
        gc.unfreeze()
        cyclic_garbage = gc.collect()
        gc.enable()
    function.close()
    counts = {  # children are named by their label values: ("joined",)
        name[0]: child.value - before.get(name, 0.0) for name, child in labels.children.items()
    }
    return {
        "outputs": outputs,
        "labels": {name: value for name, value in counts.items() if value},
        "map": dict(runtime.map_state._entries),
        "walks": _CountedMapState.walks,
        "reads": _CountedMapState.reads,
        "values": dict(runtime.value_state._values),
        "value_writes": runtime.value_state.updates,
        "value_reads": runtime.value_state.reads,
        "reads_skipped": {
            name[0]: child.value - skipped_before.get(name, 0.0)
            for name, child in skipped.children.items()
        },
        "flushes": operator._writer.flushes,
        "snapshots": snapshots,
        "left_waiting": left_waiting,
        "cyclic_garbage": cyclic_garbage,
    }


class _TimerContext:
    """What ``ScoreEvents.on_timer`` reads of its context: the current key, the timers."""

    def __init__(self, ctx: _Context, user: str) -> None:
        self._ctx, self._user = ctx, user

    def get_current_key(self) -> str:
        return self._user

    def timer_service(self) -> Any:
        return self._ctx.timer_service()


def test_timers_with_the_summary_do_what_walking_every_firing_did_with_fewer_walks() -> None:
    records = _records(seed=11, events=EVENTS)
    summary, walking = _run(records, walk_always=False), _run(records, walk_always=True)
    assert summary["outputs"] == walking["outputs"]
    assert summary["labels"] == walking["labels"]
    assert summary["map"] == walking["map"]
    # Every case of the join happened: a test of the timers that never expired, dropped or gave
    # up on anything would prove nothing.
    for outcome in ("joined", "parked", "expired_unlabelled", "dropped_pending",
                    "label:unknown_event", "label:expired", "label:duplicate"):  # fmt: skip
        assert summary["labels"].get(outcome, 0) > 0, outcome
    # Fewer walks than firings (walking at every firing is the reference's count), and far
    # fewer than events: before the summary and the closed entries' sweep step, nearly every
    # event's closed entry armed a firing of its own, which walked (7,462 walks for this
    # test's stream at the commit before the summary).
    # (2,199 against 2,644 here; 2,581 if labels did not take their pending entries out of the
    # count: every firing at a labelled event's deadline would walk.)
    assert summary["walks"] * 10 < walking["walks"] * 9, (summary["walks"], walking["walks"])
    assert summary["walks"] * 4 < EVENTS, summary["walks"]


def test_known_parked_labels_spare_the_map_reads_and_change_nothing_else() -> None:
    """A user's events look themselves up in the join map while it has parked labels; where the
    operator knows their event ids (``ScoringState.parked_ids``) only those do. The same records
    with every user's parked labels made unknown before each batch (as after a restore, where
    each lookup reads the map, and the parked labels' earliest deadline is the summary's lower
    bound) must give the same outputs, label counts and map, with more reads and walks."""
    records = _records(seed=11, events=EVENTS)
    known, unknown = (
        _run(records, walk_always=False),
        _run(records, walk_always=False, forget_parked=True),
    )
    assert known["outputs"] == unknown["outputs"]
    assert known["labels"] == unknown["labels"]
    assert known["map"] == unknown["map"]
    # The join map at every checkpoint (the users' values differ: fewer walks rebuilt their
    # summaries).
    assert [entries for _, entries in known["snapshots"]] == [
        entries for _, entries in unknown["snapshots"]
    ]
    assert known["labels"].get("parked", 0) > 0
    assert known["reads"] < unknown["reads"], (known["reads"], unknown["reads"])
    assert known["walks"] < unknown["walks"], (known["walks"], unknown["walks"])


def test_labels_of_users_out_of_the_cache_leave_their_summaries_and_change_no_output() -> None:
    """A label closing a pending entry updates its user's summary only where the user's state
    is cached (``ScoringOperator._join``); otherwise the summary still counts the entry as
    pending, and the timer at its deadline walks. With a cache of four users of the stream's
    hundred nearly every label finds its user gone: outputs, label counts and the join map at
    the end must be those of a cache that holds every user, with more walks. At each
    checkpoint the maps may differ only in when a user past the pending cap had its oldest
    pending entries dropped, which a walk does, so it comes with the walks' times."""
    records = _records(seed=11, events=EVENTS)
    small = _run(records, walk_always=False, overrides={"state_cache_users": 4})
    whole = _run(records, walk_always=False)
    assert small["outputs"] == whole["outputs"]
    assert small["labels"] == whole["labels"]
    assert small["map"] == whole["map"]
    for (_, ours), (_, theirs) in zip(small["snapshots"], whole["snapshots"], strict=True):
        assert ours.keys() == theirs.keys()
        for key in ours.keys():
            if ours[key] != theirs[key]:
                entries = [pickle.loads(entry) for entry in (ours[key], theirs[key])]
                closed = [entry for entry in entries if entry[0] == CLOSED]
                assert sorted(entry[0] for entry in entries) == [PENDING, CLOSED], key
                assert closed[0][2] == "dropped", key
    assert small["labels"].get("joined", 0) > 0
    assert small["walks"] > whole["walks"], (small["walks"], whole["walks"])


def test_a_label_whose_user_left_the_cache_is_joined_without_reading_the_users_state() -> None:
    """The point of the above: the label's outcome comes out, and its user's state is neither
    read from Flink's state nor written again."""
    event_codec, label_codec = Codec("event"), Codec("label")
    generator = TransactionGenerator(
        GeneratorConfig(users=1_000, seed=5, events_per_second=5, start_ms=1_767_225_600_000)
    )
    events = [next(generator).event for _ in range(40)]
    s = Settings().with_overrides({"metrics_port": 0, "redis_port": 1, "state_cache_users": 2})
    function = operator_cost._ScoreEvents(s, {name: schema(name) for name in RECORD_TYPES}, None)
    runtime = _RuntimeContext()
    function.open(runtime)
    ctx = _Context(_Timers())
    try:
        rows = [
            (e["user_id"], event_codec.encode(e), "events", 0, i, e["event_time"])
            for i, e in enumerate(events)
        ]
        list(function.process_element(pack_records(rows), ctx))
        list(function.process_element(b"", ctx))  # a barrier: every change written
        first = events[0]
        user = first["user_id"]
        assert function._scoring._state.cached(user) is None  # it left the cache
        reads, updates = runtime.value_state.reads, runtime.value_state.updates
        label = {"event_id": first["event_id"], "user_id": user, "is_fraud": True,
                 "label_time": first["event_time"] + 2_000}  # fmt: skip
        row = (user, label_codec.encode(label), "labels", 0, 40, label["label_time"])
        out = list(function.process_element(pack_records([row]), ctx))
        list(function.process_element(b"", ctx))
    finally:
        function.close()
    assert [topic for piece in out for topic, _, _ in unpack_outputs(piece)] == [s.topic_outcomes]
    assert (runtime.value_state.reads, runtime.value_state.updates) == (reads, updates)


def test_timer_changes_wait_for_the_announced_barrier_and_checkpoints_hold_the_same_state() -> None:
    """A firing after records keeps its changes for the write-out before the next barrier,
    which the batcher announces; one with no announcement due (after the last barrier) writes
    them at once. Either way the state at each barrier is the state of writing every firing's
    changes at once, with fewer writes."""
    records = _records(seed=12, events=EVENTS)
    waiting = _run(records, walk_always=False, fire_after_end=True)
    at_once = _run(records, walk_always=False, fire_after_end=True, timers_at_once=True)
    assert waiting["outputs"] == at_once["outputs"]
    assert waiting["labels"] == at_once["labels"]
    assert len(waiting["snapshots"]) == len(at_once["snapshots"]) > 20
    for barrier, (got, want) in enumerate(zip(waiting["snapshots"], at_once["snapshots"])):
        assert got == want, barrier
    # The firings after the last barrier changed the state, with no barrier to write it then:
    # they wrote it themselves.
    assert waiting["snapshots"][-1] != waiting["snapshots"][-2]
    assert not waiting["left_waiting"]
    assert waiting["value_writes"] * 10 < at_once["value_writes"] * 9, (
        waiting["value_writes"], at_once["value_writes"])  # fmt: skip
