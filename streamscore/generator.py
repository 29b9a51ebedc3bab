"""A seeded generator of card transactions with realistic, hard-to-separate fraud, and drift.

Why it looks like this: the first version's fraud (always foreign, online, risky category, 2.5-12x
the usual amount) gave a holdout AUC of 0.9999, so model-quality monitoring had nothing to
measure. Here fraud is rare, a good part of it looks normal, and legitimate behaviour has
lookalikes of each fraud pattern. Event time is one stream for all users: ``events_per_second``
events per second of event time, in time order. The same seed always gives the same stream.

**Users.** Home country uniform over ``HOME_COUNTRIES``; 3-4 favourite everyday categories;
4-10 regular merchants with Zipf weights; typical amount log-normal (median 27, sigma 0.7);
activity weight log-normal (sigma 0.8: some users buy far more often than others); online share
uniform 0.1-0.6; a per-event chance to start a trip uniform 0.2-2 %.

**Legitimate events.** Everyday purchases: amount = typical x log-normal(median 1, sigma 0.5),
2 % of them big purchases, typical x 3 x Pareto(alpha 2) (median 4.2x), in electronics, travel
or fashion; channel ATM 5 %, else online with the user's share, else POS; a favourite category
(85 %) or any in the vocabulary, risky ones included; a regular merchant (88 %) or a new one.
Lookalikes: 4 % are app, game or gift-card top-ups of a few units online (like card testing);
trips last 2-14 events in one foreign country, 40 % of trips to a high-risk country, at new
merchants, POS 60 % / ATM 15 % / online 25 % (like fraud abroad); 0.1 % of events bring a new
device (a new phone) that the user keeps.

**Fraud.** Each normal event compromises its user's card with probability
``fraud_burst_probability``; the card is then used in a burst of fraud events, in one pattern per
burst (shares of bursts before any concept drift, ``FRAUD_MIX``):

* ``abroad`` (35 %): card details used abroad, 1-8 events (1 + geometric, mean 2.6) 5-180 s
  apart, one foreign country per burst (80 % high-risk), online 75 % / ATM 15 % / POS 10 %,
  a risky category 70 %, a new merchant each time.
* ``card_testing`` (12 %): 3-10 tiny amounts (log-normal, median 2.5, sigma 0.6) 2-20 s apart
  at one online merchant, at home (60 %) or abroad; half of the runs end with a cash-out at a
  risky merchant.
* ``takeover`` (53 %): an account takeover from the home country, 1-4 events 10-120 s apart,
  online 70 % / POS 30 %, the user's own categories 60 %, a regular merchant 30 %: it mostly
  looks normal, and caps the AUC.

Fraud amounts are heavy tailed, since missed fraud costs its amount: typical x log-normal
(median 3x for ``abroad`` and cash-outs, 2x for ``takeover``, sigma 0.6-0.7) and, for 10 % of
them, a further x 4 x Pareto(alpha 1.5) "big hit" (median 19x typical for ``abroad``), capped at
25,000. Gaps within a burst are log-uniform over their range.

Measured with ``streamscore train``'s defaults (seed 42, 2000 users, 500 events/s, 200,000
events, 396 s of event time): 0.97 % of events are fraud (1.15 % after the first two minutes:
bursts need time to build up; 1.10 % at 200 events/s), fraud is 3.9 % of the money and its top
10 % of events carry 70 % of the fraud money, and the trained model's holdout AUC is 0.913
(0.92 at 200 events/s, seed 7). Per pattern on that holdout: ``abroad`` 0.98, ``card_testing``
0.95, ``takeover`` 0.84.

**Drift** (``GeneratorConfig.drifts``; ``streamscore produce --drift KIND@SECONDS``). A drift
starts at event time first event + ``at_s`` seconds and stays; before it, the stream is the
stream without the drift, draw for draw.

* ``data``: every amount x 2.5 (legitimate and fraud alike); 10 % of everyday purchases in
  categories outside the feature vocabulary (``NEW_CATEGORIES``, encoded -1); half of the trips
  and a third of the foreign fraud in countries never seen before (``NEW_COUNTRIES``).
* ``concept``: bursts that start after it follow ``CONCEPT_FRAUD_MIX``: ``local_spree`` (80 %:
  a cloned card used at home, POS 90 %, 2-6 events 3-40 s apart, each at a new merchant in an
  everyday category, amounts median 1.3x typical) and ``takeover`` (20 %). Legitimate users take
  on the old fraud's traits: trips 4x as often, and 12 % of events are online purchases in risky
  categories (median 2x typical) at new merchants. Fraud is then about 1.3 % of events. A model
  trained before the drift loses most of its AUC, and one that keeps learning on the same 21
  features recovers (``tests/unit/test_drift.py`` has the numbers).
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from streamscore.features.definitions import MERCHANT_CATEGORIES

COUNTRIES = ("DE", "FR", "GB", "NL", "ES", "IT", "US", "PL", "SE", "BR", "NG", "RU", "CN", "VN")
HOME_COUNTRIES = COUNTRIES[:8]
HIGH_RISK_COUNTRIES = ("BR", "NG", "RU", "CN", "VN")
# Outside anything seen before a data drift (the feature engine has no country vocabulary, but
# the windowed country features see values that are new for every user).
NEW_COUNTRIES = ("MX", "IN", "AE", "TR", "KE")
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
    "MX": "MXN",
    "IN": "INR",
    "AE": "AED",
    "TR": "TRY",
    "KE": "KES",
}
RISKY_CATEGORIES = ("electronics", "gift_cards", "crypto", "travel")
EVERYDAY_CATEGORIES = ("grocery", "restaurant", "fuel", "fashion", "entertainment", "health")
MICRO_CATEGORIES = ("gift_cards", "entertainment", "crypto")
# Outside MERCHANT_CATEGORIES: the feature engine encodes them as -1.
NEW_CATEGORIES = ("bnpl", "marketplace", "subscriptions")

DRIFT_KINDS = ("data", "concept")
DATA_DRIFT_AMOUNT_FACTOR = 2.5
MAX_FRAUD_AMOUNT = 25_000.0
BIG_HIT_PROBABILITY = 0.1

# Pattern shares of new fraud bursts, before and after a concept drift.
FRAUD_MIX = {"abroad": 0.35, "card_testing": 0.12, "takeover": 0.53}
CONCEPT_FRAUD_MIX = {"local_spree": 0.8, "takeover": 0.2}


@dataclass(frozen=True)
class Drift:
    """A change of the stream from event time first event + ``at_s`` seconds on."""

    kind: str  # one of DRIFT_KINDS
    at_s: float

    def __post_init__(self) -> None:
        if self.kind not in DRIFT_KINDS:
            raise ValueError(f"drift kind {self.kind!r} is not one of {', '.join(DRIFT_KINDS)}")
        if not (math.isfinite(self.at_s) and self.at_s >= 0):
            raise ValueError(f"drift time {self.at_s!r} must be a number of seconds >= 0")


def parse_drift(text: str) -> Drift:
    """``KIND@SECONDS`` (e.g. ``concept@300``) as a ``Drift``; ``ValueError`` says what is wrong."""
    kind, sep, seconds = text.partition("@")
    if not sep:
        raise ValueError(f"{text!r} is not KIND@SECONDS (e.g. concept@300)")
    try:
        at_s = float(seconds)
    except ValueError:
        raise ValueError(f"{text!r}: {seconds!r} is not a number of seconds") from None
    return Drift(kind.strip().lower(), at_s)


@dataclass(frozen=True)
class GeneratorConfig:
    users: int = 2000
    events_per_second: float = 500.0  # in event time: sets how busy each user is
    # Per normal event: the chance that its card gets compromised, which starts a fraud burst.
    # With the patterns' burst sizes, 0.004 makes about 1 % of all events fraud.
    fraud_burst_probability: float = 0.004
    seed: int = 42
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    drifts: tuple[Drift, ...] = ()


@dataclass
class _User:
    user_id: str
    home: str
    categories: tuple[str, ...]
    merchants: tuple[str, ...]
    merchant_weights: tuple[float, ...]  # cumulative Zipf weights of ``merchants``
    typical_amount: float
    device: str
    online_share: float
    travel_rate: float  # per event: chance to start a trip
    trip_country: str = ""
    trip_events_left: int = 0


@dataclass(frozen=True)
class _Burst:
    """One compromised card's run of fraud: its pattern and what stays fixed across its events."""

    kind: str
    size: int
    country: str
    merchant: str  # card testing hits one merchant
    device: str
    cash_out: bool  # card testing: the run ends with one large purchase


