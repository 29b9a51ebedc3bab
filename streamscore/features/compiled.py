"""A feature set compiled into feature objects, each owning its names, its state and its values.

``compile_features`` turns the declarations of ``definitions.py`` into a tuple of objects in
vector order. Each object says which names it produces and appends exactly that many values,
so the vector's order can only be the names' order. A windowed feature also owns part of the
user's state and folds each event into it after reading: a numeric window its ring of cells in
the user's array of doubles (``rings.py``, at the ``base`` that ``compile_features`` gives it),
a distinct count one slot (its bucket map of value sets).

Semantics of a windowed feature, per user, in processing order: the value for event e uses the
events processed before e (never e itself) whose bucket lies in e's window, i.e. the
``length/bucket`` buckets ending with e's own bucket, so out-of-order input gets point-in-time
features. A bucket expires once the user's newest event time (before e) is at least
``bucket end + window length + retention slack``; expired buckets never count.
"""

from __future__ import annotations

from array import array
from typing import Any, Final

from streamscore.features.definitions import FeatureSet, Window
from streamscore.features.rings import AGGREGATIONS, merge_add_and_emit, ring_size, window_width

NO_HISTORY: Final = -1.0


def _event_time(event: dict[str, Any]) -> int:
    """The event's time, typed: compiled, the arithmetic on it is then on machine integers
    (checked once here) instead of Python's generic operators on an ``Any``."""
    event_time: int = event["event_time"]
    return event_time


def _number(event: dict[str, Any], field: str) -> float:
    """``float(event[field])``, without a Python call when the value is a float already (a
    decoded Avro ``double`` is)."""
    value = event[field]
    return value if isinstance(value, float) else float(value)


class Feature:
    """One or more adjacent columns of the feature vector.

    A base class rather than a protocol: compiled, ``FeatureEngine.update``'s call of each
    feature's ``emit`` (twenty-odd per event) is then a direct call through the class's method
    table, not a Python method call with its arguments boxed."""

    names: tuple[str, ...]
    # Whether the feature keeps per-user state in a slot of its own (a bucket map).
    stateful: bool = False
    # Whether it keeps per-user state in the user's cells (a numeric window's ring).
    uses_cells: bool = False

    def new_slot(self) -> Any:
        """The feature's empty per-user state (``None`` when it keeps none)."""
        return None

    def emit(self, out: list[float], slot: Any, event: dict[str, Any], newest: int) -> None:
        """Append the feature's values for ``event`` as of just before it, then fold it in.

        ``slot`` is the feature's slot (``stateful``), the user's cells (``uses_cells``) or
        None. ``newest`` is the user's newest event time before ``event`` (-1: no history)."""
        raise NotImplementedError

    def emit_remembering(
        self,
        out: list[float],
        slot: Any,
        memos: list[Any],
        index: int,
        event: dict[str, Any],
        newest: int,
    ) -> None:
        """``emit``, for a stateful feature that may keep what it worked out for one event in
        ``memos[index]`` to reuse for the next (never pickled: ``engine.UserState.memos``)."""
        self.emit(out, slot, event, newest)

    def expire(self, slot: Any, newest: int) -> None:
        """Drop state that can no longer count once the user's newest event is ``newest``."""


class _Stateless(Feature):
    pass


