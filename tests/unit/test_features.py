"""The feature engine against a brute-force oracle that recomputes every feature from the raw
list of earlier events, following the rules in the engine's docstring literally."""

from __future__ import annotations

import pickle
import random

import pytest

from streamscore.features.definitions import (
    CHANNELS,
    FEATURE_SET,
    MERCHANT_CATEGORIES,
    DistinctCount,
    FeatureSet,
    NumericAggregate,
    Window,
)
from streamscore.features.engine import EXPIRY_STEP_MS, FeatureEngine

T0 = 1_767_225_600_000  # a midnight, so bucket boundaries are round numbers


def oracle(fs: FeatureSet, prior: list[dict], event: dict) -> dict[str, float]:
    """Features of ``event`` given the user's events processed before it, by brute force."""
    t = event["event_time"]
    newest = max((p["event_time"] for p in prior), default=-1)
    out: dict[str, float] = {"amount": event["amount"]}
    out["merchant_category"] = (
        float(MERCHANT_CATEGORIES.index(event["merchant_category"]))
        if event["merchant_category"] in MERCHANT_CATEGORIES
        else -1.0
    )
    out["channel"] = float(CHANNELS.index(event["channel"]))
    out["hour_of_day"] = float((t // 3_600_000) % 24)
    out["secs_since_previous"] = -1.0 if newest < 0 else max(0, t - newest) / 1000.0

    def in_window(p: dict, w: Window) -> bool:
        k, k_event = p["event_time"] // w.bucket_ms, t // w.bucket_ms
        bucket_end = (k + 1) * w.bucket_ms
        expired = newest >= 0 and bucket_end + w.length_ms + fs.retention_slack_ms <= newest
        return k_event - w.buckets < k <= k_event and not expired

    for spec in fs.numeric:
        for name in spec.windows:
            values = [p[spec.field] for p in prior if in_window(p, fs.window_by_name[name])]
            stats = {
                "count": float(len(values)),
                "sum": float(sum(values)),
                "mean": sum(values) / len(values) if values else 0.0,
                "max": max(values) if values else 0.0,
            }
            for agg in spec.aggregations:
                out[f"{spec.field}_{agg}_{name}"] = stats[agg]
    for spec in fs.distinct:
        for name in spec.windows:
            seen = {p[spec.field] for p in prior if in_window(p, fs.window_by_name[name])}
            out[f"{spec.field}_distinct_{name}"] = float(len(seen))
            if spec.flag_new_value:
                out[f"{spec.field}_is_new_{name}"] = 0.0 if event[spec.field] in seen else 1.0
    for ratio in fs.ratios:
        mean = out[f"{ratio.field}_mean_{ratio.window}"]
        out[f"{ratio.field}_to_mean_{ratio.window}"] = (
            event[ratio.field] / mean if mean > 0 else -1.0
        )
    return out


def make_event(rng: random.Random, user: str, ts: int) -> dict:
    return {
        "event_id": f"e{rng.getrandbits(48):x}",
        "user_id": user,
        "event_time": ts,
        "amount": round(rng.uniform(1, 500), 2),
        "currency": "EUR",
        "merchant_id": f"m{rng.randrange(12)}",
        "merchant_category": rng.choice((*MERCHANT_CATEGORIES, "unknown_category")),
        "country": rng.choice(("DE", "FR", "GB", "US")),
        "channel": rng.choice(CHANNELS),
        "device_id": None,
    }


def event_stream(seed: int, n: int) -> list[dict]:
    """Bursts seconds apart, quiet hours, exact bucket and window edges, out-of-order and very
    late arrivals: the cases where an off-by-one would show."""
    rng = random.Random(seed)
    users = [f"u{i}" for i in range(4)]
    clock = T0
    events = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.35:
            clock += rng.randint(0, 15_000)  # burst
        elif roll < 0.55:
            clock += rng.choice((10_000, 60_000, 300_000, 3_600_000))  # land on edges
            clock -= clock % 10_000
        elif roll < 0.65:
            clock += rng.randint(3_600_000, 30 * 3_600_000)  # quiet, past the 24 h window
        else:
            clock += rng.randint(0, 120_000)
        ts = clock
        late = rng.random()
        if late < 0.15:
            ts -= rng.randint(1, 90_000)  # out of order, within the slack
        elif late < 0.2:
            ts -= rng.randint(120_000, 7_200_000)  # beyond the slack: expired buckets
        events.append(make_event(rng, rng.choice(users), ts))
    return events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_matches_brute_force_oracle(seed: int) -> None:
    engine = FeatureEngine(FEATURE_SET)
    states: dict[str, list] = {}
    history: dict[str, list[dict]] = {}
    for event in event_stream(seed, 1500):
        user = event["user_id"]
        state = states.setdefault(user, engine.new_state())
        got = dict(zip(engine.names, engine.update(state, event)))
        want = oracle(FEATURE_SET, history.setdefault(user, []), event)
        assert set(got) == set(want)
        for name, value in want.items():
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, event)
        history[user].append(event)


def distinct_only(flag_new_value: bool = True) -> FeatureSet:
    return FeatureSet(
        version="t",
        windows=(Window("1h", 3_600_000, 300_000),),
        numeric=(),
        distinct=(DistinctCount("merchant_id", ("1h",), flag_new_value=flag_new_value),),
        categorical=(),
        ratios=(),
        current_numeric=(),
        time_since_previous=False,
        hour_of_day=False,
    )


def test_distinct_count_sees_an_earlier_bucket_change_after_it_was_remembered() -> None:
    """The union of the buckets before the event's own is kept for the user's next event
    (``DistinctMemo``); an out-of-order event in one of those buckets must not leave it stale."""
    engine = FeatureEngine(distinct_only())
    state = engine.new_state()

    def event(t: int, merchant: str) -> list[float]:
        return engine.update(state, {"event_time": t, "merchant_id": merchant})

    assert event(T0, "a") == [0.0, 1.0]
    assert event(T0 + 300_000, "b") == [1.0, 1.0]  # the next 5 min bucket: "a" before it
    assert event(T0 + 300_001, "a") == [2.0, 0.0]  # remembered: {"a"} before, "b" in its own
    assert event(T0 + 1_000, "c") == [1.0, 1.0]  # out of order, into the first bucket
    assert event(T0 + 300_002, "d") == [3.0, 1.0]  # sees "c": the earlier bucket changed
    assert event(T0 + 300_003, "c") == [4.0, 0.0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_state_read_back_from_its_pickle_gives_the_same_features(seed: int) -> None:
    """What the engine remembers between events (``UserState.memos``) is not pickled: a state
    restored after a failure, mid-stream, must give the same vectors as one never pickled."""
    engine = FeatureEngine(FEATURE_SET)
    rng = random.Random(seed)
    kept: dict[str, object] = {}
    restored: dict[str, object] = {}
    for event in event_stream(seed, 1500):
        user = event["user_id"]
        kept_state = kept.setdefault(user, engine.new_state())
        restored_state = restored.setdefault(user, engine.new_state())
        if rng.random() < 0.2:
            restored_state = restored[user] = pickle.loads(pickle.dumps(restored_state))
        assert engine.update(restored_state, event) == engine.update(kept_state, event)  # type: ignore[arg-type]
        assert restored_state == kept_state


def test_window_edges_are_exact() -> None:
    """An event exactly one bucket-aligned window after another no longer sees it."""
    fs = FeatureSet(
        version="t",
        windows=(Window("1m", 60_000, 10_000),),
        numeric=(NumericAggregate("amount", ("count",), ("1m",)),),
        distinct=(),
        categorical=(),
        ratios=(),
        time_since_previous=False,
        hour_of_day=False,
    )
    engine = FeatureEngine(fs)
    state = engine.new_state()
    base = {"amount": 1.0}
    assert engine.update(state, {**base, "event_time": T0}) == [1.0, 0.0]
    # Same bucket and the five after it are inside the 1 m window ending with the event's bucket.
    assert engine.update(state, {**base, "event_time": T0 + 59_999}) == [1.0, 1.0]
    # The seventh bucket is outside: the first two events no longer count.
    assert engine.update(state, {**base, "event_time": T0 + 60_000}) == [1.0, 1.0]


def test_out_of_order_event_does_not_see_later_buckets() -> None:
    engine = FeatureEngine()
    state = engine.new_state()
    rng = random.Random(0)
    engine.update(state, make_event(rng, "u", T0 + 50_000))
    features = dict(zip(engine.names, engine.update(state, make_event(rng, "u", T0))))
    assert features["amount_count_1m"] == 0.0  # the later event is in a later 10 s bucket
    assert features["amount_count_1h"] == 1.0  # but in the same 5 min bucket
    assert features["secs_since_previous"] == 0.0


def test_state_stays_bounded() -> None:
    engine = FeatureEngine()
    state = engine.new_state()
    cells = len(state.cells)  # the numeric windows' rings, sized once (test_rings.py)
    rng = random.Random(5)
    for i in range(20_000):
        engine.update(state, make_event(rng, "u", T0 + i * 5_000))
    assert len(state.cells) == cells
    assert len(state.slots) == len(engine.stateful) == 2  # the 2 distinct windows' bucket maps
    for feature, buckets in zip(engine.stateful, state.slots):
        window = feature.window  # type: ignore[attr-defined]
        limit = (
            window.length_ms + FEATURE_SET.retention_slack_ms + EXPIRY_STEP_MS
        ) // window.bucket_ms + 2
        assert len(buckets) <= limit


def test_feature_names_are_unique_and_ordered() -> None:
    names = FEATURE_SET.feature_names
    assert len(names) == len(set(names))
    assert names[0] == "amount" and "amount_mean_24h" in names


def test_feature_set_rejects_unknown_window() -> None:
    with pytest.raises(ValueError, match="unknown window"):
        FeatureSet(
            version="x",
            windows=(Window("1m", 60_000, 10_000),),
            numeric=(NumericAggregate("amount", ("count",), ("2h",)),),
            distinct=(),
            categorical=(),
            ratios=(),
        )
