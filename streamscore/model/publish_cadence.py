"""When the learner publishes a challenger snapshot: by labels learned, and not too often.

Every snapshot is a control record that every scoring subtask decodes, unpickles and turns into
a new shadow scorer (``model/challenger.py``), and that the learner pickles, compresses and
stores in its keyed state. A count of labels alone (``challenger_publish_every``) made that
cadence follow the label rate: a backlog drained at 8,000 labels a second published 40
snapshots a second, each a new ``challenger_version`` in the predictions and in the metrics,
for a model that moves little in 200 labels. So a snapshot also waits until
``challenger_publish_min_interval_ms`` have passed since the previous one; at ordinary label
rates (up to ``every`` labels per interval) the count alone decides. Off by default (0):
300,000-event drains with a 1 s interval ran slower than with the count alone, in three runs
against four, for a reason not found (bench/HISTORY.md, twenty-first session).

The interval is processing time, so which label counts a replay publishes at may differ from
the first run's; that is safe because the learner stores its model only with a snapshot and
keeps the labels learned since in its tail state (``job/functions.LearnChallenger``), and an
exactly-once job's outputs from before a failure are never committed.
"""

from __future__ import annotations

import math
from collections.abc import Callable


class PublishCadence:
    """Counts labels learned since the last snapshot and says when the next one is due."""

    def __init__(
        self, every: int, min_interval_s: float, clock: Callable[[], float], learned: int = 0
    ) -> None:
        """``every``: labels between two snapshots at least; ``min_interval_s``: seconds between
        two snapshots at least (0: the count alone); ``clock``: monotonic seconds;
        ``learned``: labels learned since the stored snapshot (a restored learner's tail), so
        that a restore does not delay the next snapshot."""
        self._every = every
        self._min_interval_s = min_interval_s
        self._clock = clock
        self.since_snapshot = learned
        # No snapshot yet in this run: the first is due on the count alone.
        self._published_at = -math.inf

    def learned(self) -> bool:
        """Count one label learned; True when a snapshot is due now (the caller publishes it and
        calls ``published``)."""
        self.since_snapshot += 1
        if self.since_snapshot < self._every:
            return False
        # The clock is read only once the count is reached, not for every label.
        return self._clock() - self._published_at >= self._min_interval_s

    def published(self) -> None:
        """A snapshot was published with the labels counted so far."""
        self.since_snapshot = 0
        self._published_at = self._clock()
