from streamscore.generator import GeneratorConfig, TransactionGenerator


def test_same_seed_same_stream() -> None:
    a = [t.event for t in TransactionGenerator(GeneratorConfig(seed=4)).take(300)]
    b = [t.event for t in TransactionGenerator(GeneratorConfig(seed=4)).take(300)]
    assert a == b


def test_fraud_is_rare_bursty_and_event_time_ordered() -> None:
    txs = TransactionGenerator(GeneratorConfig(users=500, seed=8)).take(50_000)
    fraud = [t for t in txs if t.is_fraud]
    assert 0.002 < len(fraud) / len(txs) < 0.05
    assert sum(t.event["channel"] != "POS" for t in fraud) / len(fraud) > 0.9
    times = [t.event["event_time"] for t in txs]
    assert times == sorted(times)
    assert len({t.event["event_id"] for t in txs}) == len(txs)


def test_event_time_rate_follows_the_configured_rate() -> None:
    """Above 1000 events/s several events share a millisecond; the span must still match."""
    for rate in (200.0, 10_000.0, 50_000.0):
        txs = TransactionGenerator(GeneratorConfig(seed=2, events_per_second=rate)).take(20_000)
        span_s = (txs[-1].event["event_time"] - txs[0].event["event_time"]) / 1000
        assert abs(span_s - 20_000 / rate) / (20_000 / rate) < 0.1, (rate, span_s)
