"""End to end on the real stack: Kafka → PyFlink (RocksDB) → Redis + LightGBM → Kafka.

One exactly-once run checks every stage: each valid on-time event gets exactly one prediction
(read_committed: none missing, no duplicates), each bad record becomes a dead letter with the
right reason and its original bytes, late events follow the stated rule, Redis holds the same
features as the offline computation of the same events, and checkpoints complete.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streamscore.config import Settings
from streamscore.feature_store import connect, read_features
from streamscore.job import thread_priority
from streamscore.jobcontrol import checkpoints, find_job
from streamscore.kafka_io import client_config
from streamscore.model.decisions import CostModel
from streamscore.model.registry import resolve
from streamscore.model.scorer import FALLBACK_VERSION
from streamscore.produce import malform
from streamscore.serde import Codec
from tests.e2e.helpers import (
    RunJob,
    collect,
    expected_store,
    job_metric_total,
    job_metrics_text,
    recent_events,
    send,
    taskmanager_pid_of,
)

pytestmark = pytest.mark.e2e

EXPECTED_REASON = {
    "garbage": "decode_error",
    "truncated": "decode_error",
    "negative_amount": "invalid:amount",
    "bad_currency": "invalid:currency",
    "empty_user": "invalid:user_id",
    "future": "invalid:event_time",
}


def test_exactly_once_scoring_end_to_end(run_job: RunJob) -> None:
    settings = run_job()
    job = find_job(settings)
    assert job is not None
    _run_scenario(settings, str(job["jid"]))
    _check_scoring_thread_policy(settings, str(job["jid"]))
    _check_taskmanager_heap_touched(settings, str(job["jid"]))


def _realtime_allowed() -> bool:
    """Whether this machine lets a process take SCHED_RR at priority 1 (as the TaskManagers,
    started by this user, would), tried in a child process."""
    probe = "import os; os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def _check_scoring_thread_policy(settings: Settings, job_id: str) -> None:
    """After checkpoints (the scenario waited for them), the scoring task thread, its
    interpreter's threads (the feature store's writer; the metrics endpoint, which whichever
    operator of that TaskManager opened first started, perhaps an earlier job's learner) and the
    Kafka source threads that feed it run under SCHED_RR where the machine allows it, and no
    other thread of its TaskManager (job/thread_priority.py); elsewhere every thread keeps the
    normal policy."""
    assert settings.scoring_thread_realtime_priority > 0 and settings.scoring_feeders_realtime
    pid = taskmanager_pid_of(settings, job_id, "score")
    realtime = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            policy = thread_priority.policy_of(int(task.name))
            name = (task / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
        if policy == os.SCHED_RR:
            realtime.append(name)
    if not _realtime_allowed():
        assert realtime == [], realtime
        return
    # Linux keeps 15 characters of a thread's name: a task's is its vertex's, cut; our own
    # threads name themselves (os_thread_names.py); a source reader's fetcher is "Source Data
    # Fetcher for ...".
    interpreter = sorted(n for n in realtime if not n.startswith("Source"))
    assert interpreter in (
        ["decode-features", "store-writer"],
        ["decode-features", "metrics-http", "store-writer"],
    ), realtime
    feeders = [n for n in realtime if n.startswith("Source")]
    # The scoring TaskManager's two sources (events and labels; control) and the fetchers of
    # their readers (the learner's outcomes source runs in the learner's TaskManager).
    sources = sorted(n for n in feeders if n != "Source Data Fet")
    assert sources == ["Source: raw_con", "Source: raw_inp"], realtime
    assert "Source Data Fet" in feeders, realtime


def _check_taskmanager_heap_touched(settings: Settings, job_id: str) -> None:
    """The scoring TaskManager's JVM touched its whole heap at start
    (``flink_taskmanager_pretouch``): it holds at least its heap in memory, which after the
    scenario's few thousand events it would not otherwise (about 0.5 GB resident at start
    without the flag, against 1.1 GB of heap; bench/HISTORY.md, fifty-second session)."""
    assert settings.flink_taskmanager_pretouch
    pid = taskmanager_pid_of(settings, job_id, "score")
    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert "-XX:+AlwaysPreTouch" in arguments, arguments
    (heap,) = [int(a.removeprefix("-Xms")) for a in arguments if a.startswith("-Xms")]
    status = Path(f"/proc/{pid}/status").read_text()
    resident = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert resident is not None, status
    assert int(resident.group(1)) * 1024 >= heap, (resident.group(1), heap)


def _written_ahead(settings: Settings) -> float:
    """Users written ahead of barriers so far, by every scoring interpreter (their counters
    outlive a job: compare before and after)."""
    return job_metric_total(settings, "streamscore_state_written_ahead_total")


def _flushed_ahead(settings: Settings) -> float:
    """RocksDB memtable flushes started ahead of barriers so far (``ScoringOperator.flush_ahead``,
    through ``StateWrites.startFlush`` and Flink's own RocksDB backend)."""
    return job_metric_total(settings, "streamscore_state_flushed_ahead_total")


def _run_scenario(settings: Settings, job_id: str) -> None:
    written_ahead_before = _written_ahead(settings)
    flushed_ahead_before = _flushed_ahead(settings)
    events_codec = Codec("event")
    valid = recent_events(seed=101, count=1500, users=60)
    rng = random.Random(7)
    malformed: dict[bytes, str] = {}
    for i, kind in enumerate(sorted(set(EXPECTED_REASON) - {"future"}) * 4):
        malformed[malform(events_codec, valid[i], kind, random.Random(i))] = kind
    # Stamped an hour ahead of the clock: refused, or it would drag the watermark forward.
    future = {**valid[0], "event_id": "from-the-future"}
    future["event_time"] = valid[-1]["event_time"] + 3_600_000
    malformed[events_codec.encode(future)] = "future"
    records = [(e["user_id"].encode(), events_codec.encode(e)) for e in valid]
    for payload in malformed:
        records.insert(rng.randrange(len(records)), (b"bad", payload))
    send(settings, records)

    valid_ids = {e["event_id"] for e in valid}
    predictions = collect(
        settings,
        settings.topic_predictions,
        "prediction",
        lambda r: r["event_id"] in valid_ids,
        len(valid_ids),
        timeout_s=180,
    )
    ids = Counter(p["event_id"] for p in predictions)
    assert set(ids) == valid_ids, f"missing {len(valid_ids - set(ids))} predictions"
    assert max(ids.values()) == 1, "duplicate predictions"

    model = resolve(settings.models_dir)
    costs = CostModel.from_settings(settings)
    amounts = {e["event_id"]: e["amount"] for e in valid}
    for p in predictions:
        assert p["model_version"] == model.version
        assert p["feature_set_version"] == "fs-v1"
        assert p["degraded"] == []
        # The decision with the lowest expected cost, given the score and the amount.
        assert p["amount"] == amounts[p["event_id"]]
        assert p["decision"] == costs.decide(p["score"], p["amount"])
        assert p["arm"] == "champion"
        assert p["ingest_time"] <= p["scored_time"]

    # Dead letters: the reason and the exact original bytes of every malformed record.
    dead = collect(
        settings,
        settings.topic_dead_letters,
        "dead_letter",
        lambda r: r["original"] in malformed,
        len(malformed),
        timeout_s=60,
    )
    assert len(dead) == len(malformed)
    for letter in dead:
        assert letter["reason"] == EXPECTED_REASON[malformed[letter["original"]]]
        assert letter["source_topic"] == settings.topic_events and letter["source_offset"] >= 0

    # Late events, produced once the watermark is at about now - out-of-orderness: one beyond
    # the allowed lateness (dead letter "late"), one within it (scored, counted as late).
    time.sleep(1.5)
    now = int(time.time() * 1000)
    too_late = {**valid[0], "event_id": "late-dropped", "event_time": now - 10 * 60_000}
    late_ok = {
        **valid[1],
        "event_id": "late-scored",
        "event_time": now - settings.max_out_of_orderness_ms - 30_000,
    }
    send(settings, [(e["user_id"].encode(), events_codec.encode(e)) for e in (too_late, late_ok)])
    late_letters = collect(
        settings,
        settings.topic_dead_letters,
        "dead_letter",
        lambda r: r["reason"] == "late",
        1,
        timeout_s=60,
    )
    assert [events_codec.decode(x["original"])["event_id"] for x in late_letters] == [
        "late-dropped"
    ]
    scored_late = collect(
        settings,
        settings.topic_predictions,
        "prediction",
        lambda r: r["event_id"] == "late-scored",
        1,
        timeout_s=60,
    )
    assert len(scored_late) == 1

    # Redis holds, per user, the features of the newest event, equal to the offline computation.
    expected = expected_store(valid + [late_ok])
    client = connect(settings)
    for user, (event_id, features) in expected.items():
        stored = read_features(client, settings.redis_key_prefix, user)
        assert stored is not None, user
        assert stored["event_id"] == event_id
        assert stored["feature_set"] == "fs-v1"
        assert stored["features"] == pytest.approx(features, rel=1e-9)
        assert 0 < client.ttl(f"{settings.redis_key_prefix}{user}") <= settings.feature_ttl_s

    # Outputs carry the broker's append time, never a rejected event timestamp.
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient(client_config(settings))
    for topic in (settings.topic_predictions, settings.topic_dead_letters):
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        config = admin.describe_configs([resource])[resource].result()
        assert config["message.timestamp.type"].value == "LogAppendTime"

    history = checkpoints(settings, job_id)
    completed = [c["id"] for c in history["history"] if c["status"] == "COMPLETED"]
    assert completed, history["counts"]
    # A checkpoint triggered while the tasks are still starting is declined; after the first
    # completed one, none may fail.
    failures = [
        (c["id"], c.get("failure_message"))
        for c in history["history"]
        if c["status"] == "FAILED" and c["id"] > min(completed)
    ]
    assert not failures, failures

    metrics = job_metrics_text(settings)
    assert 'streamscore_late_events_total{handling="dead_letter"}' in metrics
    assert 'streamscore_dead_letters_total{reason="decode_error"}' in metrics
    # The users' state was written ahead of barriers (conftest's state_write_ahead_ms); the
    # chaos and upgrade tests restore from state written so.
    assert _written_ahead(settings) > written_ahead_before
    # Once caught up, each interval's write-ahead started a flush of RocksDB's memtables: the
    # Java side reached the backend's database (a Flink upgrade that moves it shows here).
    assert _flushed_ahead(settings) > flushed_ahead_before
    # The champion's trees run compiled (model_compile_trees): compiled on the TaskManager and
    # checked there to score as LightGBM does (model/compiled_forest.py).
    champion = resolve(settings.models_dir).version
    compiled = [
        line
        for line in metrics.splitlines()
        if line.startswith("streamscore_model_compiled{") and 'role="champion"' in line
    ]
    assert compiled == [
        f'streamscore_model_compiled{{model_version="{champion}",role="champion"}} 1.0'
    ], [line for line in metrics.splitlines() if "model_compiled" in line]


def _predictions_of(
    settings: Settings, seed: int, count: int, users: int
) -> tuple[set[str], list[dict[str, Any]]]:
    """Send valid events to a running job, return (their ids, its predictions)."""
    codec = Codec("event")
    valid = recent_events(seed=seed, count=count, users=users)
    send(settings, [(e["user_id"].encode(), codec.encode(e)) for e in valid])
    ids = {e["event_id"] for e in valid}
    predictions = collect(
        settings,
        settings.topic_predictions,
        "prediction",
        lambda r: r["event_id"] in ids,
        len(ids),
        timeout_s=120,
        read_committed=settings.delivery_guarantee == "exactly-once",
    )
    return ids, predictions


def test_at_least_once_mode_delivers_every_prediction(run_job: RunJob) -> None:
    settings = run_job(delivery_guarantee="at-least-once")
    ids, predictions = _predictions_of(settings, seed=202, count=400, users=30)
    assert {p["event_id"] for p in predictions} == ids


def test_degrades_instead_of_stalling_without_model_and_redis(
    run_job: RunJob, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No model to load and no Redis to write to: every event is still scored (by the fallback
    rules) and each prediction says what was missing."""
    settings = run_job(
        models_dir=str(tmp_path_factory.mktemp("no-models")),
        redis_port="1",  # nothing listens there
        delivery_guarantee="at-least-once",
    )
    ids, predictions = _predictions_of(settings, seed=303, count=300, users=20)
    assert {p["event_id"] for p in predictions} == ids
    assert {p["model_version"] for p in predictions} == {FALLBACK_VERSION}
    assert all("model" in p["degraded"] for p in predictions)
    assert any("redis" in p["degraded"] for p in predictions)