@dataclass(frozen=True)
class Transaction:
    event: dict[str, object]
    is_fraud: bool
    fraud_kind: str = ""  # the fraud pattern ("" for legitimate events), for analysis only


@dataclass(frozen=True)
class _Draft:
    """What varies between event kinds; ``_event`` adds ids, time and currency."""

    country: str
    category: str
    merchant: str
    amount: float
    channel: str
    device: str


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


class TransactionGenerator:
    def __init__(self, config: GeneratorConfig = GeneratorConfig()) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._users = [self._new_user(i) for i in range(config.users)]
        self._activity = list(
            accumulate(math.exp(self._rng.gauss(0.0, 0.8)) for _ in range(config.users))
        )
        # A fractional clock in ms: event times are whole ms, but several events may share one,
        # so the event-time rate is not capped at 1000/s.
        self._now = float(config.start_ms)
        self._count = 0
        # (event time, seq, user index, burst, step in burst)
        self._fraud_queue: list[tuple[int, int, int, _Burst, int]] = []
        self._seq = 0
        # Drift start times in event-time ms, known once the first event's time is.
        self._drift_ms: dict[str, float] = {}

    # --- users and time -------------------------------------------------------------------
    def _new_user(self, index: int) -> _User:
        rng = self._rng
        merchants = tuple(f"m{rng.randrange(5000):05d}" for _ in range(rng.randint(4, 10)))
        return _User(
            user_id=f"u{index:06d}",
            home=rng.choice(HOME_COUNTRIES),
            categories=tuple(rng.sample(EVERYDAY_CATEGORIES, rng.randint(3, 4))),
            merchants=merchants,
            merchant_weights=tuple(accumulate(1.0 / (k + 1) for k in range(len(merchants)))),
            typical_amount=math.exp(rng.gauss(3.3, 0.7)),
            device=f"d{rng.getrandbits(40):010x}",
            online_share=rng.uniform(0.1, 0.6),
            travel_rate=rng.uniform(0.002, 0.02),
        )

    def _pick_user(self) -> int:
        point = self._rng.random() * self._activity[-1]
        return min(bisect.bisect_right(self._activity, point), len(self._activity) - 1)

    def _start_drifts(self, first_ms: int) -> None:
        for drift in self.config.drifts:
            at = first_ms + drift.at_s * 1000.0
            self._drift_ms[drift.kind] = min(at, self._drift_ms.get(drift.kind, math.inf))

    def _drifted(self, kind: str, ts: int) -> bool:
        return ts >= self._drift_ms.get(kind, math.inf)

    # --- events ---------------------------------------------------------------------------
    def _event(self, user: _User, ts: int, draft: _Draft) -> dict[str, object]:
        self._count += 1
        amount = draft.amount
        if self._drifted("data", ts):
            amount *= DATA_DRIFT_AMOUNT_FACTOR
        return {
            "event_id": f"e{self.config.seed:x}-{self._count:010d}",
            "user_id": user.user_id,
            "event_time": ts,
            "amount": max(round(amount, 2), 0.01),
            "currency": CURRENCY_OF.get(draft.country, "EUR"),
            "merchant_id": draft.merchant,
            "merchant_category": draft.category,
            "country": draft.country,
            "channel": draft.channel,
            "device_id": draft.device,
        }

    def _new_merchant(self) -> str:
        return f"m{self._rng.randrange(5000, 50_000):05d}"

    def _destination(self, user: _User, ts: int) -> str:
        rng = self._rng
        if self._drifted("data", ts) and rng.random() < 0.5:
            return rng.choice(NEW_COUNTRIES)
        if rng.random() < 0.4:
            return rng.choice(HIGH_RISK_COUNTRIES)
        return rng.choice([c for c in HOME_COUNTRIES if c != user.home])

    def _trip_country(self, user: _User, ts: int) -> str | None:
        """The trip's country if the user is abroad for this event (a trip may start now)."""
        if user.trip_events_left > 0:
            user.trip_events_left -= 1
            return user.trip_country
        rate = user.travel_rate * (4.0 if self._drifted("concept", ts) else 1.0)
        if self._rng.random() >= rate:
            return None
        user.trip_country = self._destination(user, ts)
        user.trip_events_left = self._rng.randint(1, 13)
        return user.trip_country

    def _legit(self, user: _User, ts: int) -> _Draft:
        rng = self._rng
        if rng.random() < 0.001:  # a new phone, kept from now on
            user.device = f"d{rng.getrandbits(40):010x}"
        country = self._trip_country(user, ts)
        if country is not None:
            return self._purchase_abroad(user, country)
        if self._drifted("concept", ts) and rng.random() < 0.12:
            return self._online_risky_purchase(user)
        if rng.random() < 0.04:
            return self._micro_purchase(user)
        return self._everyday_purchase(user, ts)

    def _everyday_purchase(self, user: _User, ts: int) -> _Draft:
        rng = self._rng
        amount = user.typical_amount * math.exp(rng.gauss(0.0, 0.5))
        favourite = rng.random() < 0.85
        category = rng.choice(user.categories if favourite else MERCHANT_CATEGORIES)
        if rng.random() < 0.02:  # a rare big purchase
            category = rng.choice(("electronics", "travel", "fashion"))
            amount = user.typical_amount * 3.0 * rng.paretovariate(2.0)
        if self._drifted("data", ts) and rng.random() < 0.1:
            category = rng.choice(NEW_CATEGORIES)
        roll = rng.random()
        channel = "ATM" if roll < 0.05 else "ONLINE" if roll < 0.05 + user.online_share else "POS"
        regular = rng.random() < 0.88
        merchant = self._regular_merchant(user) if regular else self._new_merchant()
        return _Draft(user.home, category, merchant, amount, channel, user.device)

    def _micro_purchase(self, user: _User) -> _Draft:
        """An app, game or gift-card top-up of a few units: the lookalike of card testing."""
        rng = self._rng
        amount = 3.0 * math.exp(rng.gauss(0.0, 0.6))
        category = rng.choice(MICRO_CATEGORIES)
        merchant = self._regular_merchant(user) if rng.random() < 0.5 else self._new_merchant()
        return _Draft(user.home, category, merchant, amount, "ONLINE", user.device)

    def _regular_merchant(self, user: _User) -> str:
        point = self._rng.random() * user.merchant_weights[-1]
        index = bisect.bisect_right(user.merchant_weights, point)
        return user.merchants[min(index, len(user.merchants) - 1)]

    def _purchase_abroad(self, user: _User, country: str) -> _Draft:
        """A traveller's purchase: the lookalike of fraud abroad (new country, new merchant)."""
        rng = self._rng
        roll = rng.random()
        category = (
            "travel" if roll < 0.3 else "restaurant" if roll < 0.6 else rng.choice(user.categories)
        )
        roll = rng.random()
        channel = "POS" if roll < 0.6 else "ATM" if roll < 0.75 else "ONLINE"
        amount = user.typical_amount * math.exp(rng.gauss(0.2, 0.6))
        return _Draft(country, category, self._new_merchant(), amount, channel, user.device)

    def _online_risky_purchase(self, user: _User) -> _Draft:
        """After a concept drift: legitimate online shopping that looks like the old fraud."""
        rng = self._rng
        amount = user.typical_amount * 2.0 * math.exp(rng.gauss(0.0, 0.6))
        category = rng.choice(RISKY_CATEGORIES)
        return _Draft(user.home, category, self._new_merchant(), amount, "ONLINE", user.device)

    # --- fraud ----------------------------------------------------------------------------
    def _fraud_amount(self, user: _User, median_multiple: float, sigma: float) -> float:
        """Heavy tailed: most fraud a few times the user's typical amount, some very large."""
        rng = self._rng
        multiple = median_multiple * math.exp(rng.gauss(0.0, sigma))
        if rng.random() < BIG_HIT_PROBABILITY:
            multiple *= 4.0 * rng.paretovariate(1.5)
        return min(user.typical_amount * multiple, MAX_FRAUD_AMOUNT)

    def _foreign_country(self, user: _User, ts: int) -> str:
        rng = self._rng
        if self._drifted("data", ts) and rng.random() < 1 / 3:
            return rng.choice(NEW_COUNTRIES)
        if rng.random() < 0.8:
            return rng.choice(HIGH_RISK_COUNTRIES)
        return rng.choice([c for c in COUNTRIES if c != user.home])

    def _schedule_burst(self, index: int, ts: int) -> None:
        """Queue the fraud events of a card compromised at ``ts``; the pattern is the one in
        force then (a burst that straddles a concept drift keeps its old pattern)."""
        rng = self._rng
        user = self._users[index]
        mix = CONCEPT_FRAUD_MIX if self._drifted("concept", ts) else FRAUD_MIX
        kind = rng.choices(tuple(mix), tuple(mix.values()))[0]
        size, gaps = self._burst_shape(kind)
        abroad = kind == "abroad" or (kind == "card_testing" and rng.random() < 0.4)
        burst = _Burst(
            kind=kind,
            size=size,
            country=self._foreign_country(user, ts) if abroad else user.home,
            merchant=self._new_merchant(),
            device=f"d{rng.getrandbits(40):010x}",
            cash_out=kind == "card_testing" and rng.random() < 0.5,
        )
        when = ts
        for step in range(size):
            when += int(_log_uniform(rng, *gaps) * 1000)
            self._seq += 1
            heapq.heappush(self._fraud_queue, (when, self._seq, index, burst, step))

    def _burst_shape(self, kind: str) -> tuple[int, tuple[float, float]]:
        """Number of events and the range of seconds between them (drawn log-uniform)."""
        rng = self._rng
        if kind == "abroad":
            size = 1
            while size < 8 and rng.random() < 0.62:
                size += 1
            return size, (5.0, 180.0)
        if kind == "card_testing":
            return rng.randint(3, 10), (2.0, 20.0)
        if kind == "takeover":
            return rng.randint(1, 4), (10.0, 120.0)
        return rng.randint(2, 6), (3.0, 40.0)  # local_spree

    def _fraud(self, user: _User, burst: _Burst, step: int) -> _Draft:
        if burst.kind == "abroad":
            return self._fraud_abroad(user, burst)
        if burst.kind == "card_testing":
            return self._card_test(user, burst, step)
        if burst.kind == "takeover":
            return self._takeover(user, burst)
        return self._local_spree(user, burst)

    def _fraud_abroad(self, user: _User, burst: _Burst) -> _Draft:
        rng = self._rng
        roll = rng.random()
        channel = "ONLINE" if roll < 0.75 else "ATM" if roll < 0.9 else "POS"
        risky = rng.random() < 0.7
        category = rng.choice(RISKY_CATEGORIES if risky else MERCHANT_CATEGORIES)
        amount = self._fraud_amount(user, 3.0, 0.7)
        return _Draft(burst.country, category, self._new_merchant(), amount, channel, burst.device)

    def _card_test(self, user: _User, burst: _Burst, step: int) -> _Draft:
        """Tiny amounts at one merchant; some runs end with a cash-out once the card works."""
        rng = self._rng
        if burst.cash_out and step == burst.size - 1:
            category, amount = rng.choice(RISKY_CATEGORIES), self._fraud_amount(user, 3.0, 0.7)
            merchant = self._new_merchant()
        else:
            amount = 2.5 * math.exp(rng.gauss(0.0, 0.6))
            category, merchant = rng.choice(MICRO_CATEGORIES), burst.merchant
        return _Draft(burst.country, category, merchant, amount, "ONLINE", burst.device)

    def _takeover(self, user: _User, burst: _Burst) -> _Draft:
        """An account takeover from the home country: mostly the user's own habits."""
        rng = self._rng
        channel = "ONLINE" if rng.random() < 0.7 else "POS"
        own = rng.random() < 0.6
        category = rng.choice(user.categories if own else RISKY_CATEGORIES)
        regular = rng.random() < 0.3
        merchant = self._regular_merchant(user) if regular else self._new_merchant()
        amount = self._fraud_amount(user, 2.0, 0.6)
        return _Draft(user.home, category, merchant, amount, channel, burst.device)

    def _local_spree(self, user: _User, burst: _Burst) -> _Draft:
        """After a concept drift: a cloned card at home, at POS, a new everyday merchant each
        time, amounts close to the user's own."""
        rng = self._rng
        channel = "POS" if rng.random() < 0.9 else "ONLINE"
        amount = self._fraud_amount(user, 1.3, 0.5)
        category = rng.choice(EVERYDAY_CATEGORIES)
        return _Draft(user.home, category, self._new_merchant(), amount, channel, burst.device)

    # --- the stream -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[Transaction]:
        return self

    def __next__(self) -> Transaction:
        rng = self._rng
        cfg = self.config
        next_normal = self._now + rng.expovariate(cfg.events_per_second) * 1000.0
        if self._count == 0 and cfg.drifts:
            self._start_drifts(int(next_normal))
        if self._fraud_queue and self._fraud_queue[0][0] <= next_normal:
            ts, _, index, burst, step = heapq.heappop(self._fraud_queue)
            self._now = max(self._now, float(ts))
            user = self._users[index]
            return Transaction(
                self._event(user, ts, self._fraud(user, burst, step)), True, burst.kind
            )
        self._now = next_normal
        ts = int(self._now)
        index = self._pick_user()
        if rng.random() < cfg.fraud_burst_probability:
            self._schedule_burst(index, ts)
        user = self._users[index]
        return Transaction(self._event(user, ts, self._legit(user, ts)), False)

    def take(self, n: int) -> list[Transaction]:
        return [next(self) for _ in range(n)]
