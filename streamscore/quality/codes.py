"""Decisions as small integer codes, so outcomes can be counted and masked with numpy.

The code of a decision is its index in ``DECISIONS`` (APPROVE 0, REVIEW 1, DECLINE 2), ordered
by severity: "REVIEW or worse" is ``code >= 1``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from streamscore.model.decisions import DECISIONS

CODE_OF: dict[str, int] = {name: code for code, name in enumerate(DECISIONS)}
APPROVE_CODE, REVIEW_CODE, DECLINE_CODE = (CODE_OF[name] for name in DECISIONS)


def decision_codes(decisions: Iterable[str] | np.ndarray) -> np.ndarray:
    """Codes (int8) of decisions given as names, or integer codes passed through unchanged."""
    if isinstance(decisions, np.ndarray) and decisions.dtype.kind in "iu":
        return decisions.astype(np.int8, copy=False)
    try:
        return np.fromiter((CODE_OF[d] for d in decisions), dtype=np.int8)
    except KeyError as exc:
        raise ValueError(f"unknown decision {exc.args[0]!r}; expected one of {DECISIONS}") from None
