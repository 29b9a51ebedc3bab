"""A seeded generator of card transactions with a learnable fraud signal.

Legitimate users buy in their home country, from a handful of merchants and categories, at
amounts around a personal typical value. Fraud comes in bursts: a compromised card is used a few
times within minutes, online, from a foreign country, in risky categories, at several times the
usual amount. Some legitimate events look a little like fraud (travel abroad, a big purchase) so
the model has work to do. The same seed always gives the same stream.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from streamscore.features.definitions import MERCHANT_CATEGORIES

COUNTRIES = ("DE", "FR", "GB", "NL", "ES", "IT", "US", "PL", "SE", "BR", "NG", "RU", "CN", "VN")
CURRENCY_OF = {
    "GB": "GBP",
    "US": "USD",
    "PL": "PLN",
    "SE": "SEK",
    "BR": "BRL",
    "NG": "NGN",
    "RU": "RUB",
    "CN": "CNY",
    "VN": "VND",
}
RISKY_CATEGORIES = ("electronics", "gift_cards", "crypto", "travel")
HOME_COUNTRIES = COUNTRIES[:8]


@dataclass(frozen=True)
class GeneratorConfig:
    users: int = 2000
    events_per_second: float = 500.0  # in event time: sets how busy each user is
    fraud_burst_probability: float = 0.004  # per event: chance that a card gets compromised
    seed: int = 42
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass
class _User:
    user_id: str
    home: str
    categories: tuple[str, ...]
    merchants: tuple[str, ...]
    typical_amount: float
    device: str


@dataclass(frozen=True)
class Transaction:
    event: dict[str, object]
    is_fraud: bool


class TransactionGenerator:
    def __init__(self, config: GeneratorConfig = GeneratorConfig()) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._users = [self._new_user(i) for i in range(config.users)]
        # A fractional clock in ms: event times are whole ms, but several events may share one,
        # so the event-time rate is not capped at 1000/s.
        self._now = float(config.start_ms)
        self._count = 0
        self._fraud_queue: list[tuple[int, int, int]] = []  # (event time, seq, user index)
        self._seq = 0

    def _new_user(self, index: int) -> _User:
        rng = self._rng
        return _User(
            user_id=f"u{index:06d}",
            home=rng.choice(HOME_COUNTRIES),
            categories=tuple(rng.sample(MERCHANT_CATEGORIES[:8], 3)),
            merchants=tuple(f"m{rng.randrange(5000):05d}" for _ in range(6)),
            typical_amount=math.exp(rng.gauss(3.3, 0.7)),
            device=f"d{rng.getrandbits(40):010x}",
        )

    def _event(
        self,
        user: _User,
        ts: int,
        *,
        country: str,
        category: str,
        merchant: str,
        amount: float,
        channel: str,
        device: str,
    ) -> dict[str, object]:
        self._count += 1
        return {
            "event_id": f"e{self.config.seed:x}-{self._count:010d}",
            "user_id": user.user_id,
            "event_time": ts,
            "amount": round(amount, 2),
            "currency": CURRENCY_OF.get(country, "EUR"),
            "merchant_id": merchant,
            "merchant_category": category,
            "country": country,
            "channel": channel,
            "device_id": device,
        }

    def _legit(self, user: _User, ts: int) -> dict[str, object]:
        rng = self._rng
        country, category = user.home, rng.choice(user.categories)
        amount = user.typical_amount * math.exp(rng.gauss(0, 0.35))
        channel = rng.choices(("POS", "ONLINE", "ATM"), (0.6, 0.33, 0.07))[0]
        roll = rng.random()
        if roll < 0.02:  # travelling
            country, category = rng.choice(COUNTRIES), rng.choice(("travel", "restaurant"))
        elif roll < 0.03:  # a rare big purchase
            category, amount = "electronics", amount * rng.uniform(3, 8)
        return self._event(
            user,
            ts,
            country=country,
            category=category,
            merchant=rng.choice(user.merchants),
            amount=amount,
            channel=channel,
            device=user.device,
        )

    def _fraud(self, user: _User, ts: int) -> dict[str, object]:
        rng = self._rng
        foreign = [c for c in COUNTRIES if c != user.home]
        return self._event(
            user,
            ts,
            country=rng.choice(foreign[-7:] if rng.random() < 0.8 else foreign),
            category=rng.choice(RISKY_CATEGORIES),
            merchant=f"m{rng.randrange(5000, 9999):05d}",
            amount=user.typical_amount * rng.uniform(2.5, 12.0),
            channel="ONLINE" if rng.random() < 0.9 else "ATM",
            device=f"d{rng.getrandbits(40):010x}",
        )

    def __iter__(self) -> Iterator[Transaction]:
        return self

    def __next__(self) -> Transaction:
        rng = self._rng
        cfg = self.config
        next_normal = self._now + rng.expovariate(cfg.events_per_second) * 1000.0
        if self._fraud_queue and self._fraud_queue[0][0] <= next_normal:
            ts, _, index = heapq.heappop(self._fraud_queue)
            self._now = max(self._now, float(ts))
            return Transaction(self._fraud(self._users[index], ts), True)
        self._now = next_normal
        index = rng.randrange(cfg.users)
        if rng.random() < cfg.fraud_burst_probability:
            ts = int(self._now)
            for _ in range(rng.randint(2, 7)):
                ts += rng.randint(3_000, 45_000)
                self._seq += 1
                heapq.heappush(self._fraud_queue, (ts, self._seq, index))
        return Transaction(self._legit(self._users[index], int(self._now)), False)

    def take(self, n: int) -> list[Transaction]:
        return [next(self) for _ in range(n)]
