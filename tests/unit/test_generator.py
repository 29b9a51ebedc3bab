"""The synthetic stream: seeded, in event-time order, with rare, bursty, heavy-tailed fraud."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

import pytest

from streamscore.generator import (
    FRAUD_MIX,
    Drift,
    GeneratorConfig,
    Transaction,
    TransactionGenerator,
    parse_drift,
)


def test_same_seed_same_stream() -> None:
    a = [t.event for t in TransactionGenerator(GeneratorConfig(seed=4)).take(300)]
    b = [t.event for t in TransactionGenerator(GeneratorConfig(seed=4)).take(300)]
    c = [t.event for t in TransactionGenerator(GeneratorConfig(seed=5)).take(300)]
    assert a == b
    assert a != c


@pytest.fixture(scope="module")
def stream() -> list[Transaction]:
    """500 s of event time: long enough for bursts (up to minutes) to land in the stream."""
    return TransactionGenerator(GeneratorConfig(users=500, seed=8, events_per_second=100)).take(
        50_000
    )


def test_fraud_is_rare_bursty_and_event_time_ordered(stream: list[Transaction]) -> None:
    fraud = [t for t in stream if t.is_fraud]
    assert 0.005 < len(fraud) / len(stream) < 0.02  # measured: 0.88 %
    assert set(Counter(t.fraud_kind for t in fraud)) == set(FRAUD_MIX)
    assert all(t.fraud_kind == "" for t in stream if not t.is_fraud)
    # Bursts: most fraud events have another fraud event of the same user within 5 minutes.
    times: dict[str, list[int]] = defaultdict(list)
    for t in fraud:
        times[str(t.event["user_id"])].append(int(t.event["event_time"]))
    in_burst = sum(
        any(0 < abs(a - b) <= 300_000 for b in user_times)
        for user_times in times.values()
        for a in user_times
    )
    assert in_burst / len(fraud) > 0.7
    event_times = [t.event["event_time"] for t in stream]
    assert event_times == sorted(event_times)
    assert len({t.event["event_id"] for t in stream}) == len(stream)
    assert stream[0].event["event_id"] == "e8-0000000001"


def test_fraud_is_not_always_foreign_or_online(stream: list[Transaction]) -> None:
    """Some fraud looks normal (account takeover at home, by POS too), so the model has work.

    Measured on this stream: 62 % of fraud events in the home country, 17 % at POS."""
    countries: dict[object, Counter[object]] = defaultdict(Counter)
    for t in stream:
        if not t.is_fraud:
            countries[t.event["user_id"]][t.event["country"]] += 1
    home = {user: seen.most_common(1)[0][0] for user, seen in countries.items()}
    fraud = [t for t in stream if t.is_fraud and t.event["user_id"] in home]
    at_home = sum(t.event["country"] == home[t.event["user_id"]] for t in fraud)
    pos = sum(t.event["channel"] == "POS" for t in fraud)
    assert 0.3 < at_home / len(fraud) < 0.9
    assert 0.05 < pos / len(fraud) < 0.5


def test_fraud_amounts_are_heavy_tailed(stream: list[Transaction]) -> None:
    """Relative to the user's median legitimate amount: most fraud a few times it, some huge.

    Measured (this stream, card testing left out): median 2.4x, 90th percentile 7.6x, max 245x.
    """
    legit: dict[object, list[float]] = defaultdict(list)
    for t in stream:
        if not t.is_fraud:
            legit[t.event["user_id"]].append(float(t.event["amount"]))  # type: ignore[arg-type]
    typical = {user: statistics.median(amounts) for user, amounts in legit.items()}
    ratios = sorted(
        float(t.event["amount"]) / typical[t.event["user_id"]]  # type: ignore[arg-type]
        for t in stream
        if t.is_fraud and t.fraud_kind != "card_testing" and t.event["user_id"] in typical
    )
    median = ratios[len(ratios) // 2]
    assert 1.5 < median < 4.0
    assert ratios[int(len(ratios) * 0.9)] > 6.0
    assert ratios[-1] > 50.0


def test_event_time_rate_follows_the_configured_rate() -> None:
    """Above 1000 events/s several events share a millisecond; the span must still match."""
    for rate in (200.0, 10_000.0, 50_000.0):
        txs = TransactionGenerator(GeneratorConfig(seed=2, events_per_second=rate)).take(20_000)
        span_s = (txs[-1].event["event_time"] - txs[0].event["event_time"]) / 1000
        assert abs(span_s - 20_000 / rate) / (20_000 / rate) < 0.1, (rate, span_s)


def test_parse_drift() -> None:
    assert parse_drift("concept@300") == Drift("concept", 300.0)
    assert parse_drift("DATA@12.5") == Drift("data", 12.5)
    for bad in ("concept", "weather@10", "data@soon", "data@-5"):
        with pytest.raises(ValueError):
            parse_drift(bad)