class CurrentValue(_Stateless):
    """A numeric field of the event itself."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.names: tuple[str, ...] = (field,)

    def emit(self, out: list[float], slot: None, event: dict[str, Any], newest: int) -> None:
        out.append(_number(event, self.field))


class CategoryCode(_Stateless):
    """A text field of the event as its index in a vocabulary (unknown values → -1)."""

    def __init__(self, field: str, vocabulary: tuple[str, ...]) -> None:
        self.field = field
        self.names: tuple[str, ...] = (field,)
        self._codes = {value: float(i) for i, value in enumerate(vocabulary)}

    def emit(self, out: list[float], slot: None, event: dict[str, Any], newest: int) -> None:
        out.append(self._codes.get(event[self.field], -1.0))


class HourOfDay(_Stateless):
    names: tuple[str, ...] = ("hour_of_day",)

    def emit(self, out: list[float], slot: None, event: dict[str, Any], newest: int) -> None:
        out.append(float((_event_time(event) // 3_600_000) % 24))


class SecondsSincePrevious(_Stateless):
    """Event time minus the newest earlier event time, clamped at 0 (out-of-order events give
    0), or -1 with no history."""

    names: tuple[str, ...] = ("secs_since_previous",)

    def emit(self, out: list[float], slot: None, event: dict[str, Any], newest: int) -> None:
        out.append(NO_HISTORY if newest < 0 else max(0, _event_time(event) - newest) / 1000.0)


class _Windowed(Feature):
    """Bucket arithmetic shared by the windowed features. The live buckets of the window that
    ends with the event's bucket ``k_event`` are ``k_first < k <= k_event``, where ``k_first``
    also skips buckets expired relative to the user's newest event."""

    def __init__(self, window: Window, retention_slack_ms: int) -> None:
        self.window = window
        self._bucket_ms = window.bucket_ms
        self._n = window.buckets
        self._reach_ms = window.length_ms + retention_slack_ms


