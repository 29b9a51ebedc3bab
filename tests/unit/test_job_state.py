"""The scoring operator's per-user state: its deadlines and how it pickles."""

import pickle

from streamscore.features.engine import FeatureEngine
from streamscore.job.state import (
    ParkedLabel,
    PendingOutcome,
    ScoringState,
    next_deadline,
    pack,
    unpack,
)

HORIZON, RETENTION, PARK = 600_000, 86_520_000, 65_000


def pending(event_time: int) -> PendingOutcome:
    return PendingOutcome(event_time, 10.0, [1.0], 0.1, "APPROVE", "v1", "champion", 0, None,
                          None, None)  # fmt: skip


def test_the_earliest_deadline_wins() -> None:
    state = ScoringState(FeatureEngine().new_state())
    assert next_deadline(state, RETENTION, HORIZON, PARK) > 2**61  # nothing due, ever
    state.features.newest = 1_000
    assert next_deadline(state, RETENTION, HORIZON, PARK) == 1_000 + RETENTION
    state.pending["e1"] = pack(pending(5_000))
    assert next_deadline(state, RETENTION, HORIZON, PARK) == 5_000 + HORIZON
    state.closed["e0"] = (2_000, "labelled")
    assert next_deadline(state, RETENTION, HORIZON, PARK) == 5_000 + HORIZON
    state.closed["e-1"] = (-700_000, "expired")
    assert next_deadline(state, RETENTION, HORIZON, PARK) == -700_000 + 2 * HORIZON
    state.parked["e9"] = ParkedLabel(True, -600_000, b"x", "labels", 0, 1)
    assert next_deadline(state, RETENTION, HORIZON, PARK) == -600_000 + PARK


def test_state_survives_a_pickle_round_trip() -> None:
    engine = FeatureEngine()
    state = ScoringState(engine.new_state(), timer_at=42)
    state.pending["e1"] = pack(pending(5_000))
    state.closed["e0"] = (2_000, "labelled")
    state.parked["e9"] = ParkedLabel(True, 7, b"x", "labels", 0, 1)
    copy = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    assert copy.features == state.features
    assert (copy.pending, copy.closed, copy.parked, copy.timer_at) == (
        state.pending, state.closed, state.parked, 42,
    )  # fmt: skip


def test_a_pending_outcome_packs_and_unpacks_exactly() -> None:
    full = PendingOutcome(1_767_225_600_123, 12.5, [0.1 * i for i in range(21)], 0.25,
                          "DECLINE", "fraud-lgbm-2", "candidate", 10, 0.75, 0.5,
                          "river-logistic-000000100")  # fmt: skip
    assert unpack(pack(full)) == full
    assert unpack(pack(pending(7))) == pending(7)  # the Nones survive too


def test_a_label_envelope_ends_with_a_parked_label() -> None:
    """The scoring operator builds a ParkedLabel from LabelInput[2:]: same fields, same order."""
    from streamscore.job.functions import LabelInput

    assert LabelInput._fields[2:] == ParkedLabel._fields
