"""Reading a user's own event log (JSON lines), for ``produce --from-file`` and ``train``.

One reader, so what one command accepts the other accepts too. Each line is an event with the
fields of ``streamscore/schemas/event.avsc``; ``event_time`` is epoch millis or an ISO-8601
string (``2026-01-01T12:00:00Z``); ``device_id`` may be left out; an optional ``is_fraud``
field is the event's label.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamscore.errors import StreamscoreError

LabelledEvent = tuple[dict[str, Any], bool | None]


def event_time_millis(value: int | float | str) -> int:
    """Epoch millis from epoch millis or an ISO-8601 time (``Z`` or an offset; naive = UTC)."""
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    return int(value)


def read_jsonl(path: Path) -> Iterator[LabelledEvent]:
    """Yield (event, label or None) per non-blank line; a bad line stops with its number."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                label = record.pop("is_fraud", None)
                record["event_time"] = event_time_millis(record["event_time"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StreamscoreError(f"{path}:{number}: not an event ({exc})") from None
            record.setdefault("device_id", None)
            yield record, None if label is None else bool(label)