class WindowedNumeric(_Windowed):
    """Aggregations (see ``rings.AGGREGATIONS``) of a numeric field over one window, its
    buckets a ring of ``ring`` cells at ``base`` in the user's cells."""

    uses_cells = True

    def __init__(
        self, field: str, aggregations: tuple[str, ...], window: Window, slack_ms: int, base: int
    ) -> None:
        super().__init__(window, slack_ms)
        self.field = field
        self.names = tuple(f"{field}_{agg}_{window.name}" for agg in aggregations)
        # Their codes, one byte each, for merge_add_and_emit.
        self._aggregations = bytes(AGGREGATIONS[agg] for agg in aggregations)
        self.base = base
        self.ring = ring_size(self._reach_ms, self._bucket_ms)

    def emit(
        self, out: list[float], slot: array[float], event: dict[str, Any], newest: int
    ) -> None:
        # The live range (``_Windowed``) inline: this runs for every window of every event.
        k_event = _event_time(event) // self._bucket_ms
        k_first = max(k_event - self._n, (newest - self._reach_ms) // self._bucket_ms - 1)
        merge_add_and_emit(
            out, slot, self.base, k_first, k_event, _number(event, self.field), self._aggregations
        )


class WindowedDistinct(_Windowed):
    """Distinct values of a text field over one window, and optionally whether the event's own
    value is new in it. Its slot: bucket index → the set of values seen in that bucket."""

    stateful = True

    def __init__(self, field: str, window: Window, slack_ms: int, flag_new_value: bool) -> None:
        super().__init__(window, slack_ms)
        self.field = field
        names = [f"{field}_distinct_{window.name}"]
        if flag_new_value:
            names.append(f"{field}_is_new_{window.name}")
        self.names = tuple(names)
        self._flag_new = flag_new_value

    def new_slot(self) -> dict[int, set[str]]:
        return {}

    def expire(self, slot: dict[int, set[str]], newest: int) -> None:
        first_alive = (newest - self._reach_ms) // self._bucket_ms
        for k in [k for k in slot if k < first_alive]:
            del slot[k]

    def emit(
        self, out: list[float], slot: dict[int, set[str]], event: dict[str, Any], newest: int
    ) -> None:
        self.emit_remembering(out, slot, [None], 0, event, newest)

    def emit_remembering(
        self,
        out: list[float],
        slot: dict[int, set[str]],
        memos: list[Any],
        index: int,
        event: dict[str, Any],
        newest: int,
    ) -> None:
        """The distinct count over the buckets ``k_first < k <= k_event``, as the union of the
        buckets before the event's own (``DistinctMemo.older``, kept for the next event of the
        same window) and the event's own bucket. A user's next event usually falls in the same
        bucket as the last: then the count is the union's size plus the own bucket's values
        not in it, kept counted, and no union is built (building one per event was 4.4 % of the
        scoring thread in a drain, bench/HISTORY.md, forty-second session)."""
        k_event = _event_time(event) // self._bucket_ms
        k_first = max(k_event - self._n, (newest - self._reach_ms) // self._bucket_ms - 1)
        value = event[self.field]
        bucket = slot.get(k_event)
        memo: DistinctMemo | None = memos[index]
        if memo is None or memo.k_event != k_event or memo.k_first != k_first:
            if memo is not None and memo.k_first < k_event < memo.k_event:
                memos[index] = None  # an earlier bucket of its window changes below
            memo = _remembered(slot, k_first, k_event, bucket)
            if memos[index] is None or k_event >= memos[index].k_event:
                memos[index] = memo
        known = value in memo.older or (bucket is not None and value in bucket)
        out.append(float(len(memo.older) + memo.extra))
        if self._flag_new:
            out.append(0.0 if known else 1.0)
        if bucket is None:
            slot[k_event] = {value}
        elif value not in bucket:
            bucket.add(value)
        else:
            return
        if not known:
            memo.extra += 1


class DistinctMemo:
    """A distinct count's window for one bucket of events: the union of the window's buckets
    before the event's own (``older``), and how many values of the event's own bucket are not
    in it (``extra``). Valid while none of those earlier buckets changes: an event in one of
    them (out of order) drops it. An expiry cannot change them: it drops buckets older than the
    newest event's reach, which a later event's ``k_first`` already leaves out."""

    __slots__ = ("k_first", "k_event", "older", "extra")

    def __init__(self, k_first: int, k_event: int, older: set[str], extra: int) -> None:
        self.k_first = k_first
        self.k_event = k_event
        self.older = older
        self.extra = extra


def _remembered(
    slot: dict[int, set[str]], k_first: int, k_event: int, bucket: set[str] | None
) -> DistinctMemo:
    older: set[str] = set()
    for k, values in slot.items():
        if k_first < k < k_event:
            older |= values
    extra = 0
    if bucket is not None:
        for value in bucket:
            if value not in older:
                extra += 1
    return DistinctMemo(k_first, k_event, older, extra)


class RatioToMean(_Stateless):
    """The event's value divided by an earlier column, its windowed mean (-1 when that is 0)."""

    def __init__(self, field: str, window: str, mean_name: str, mean_index: int) -> None:
        self.field = field
        self.names: tuple[str, ...] = (f"{field}_to_mean_{window}",)
        self.mean_name = mean_name
        self._mean_index = mean_index

    def emit(self, out: list[float], slot: None, event: dict[str, Any], newest: int) -> None:
        mean = out[self._mean_index]
        out.append(_number(event, self.field) / mean if mean > 0 else NO_HISTORY)


def compile_features(fs: FeatureSet) -> tuple[Feature, ...]:
    """The feature objects of ``fs`` in vector order (the model's column order)."""
    features: list[Feature] = [CurrentValue(name) for name in fs.current_numeric]
    features += [CategoryCode(c.field, c.vocabulary) for c in fs.categorical]
    if fs.hour_of_day:
        features.append(HourOfDay())
    if fs.time_since_previous:
        features.append(SecondsSincePrevious())
    windows = fs.window_by_name
    slack = fs.retention_slack_ms
    base = 0  # where the next numeric window's ring starts in the user's cells
    for spec in fs.numeric:
        for name in spec.windows:
            numeric = WindowedNumeric(spec.field, spec.aggregations, windows[name], slack, base)
            features.append(numeric)
            base += window_width(numeric.ring)
    for distinct in fs.distinct:
        for name in distinct.windows:
            features.append(
                WindowedDistinct(distinct.field, windows[name], slack, distinct.flag_new_value)
            )
    for ratio in fs.ratios:
        names = [n for f in features for n in f.names]
        mean_name = f"{ratio.field}_mean_{ratio.window}"
        if mean_name not in names:
            raise ValueError(f"ratio {ratio.field}/{ratio.window} needs the feature {mean_name}")
        features.append(RatioToMean(ratio.field, ratio.window, mean_name, names.index(mean_name)))
    return tuple(features)
