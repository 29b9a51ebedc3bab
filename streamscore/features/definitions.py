"""The feature set, declared as data: windows × aggregations over event fields.

Change features here, bump ``version``, retrain; the Flink job and the training code both import
this module, so online and offline features cannot drift apart. Windows are sliding windows
tiled into fixed buckets (as Chronon and most feature stores do): a window of length L with
bucket size B covers the L/B buckets ending with the event's own bucket. The bucket size bounds
both the state kept per user and the time resolution of the window edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamscore.features.rings import AGGREGATIONS


@dataclass(frozen=True)
class Window:
    name: str
    length_ms: int
    bucket_ms: int

    def __post_init__(self) -> None:
        if self.length_ms % self.bucket_ms:
            raise ValueError(f"window {self.name}: length must be a multiple of the bucket size")

    @property
    def buckets(self) -> int:
        return self.length_ms // self.bucket_ms


@dataclass(frozen=True)
class NumericAggregate:
    """Aggregations of a numeric event field over windows."""

    field: str
    aggregations: tuple[str, ...]
    windows: tuple[str, ...]


@dataclass(frozen=True)
class DistinctCount:
    """Distinct values of a text field over windows (and optionally: is the current one new)."""

    field: str
    windows: tuple[str, ...]
    flag_new_value: bool = False


@dataclass(frozen=True)
class Categorical:
    """A field of the current event encoded as a category code (unknown values → -1)."""

    field: str
    vocabulary: tuple[str, ...]


@dataclass(frozen=True)
class Ratio:
    """The current value of a numeric field divided by its windowed mean (0 when no history)."""

    field: str
    window: str


@dataclass(frozen=True)
class FeatureSet:
    version: str
    windows: tuple[Window, ...]
    numeric: tuple[NumericAggregate, ...]
    distinct: tuple[DistinctCount, ...]
    categorical: tuple[Categorical, ...]
    ratios: tuple[Ratio, ...]
    current_numeric: tuple[str, ...] = ("amount",)
    time_since_previous: bool = True
    hour_of_day: bool = True
    # How far behind the user's newest event an event may arrive and still see complete windows.
    # The job's out-of-orderness plus allowed lateness must not exceed it (checked at start).
    retention_slack_ms: int = 120_000
    window_by_name: dict[str, Window] = field(init=False, repr=False, compare=False)
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "window_by_name", {w.name: w for w in self.windows})
        specs: tuple[NumericAggregate | DistinctCount, ...] = (*self.numeric, *self.distinct)
        for spec in specs:
            for name in spec.windows:
                if name not in self.window_by_name:
                    raise ValueError(f"{spec.field}: unknown window {name!r}")
            for agg in getattr(spec, "aggregations", ()):
                if agg not in AGGREGATIONS:
                    raise ValueError(f"{spec.field}: unknown aggregation {agg!r}")
        # Compiling checks the rest (a ratio needs its windowed mean) and gives the names.
        from streamscore.features.compiled import compile_features

        names = tuple(n for feature in compile_features(self) for n in feature.names)
        object.__setattr__(self, "_names", names)

    @property
    def max_window_ms(self) -> int:
        return max(w.length_ms for w in self.windows)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names in the order of the feature vector (the model's column order), as the
        compiled features produce them (``features/compiled.py``)."""
        return self._names

    @property
    def categorical_features(self) -> tuple[str, ...]:
        return tuple(c.field for c in self.categorical)


MERCHANT_CATEGORIES = (
    "grocery",
    "restaurant",
    "fuel",
    "travel",
    "electronics",
    "fashion",
    "entertainment",
    "health",
    "gift_cards",
    "crypto",
)
CHANNELS = ("POS", "ONLINE", "ATM")

FEATURE_SET = FeatureSet(
    version="fs-v1",
    windows=(
        Window("1m", 60_000, 10_000),
        Window("1h", 3_600_000, 300_000),
        Window("24h", 86_400_000, 3_600_000),
    ),
    numeric=(NumericAggregate("amount", ("count", "sum", "mean", "max"), ("1m", "1h", "24h")),),
    distinct=(
        DistinctCount("merchant_id", ("1h",)),
        DistinctCount("country", ("24h",), flag_new_value=True),
    ),
    categorical=(
        Categorical("merchant_category", MERCHANT_CATEGORIES),
        Categorical("channel", CHANNELS),
    ),
    ratios=(Ratio("amount", "24h"),),
)
