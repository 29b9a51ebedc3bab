"""Computes a user's feature vector as of just before an event, then folds the event in.

One engine serves the Flink job (per event, state kept in RocksDB between calls) and the
training-set builder (replaying the event log), so a feature has exactly one implementation.
The features themselves, their names and their window semantics live in ``compiled.py``; the
engine runs them in vector order over the user's state and keeps that state bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamscore.features.compiled import NO_HISTORY, Feature, compile_features
from streamscore.features.definitions import FEATURE_SET, FeatureSet

__all__ = ["EXPIRY_STEP_MS", "NO_HISTORY", "FeatureEngine", "UserState"]

# Expired buckets are dropped when the newest event time enters a new minute. Reads skip expired
# buckets anyway, so this only bounds the state; it does not change any feature.
EXPIRY_STEP_MS = 60_000


def as_list(vector: Sequence[float]) -> list[float]:
    """``vector`` itself if it is a list (``FeatureEngine.update``'s vectors are), else a list
    of it: compiled code reads a list's items without Python's generic indexing."""
    return vector if isinstance(vector, list) else list(vector)


class UserState:
    """Everything the engine keeps for one user: one RocksDB value in the job.

    ``newest``: the newest event time folded in (-1 before the first event).
    ``slots``: one entry per stateful feature, in the order of ``FeatureEngine.stateful``
    (each a bucket map: bucket index → ``[count, sum, max]`` or a set of values).
    It pickles as ``(newest, slots)``: small and fast, since the job pickles it per event.
    """

    __slots__ = ("newest", "slots")

    def __init__(self, newest: int, slots: list[Any]) -> None:
        self.newest = newest
        self.slots = slots

    def __reduce__(self) -> tuple[type[UserState], tuple[int, list[Any]]]:
        return UserState, (self.newest, self.slots)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, UserState)
            and self.newest == other.newest
            and self.slots == other.slots
        )

    def __repr__(self) -> str:
        return f"UserState(newest={self.newest}, slots={self.slots!r})"


class FeatureEngine:
    def __init__(self, feature_set: FeatureSet = FEATURE_SET) -> None:
        self.feature_set = feature_set
        self.features: tuple[Feature, ...] = compile_features(feature_set)
        self.names: tuple[str, ...] = feature_set.feature_names
        self.stateful = tuple(f for f in self.features if f.stateful)
        # (feature, index of its state slot or -1), in vector order
        slot_of = {id(f): i for i, f in enumerate(self.stateful)}
        self._plan = tuple((f, slot_of.get(id(f), -1)) for f in self.features)

    def new_state(self) -> UserState:
        return UserState(-1, [f.new_slot() for f in self.stateful])

    def update(self, state: UserState, event: dict[str, Any]) -> list[float]:
        """Return the feature vector of ``event`` (as of just before it) and fold it into state."""
        newest = state.newest
        slots = state.slots
        vector: list[float] = []
        for feature, slot in self._plan:
            feature.emit(vector, slots[slot] if slot >= 0 else None, event, newest)
        t: int = event["event_time"]
        if t > newest:
            state.newest = t
            if newest < 0 or t // EXPIRY_STEP_MS != newest // EXPIRY_STEP_MS:
                for stateful, kept in zip(self.stateful, slots):
                    stateful.expire(kept, t)
        return vector
