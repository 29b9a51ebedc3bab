"""Upgrades and rescaling from savepoints, on the real stack: the scoring stage goes 2 -> 1 -> 2
with ``streamscore upgrade`` while events keep coming in batches. After each step every user's
features in Redis equal the offline replay of all their events so far (so no user started over),
and over the whole run every event has exactly one prediction (read_committed)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest
from click.testing import CliRunner

from streamscore.cli import main as cli
from streamscore.config import Settings
from streamscore.feature_store import connect, read_features
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.jobcontrol import cancel, find_job
from streamscore.serde import Codec
from streamscore.stack import flink, kafka
from streamscore.upgrade import MANIFEST
from tests.e2e.helpers import RunJob, collect, expected_store, send

pytestmark = pytest.mark.e2e
BATCH = 1_500
USERS = 150


def _batch(seed: int) -> list[dict[str, Any]]:
    """Events whose times end about now, so the watermark moves in real time."""
    now = int(time.time() * 1000)
    generator = TransactionGenerator(
        GeneratorConfig(users=USERS, seed=seed, events_per_second=200, start_ms=now)
    )
    events = [t.event for t in generator.take(BATCH)]
    shift = now - events[-1]["event_time"]
    for event in events:
        event["event_id"] = f"{event['event_id']}-b{seed}"
        event["event_time"] += shift
    return events


def _scoring_parallelism(settings: Settings, job_id: str) -> int:
    vertices = flink.rest(settings, f"/jobs/{job_id}")["vertices"]
    return next(v["parallelism"] for v in vertices if "features-score" in v["name"])


def _assert_store_is_the_replay(settings: Settings, events: list[dict[str, Any]]) -> None:
    client = connect(settings)
    expected = expected_store(events)
    deadline = time.monotonic() + 60
    while True:
        stale = [
            user for user, (event_id, _) in expected.items()
            if (read_features(client, settings.redis_key_prefix, user) or {}).get("event_id")
            != event_id
        ]  # fmt: skip
        if not stale or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not stale, f"{len(stale)} users without their newest features"
    for user, (_, features) in expected.items():
        stored = read_features(client, settings.redis_key_prefix, user)
        assert stored is not None and stored["features"] == pytest.approx(features, rel=1e-9)


def test_rescale_keeps_every_users_state(
    run_job: RunJob, job_settings: dict[str, str], stack: Settings
) -> None:
    run = uuid.uuid4().hex[:8]
    overrides = {
        **{f"topic_{n}": f"up-{run}-{n}" for n in ("events", "labels", "predictions",
                                                   "dead_letters", "control", "outcomes")},
        "redis_key_prefix": f"up-{run}:",
    }  # fmt: skip
    kafka.create_topics(stack.with_overrides(overrides))
    settings = run_job(**overrides)
    cli_settings = {**job_settings, **overrides}
    sets = [a for k, v in cli_settings.items() for a in ("--set", f"{k}={v}")]
    codec = Codec("event")
    sent: list[dict[str, Any]] = []
    job_id = find_job(settings)["jid"]  # type: ignore[index]
    try:
        for step, parallelism in enumerate((1, 2, None)):
            events = _batch(seed=100 + step)
            send(settings, [(e["user_id"].encode(), codec.encode(e)) for e in events])
            sent += events
            ids = {e["event_id"] for e in events}
            got = collect(
                settings, settings.topic_predictions, "prediction",
                lambda r, ids=ids: r["event_id"] in ids, len(ids), timeout_s=120,
            )  # fmt: skip
            assert {p["event_id"] for p in got} == ids
            _assert_store_is_the_replay(settings, sent)
            if parallelism is None:
                break
            result = CliRunner().invoke(
                cli, [*sets, "upgrade", "--to", f"scoring_parallelism={parallelism}"]
            )
            assert result.exit_code == 0, result.output
            savepoint = result.output.split("savepoint ", 1)[1].split()[0]
            assert (flink_path(savepoint) / MANIFEST).exists()
            new_job = find_job(settings)
            assert new_job is not None and new_job["jid"] != job_id
            job_id = new_job["jid"]
            assert _scoring_parallelism(settings, job_id) == parallelism

        # Over the whole run, across both upgrades: each event scored exactly once.
        everything = collect(
            settings, settings.topic_predictions, "prediction", lambda r: True, len(sent),
            timeout_s=60,
        )  # fmt: skip
        counts = Counter(p["event_id"] for p in everything)
        assert set(counts) == {e["event_id"] for e in sent}
        assert max(counts.values()) == 1
    finally:
        cancel(settings, job_id)


def flink_path(savepoint: str):  # type: ignore[no-untyped-def]
    from pathlib import Path
    from urllib.parse import urlparse

    return Path(urlparse(savepoint).path)
