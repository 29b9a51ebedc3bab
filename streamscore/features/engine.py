"""Computes a user's feature vector as of just before an event, then folds the event in.

One engine serves the Flink job (per event, state kept in RocksDB between calls) and the
training-set builder (replaying the event log), so a feature has exactly one implementation.
The features themselves, their names and their window semantics live in ``compiled.py``; the
engine runs them in vector order over the user's state and keeps that state bounded.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any, Final

from streamscore.features.compiled import NO_HISTORY, Feature, WindowedNumeric, compile_features
from streamscore.features.definitions import FEATURE_SET, FeatureSet
from streamscore.features.rings import new_cells, pack, unpack

__all__ = ["EXPIRY_STEP_MS", "NO_HISTORY", "FeatureEngine", "UserState"]

# The distinct counts' expired buckets are dropped when the newest event time enters a new
# minute (the numeric windows' rings reuse theirs as they move on). Reads skip expired buckets
# anyway, so this only bounds the state; it does not change any feature.
EXPIRY_STEP_MS: Final = 60_000
# A feature's place in the plan when it keeps its state in the user's cells, or keeps none.
CELLS: Final = -2
NO_STATE: Final = -1


def as_list(vector: Sequence[float]) -> list[float]:
    """``vector`` itself if it is a list (``FeatureEngine.update``'s vectors are), else a list
    of it: compiled code reads a list's items without Python's generic indexing."""
    return vector if isinstance(vector, list) else list(vector)


class UserState:
    """Everything the engine keeps for one user: one RocksDB value in the job.

    ``newest``: the newest event time folded in (-1 before the first event).
    ``cells``: the numeric windows' rings of bucket cells, one after another (``rings.py``).
    ``slots``: one entry per stateful feature (``Feature.stateful``: the distinct counts' bucket
    maps of value sets), in the order of ``FeatureEngine.stateful``.
    ``memos``: what those features worked out for the last event, to reuse for the next
    (``compiled.DistinctMemo``), or None: derived from the slots, so never pickled.
    It pickles as ``(newest, packed cells, slots)``, the cells without their empty ones
    (``rings.pack``): small and fast, since the job pickles each changed user per checkpoint.
    """

    __slots__ = ("newest", "cells", "slots", "memos")

    def __init__(self, newest: int, cells: array[float], slots: list[Any]) -> None:
        self.newest = newest
        self.cells = cells
        self.slots = slots
        self.memos: list[Any] | None = None

    def __reduce__(self) -> tuple[Any, tuple[int, bytes, list[Any]]]:
        return restore_user_state, (self.newest, pack(self.cells), self.slots)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, UserState)
            and self.newest == other.newest
            and self.cells == other.cells
            and self.slots == other.slots
        )

    def __repr__(self) -> str:
        return f"UserState(newest={self.newest}, cells={self.cells!r}, slots={self.slots!r})"


def restore_user_state(newest: int, packed: bytes, slots: list[Any]) -> UserState:
    """A pickled ``UserState`` read back (its ``__reduce__``)."""
    return UserState(newest, unpack(packed), slots)


class FeatureEngine:
    def __init__(self, feature_set: FeatureSet = FEATURE_SET) -> None:
        self.feature_set = feature_set
        self.features: tuple[Feature, ...] = compile_features(feature_set)
        self.names: tuple[str, ...] = feature_set.feature_names
        self.stateful = tuple(f for f in self.features if f.stateful)
        self.rings = tuple(f.ring for f in self.features if isinstance(f, WindowedNumeric))
        # (feature, index of its state slot, or CELLS, or NO_STATE), in vector order
        slot_of = {id(f): i for i, f in enumerate(self.stateful)}
        self._plan = tuple(
            (f, CELLS if f.uses_cells else slot_of.get(id(f), NO_STATE)) for f in self.features
        )

    def new_state(self) -> UserState:
        return UserState(-1, new_cells(self.rings), [f.new_slot() for f in self.stateful])

    def update(self, state: UserState, event: dict[str, Any]) -> list[float]:
        """Return the feature vector of ``event`` (as of just before it) and fold it into state."""
        newest = state.newest
        slots = state.slots
        cells = state.cells
        memos = state.memos
        if memos is None:
            memos = state.memos = [None] * len(slots)
        vector: list[float] = []
        for feature, slot in self._plan:
            if slot >= 0:
                feature.emit_remembering(vector, slots[slot], memos, slot, event, newest)
            else:
                feature.emit(vector, cells if slot == CELLS else None, event, newest)
        t: int = event["event_time"]
        if t > newest:
            state.newest = t
            if newest < 0 or t // EXPIRY_STEP_MS != newest // EXPIRY_STEP_MS:
                for stateful, kept in zip(self.stateful, slots):
                    stateful.expire(kept, t)
        return vector
