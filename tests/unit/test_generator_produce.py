"""What ``produce`` adds to the generator: label delays (a seeded log-normal with a stated median
and shape, chargebacks slower) and the drift passed through when the stream is re-timed.

``produce`` runs here against an in-memory stand-in for Kafka (no server): what matters is which
labels it sends and their ``label_time``, not the transport.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from streamscore import produce as produce_module
from streamscore.config import Settings
from streamscore.generator import NEW_CATEGORIES, Drift, GeneratorConfig
from streamscore.produce import (
    FRAUD_LABEL_DELAY_FACTOR,
    LabelDelay,
    NoiseConfig,
    label_delay_rng,
    produce,
)
from streamscore.serde import Codec

EXPIRY_MS = 600_000  # the job treats labels later than this after their event as expired


def _draws(delay: LabelDelay, is_fraud: bool, n: int, seed: int = 3) -> list[int]:
    rng = label_delay_rng(seed)
    return sorted(delay.sample_ms(rng, is_fraud) for _ in range(n))


def test_delays_follow_the_stated_log_normal() -> None:
    """Median as configured for confirmations, FRAUD_LABEL_DELAY_FACTOR times it for fraud;
    sigma 0.6 puts the quartiles at 0.67x and 1.50x the median."""
    delay = LabelDelay(30_000, 0.6)
    legit = _draws(delay, False, 100_000)
    fraud = _draws(delay, True, 100_000)
    assert legit[50_000] == pytest.approx(30_000, rel=0.02)
    assert fraud[50_000] == pytest.approx(30_000 * FRAUD_LABEL_DELAY_FACTOR, rel=0.02)
    assert legit[25_000] == pytest.approx(30_000 * 0.667, rel=0.02)
    assert legit[75_000] == pytest.approx(30_000 * 1.499, rel=0.02)


def test_tail_beyond_the_expiry_with_the_defaults() -> None:
    """Stated in produce.py: 3e-7 of confirmations, 0.37 % of chargebacks beyond 10 minutes.

    Measured on 1,000,000 draws each: 0 and 0.37 % (0.3688 %)."""
    delay = LabelDelay()
    assert delay.fraction_beyond(EXPIRY_MS, False) == pytest.approx(2.97e-7, rel=0.01)
    assert delay.fraction_beyond(EXPIRY_MS, True) == pytest.approx(0.003655, rel=0.01)
    n = 1_000_000
    late_fraud = sum(d > EXPIRY_MS for d in _draws(delay, True, n)) / n
    assert late_fraud == pytest.approx(delay.fraction_beyond(EXPIRY_MS, True), abs=3e-4)
    assert sum(d > EXPIRY_MS for d in _draws(delay, False, n)) <= 5


def test_delays_are_seeded_and_degenerate_cases_hold() -> None:
    delay = LabelDelay(30_000, 0.6)
    assert _draws(delay, True, 100, seed=5) == _draws(delay, True, 100, seed=5)
    assert _draws(delay, True, 100, seed=5) != _draws(delay, True, 100, seed=6)
    assert LabelDelay(0, 0.6).sample_ms(random.Random(1), True) == 0
    assert {LabelDelay(1_000, 0.0).sample_ms(random.Random(1), False) for _ in range(5)} == {1_000}


class _FakeProducer:
    def flush(self, timeout: float) -> int:
        return 0


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bytes]]:
    """Records ``produce`` sends, as (topic, value), with Kafka replaced by a list."""
    records: list[tuple[str, bytes]] = []
    monkeypatch.setattr(produce_module, "partitions_of", lambda settings, topic: [0])
    monkeypatch.setattr(produce_module, "new_producer", lambda settings: _FakeProducer())

    def send(producer: Any, topic: str, key: bytes, value: bytes, *args: Any) -> None:
        records.append((topic, value))

    monkeypatch.setattr(produce_module, "send_record", send)
    return records


def test_produce_sends_one_label_per_valid_event_delayed_from_its_event_time(
    sent: list[tuple[str, bytes]],
) -> None:
    settings = Settings()
    stats = produce(
        settings,
        count=3_000,
        duration_s=None,
        rate=0,
        generator=GeneratorConfig(users=200, seed=9, events_per_second=20),
        noise=NoiseConfig(malformed_fraction=0.01, seed=9),
        label_delay_ms=20_000,
        label_delay_sigma=0.5,
    )
    events_codec, labels_codec = Codec("event"), Codec("label")
    events: dict[str, dict[str, Any]] = {}
    for topic, value in sent:
        if topic == settings.topic_events:
            try:
                event = events_codec.decode(value)
            except Exception:  # a malformed record: it has no label
                continue
            events[event["event_id"]] = event
    labels = [labels_codec.decode(v) for t, v in sent if t == settings.topic_labels]
    assert stats.labels == len(labels) == stats.events - stats.malformed
    assert len({label["event_id"] for label in labels}) == len(labels)
    delays = {True: [], False: []}  # type: dict[bool, list[int]]
    for label in labels:
        event = events.get(label["event_id"])
        if event is not None:  # malformed kinds that still decode keep their event_id
            delays[label["is_fraud"]].append(label["label_time"] - event["event_time"])
    legit = sorted(delays[False])
    assert legit[0] > 0
    assert legit[len(legit) // 2] == pytest.approx(20_000, rel=0.1)
    assert delays[True], "the stream should hold some fraud"
    assert sorted(delays[True])[len(delays[True]) // 2] > 2 * 20_000


def test_a_backlog_sends_each_label_in_label_time_order_once_the_stream_has_passed_it(
    sent: list[tuple[str, bytes]],
) -> None:
    """A labels topic written live is in label-time order, each label after the events up to its
    label time: a backlog is produced the same way, whatever the label delays."""
    settings = Settings()
    stats = produce(
        settings,
        count=3_000,
        duration_s=None,
        rate=0,
        generator=GeneratorConfig(users=200, seed=9, events_per_second=20),
        label_delay_ms=20_000,
        label_delay_sigma=0.5,
    )
    events_codec, labels_codec = Codec("event"), Codec("label")
    stream_time = None
    label_times: list[int] = []
    sent_before_end: list[bool] = []
    for topic, value in sent:
        if topic == settings.topic_events:
            stream_time = max(stream_time or 0, events_codec.decode(value)["event_time"])
        else:
            label_time = labels_codec.decode(value)["label_time"]
            label_times.append(label_time)
            sent_before_end.append(stream_time is not None and label_time <= stream_time)
    assert len(label_times) == 3_000
    assert label_times == sorted(label_times)
    # Every label whose time the stream reached was sent right then, the rest at the end.
    last_event_time = stream_time
    for label_time, in_stream in zip(label_times, sent_before_end, strict=True):
        assert in_stream == (label_time <= last_event_time)
    assert sum(sent_before_end) > 2_000
    # The rest, counted: a job reads them after its last event (bench: outside the drain's span).
    assert stats.labels_after_events == len(label_times) - sum(sent_before_end) > 0


def test_produce_keeps_the_drift_when_it_retimes_the_stream(sent: list[tuple[str, bytes]]) -> None:
    """``produce`` moves the stream's start to the clock; the drift stays at its offset."""
    settings = Settings()
    produce(
        settings,
        count=4_000,
        duration_s=None,
        rate=0,
        generator=GeneratorConfig(
            users=200, seed=9, events_per_second=20, drifts=(Drift("data", 100.0),)
        ),
        labels=False,
    )
    codec = Codec("event")
    events = [codec.decode(value) for topic, value in sent if topic == settings.topic_events]
    assert len(events) == 4_000
    drift_ms = events[0]["event_time"] + 100_000
    unseen = [
        e["event_time"] >= drift_ms for e in events if e["merchant_category"] in NEW_CATEGORIES
    ]
    assert unseen and all(unseen)
