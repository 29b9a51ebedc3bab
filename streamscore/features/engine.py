"""Computes a user's feature vector as of just before an event, then folds the event in.

One engine serves the Flink job (per event, state kept in RocksDB between calls) and the
training-set builder (replaying the event log), so a feature has exactly one implementation.

Semantics, per user, in processing order:
- The features of event e use the events processed before e (never e itself) whose bucket lies in
  e's window: the ``length/bucket`` buckets ending with e's own bucket. Events with a later event
  time in a later bucket are excluded, so out-of-order input gets point-in-time features.
- A bucket expires once the user's newest event time (before e) is at least
  ``bucket end + window length + retention_slack_ms``; expired buckets never count. Events that
  arrive later than the slack may therefore see incomplete windows (the late rule keeps most of
  them out).
- ``secs_since_previous`` is the event time minus the newest event time seen before, clamped at 0
  (out-of-order events give 0), or -1 when the user has no history. Ratios are -1 with no history.

The state is a small list of plain containers, so it pickles fast into one RocksDB value.
"""

from __future__ import annotations

from typing import Any

from streamscore.features.definitions import FEATURE_SET, FeatureSet

# [newest event time or -1, numeric bucket maps, distinct bucket maps]
# numeric map: bucket index -> [count, sum, max]; distinct map: bucket index -> set of values.
UserState = list[Any]

NO_HISTORY = -1.0
# Expired buckets are dropped when the newest event time enters a new minute. Reads skip expired
# buckets anyway, so this only bounds the state; it does not change any feature.
EXPIRY_STEP_MS = 60_000


class FeatureEngine:
    def __init__(self, feature_set: FeatureSet = FEATURE_SET) -> None:
        self.feature_set = feature_set
        self.names = feature_set.feature_names
        self._slack = feature_set.retention_slack_ms
        wb = feature_set.window_by_name
        # (field, bucket_ms, n_buckets, length_ms, aggregations) per numeric (field, window)
        self._numeric = [
            (spec.field, wb[w].bucket_ms, wb[w].buckets, wb[w].length_ms, spec.aggregations, w)
            for spec in feature_set.numeric
            for w in spec.windows
        ]
        self._distinct = [
            (spec.field, wb[w].bucket_ms, wb[w].buckets, wb[w].length_ms, spec.flag_new_value)
            for spec in feature_set.distinct
            for w in spec.windows
        ]
        self._expiry_step = EXPIRY_STEP_MS
        self._categorical = [
            (c.field, {v: float(i) for i, v in enumerate(c.vocabulary)})
            for c in feature_set.categorical
        ]
        # Ratio → index of its windowed mean among the numeric aggregates written so far.
        self._ratios: list[tuple[str, int]] = []
        for ratio in feature_set.ratios:
            offset = 0
            for field_name, _b, _n, _length, aggs, window in self._numeric:
                if field_name == ratio.field and window == ratio.window:
                    self._ratios.append((ratio.field, offset + aggs.index("mean")))
                    break
                offset += len(aggs)

    def new_state(self) -> UserState:
        return [-1, [{} for _ in self._numeric], [{} for _ in self._distinct]]

    def update(self, state: UserState, event: dict[str, Any]) -> list[float]:
        """Return the feature vector of ``event`` (as of just before it) and fold it into state."""
        fs = self.feature_set
        t: int = event["event_time"]
        newest: int = state[0]
        vector: list[float] = [float(event[f]) for f in fs.current_numeric]
        for field_name, codes in self._categorical:
            vector.append(codes.get(event[field_name], -1.0))
        if fs.hour_of_day:
            vector.append(float((t // 3_600_000) % 24))
        if fs.time_since_previous:
            vector.append(NO_HISTORY if newest < 0 else max(0, t - newest) / 1000.0)

        aggregates: list[float] = []
        slack = self._slack
        for (field_name, bucket_ms, n, length, aggs, _w), buckets in zip(self._numeric, state[1]):
            k_event = t // bucket_ms
            k_first = max(k_event - n, (newest - length - slack) // bucket_ms - 1)
            count = 0
            total = 0.0
            top = 0.0
            for k, (c, s, m) in buckets.items():
                if k_first < k <= k_event:
                    count += c
                    total += s
                    if m > top:
                        top = m
            for agg in aggs:
                if agg == "count":
                    aggregates.append(float(count))
                elif agg == "sum":
                    aggregates.append(total)
                elif agg == "mean":
                    aggregates.append(total / count if count else 0.0)
                else:
                    aggregates.append(top)
            value = float(event[field_name])
            cell = buckets.get(k_event)
            if cell is None:
                buckets[k_event] = [1, value, value]
            else:
                cell[0] += 1
                cell[1] += value
                if value > cell[2]:
                    cell[2] = value
        vector += aggregates

        for (field_name, bucket_ms, n, length, flag_new), buckets in zip(self._distinct, state[2]):
            k_event = t // bucket_ms
            k_first = max(k_event - n, (newest - length - slack) // bucket_ms - 1)
            seen: set[str] = set()
            for k, values in buckets.items():
                if k_first < k <= k_event:
                    seen |= values
            vector.append(float(len(seen)))
            value = event[field_name]
            if flag_new:
                vector.append(0.0 if value in seen else 1.0)
            values = buckets.get(k_event)
            if values is None:
                buckets[k_event] = {value}
            else:
                values.add(value)

        for field_name, mean_index in self._ratios:
            mean = aggregates[mean_index]
            vector.append(float(event[field_name]) / mean if mean > 0 else NO_HISTORY)

        if t > newest:
            state[0] = t
            if newest < 0 or t // self._expiry_step != newest // self._expiry_step:
                self._expire(state, t)
        return vector

    def _expire(self, state: UserState, newest: int) -> None:
        """Drop expired buckets to bound the state. Reads filter expired buckets too, so the
        features never depend on when this ran."""
        slack = self._slack
        for (_f, bucket_ms, _n, length, *_rest), buckets in zip(
            (*self._numeric, *self._distinct), (*state[1], *state[2])
        ):
            first_alive = (newest - length - slack) // bucket_ms
            for k in [k for k in buckets if k < first_alive]:
                del buckets[k]
