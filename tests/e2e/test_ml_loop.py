"""The ML loop on the real stack: delayed labels joined in the job, the online challenger, a
promotion without restart, a TaskManager killed while the challenger learns, a concept drift.

One job, its own topics, events and labels paced in real time with a concept drift injected
mid-run. Checked:
* every valid event has exactly one prediction (read_committed) across the promotion and the
  kill; the job id never changes; predictions after the switch name the new version;
* every label produced is either joined (an outcome) or a dead letter with its reason;
* the challenger's prequential AUC after the drift beats the champion's;
* the learner is exactly once: its published snapshot equals a model learned offline from the
  first N committed outcomes, in order (one label lost or learned twice would change it).
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from streamscore.cli import main as cli
from streamscore.config import Settings
from streamscore.features.definitions import FEATURE_SET
from streamscore.generator import Drift, GeneratorConfig, TransactionGenerator
from streamscore.job.state import TIMER_STEP_MS
from streamscore.jobcontrol import find_job
from streamscore.kafka_io import new_producer, read_messages, send_record
from streamscore.model.challenger import load_snapshot, new_learner
from streamscore.model.control import assign_record, publish
from streamscore.model.loading import load_for_job
from streamscore.model.registry import list_versions
from streamscore.model.train import TrainConfig, train_from_generator
from streamscore.monitoring.prom_api import PrometheusClient
from streamscore.quality.metrics import roc_auc
from streamscore.serde import Codec
from streamscore.stack import kafka
from streamscore.stack import stack as stack_module
from tests.e2e.helpers import (
    RunJob,
    collect,
    increase,
    job_metric_by_process,
    job_metric_total,
    recent_events,
    taskmanager_pid_of,
)

pytestmark = pytest.mark.e2e
log_figures = logging.getLogger(__name__)
# The label join's reads of Flink's state that found no entry (job/state.py JoinMap.get).
ABSENT_READS = 'streamscore_join_state_reads_total{found="false"}'
# Reads of a user's value left out because the user was new to the operator (job/state.py
# KnownUsers; the list of users with state comes from the JVM when the operator opens).
SKIPPED_USER_READS = 'streamscore_state_reads_skipped_total{state="user"}'

RATE = 250  # events per second, in event time and on the wall clock
SECONDS = 100
DRIFT_AT_S = 40
PROMOTE_AT_S = 12
KILL_AT_S = 30
LABEL_DELAY_MS = 2_000
HORIZON_MS = 60_000


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two versions trained before the drift (the second on other users), both registered."""
    models = tmp_path_factory.mktemp("ml-loop-models")
    for seed in (31, 32):
        train_from_generator(
            models,
            TrainConfig(events=30_000, num_boost_round=40),
            GeneratorConfig(users=300, seed=seed, events_per_second=RATE),
        )
        time.sleep(1.1)  # versions are named by the second
    return models


def _traffic(settings: Settings, seed: int, log: dict[str, Any]) -> None:
    _traffic_for(settings, seed, log, SECONDS, drift_at_s=DRIFT_AT_S)


def _traffic_for(
    settings: Settings,
    seed: int,
    log: dict[str, Any],
    seconds: float,
    drift_at_s: int | None = None,
) -> None:
    """Events paced by event time; each label LABEL_DELAY_MS later, with the bad cases mixed in:
    some labels twice, some past the horizon, some events never labelled."""
    events, labels = Codec("event"), Codec("label")
    producer = new_producer(settings)
    start_ms = int(time.time() * 1000)
    generator = TransactionGenerator(
        GeneratorConfig(
            users=300,
            seed=seed,
            events_per_second=RATE,
            start_ms=start_ms,
            # ≈ 3 % fraud (the default's ≈ 1 % gives ≈ 100 frauds after the drift: AUCs whose
            # standard error is about the gap being tested).
            fraud_burst_probability=0.012,
            drifts=(Drift("concept", drift_at_s),) if drift_at_s is not None else (),
        )
    )
    due: list[tuple[int, bytes, bytes]] = []  # (wall ms, key, label)
    started = time.monotonic()
    for i, tx in enumerate(generator):
        event = tx.event
        offset_s = (event["event_time"] - start_ms) / 1000.0
        if offset_s >= seconds:
            break
        wait = offset_s - (time.monotonic() - started)
        if wait > 0:
            time.sleep(wait)
        key = str(event["user_id"]).encode()
        send_record(producer, settings.topic_events, key, events.encode(event), event["event_time"])
        log["events"].append(event)
        if i % 499 == 7:
            continue  # never labelled: expires in the job, silently by design
        label_time = int(event["event_time"]) + LABEL_DELAY_MS
        if i % 997 == 11:
            label_time = int(event["event_time"]) + HORIZON_MS + 5_000
            log["expected"]["label:expired"] += 1
        label = labels.encode(
            {"event_id": event["event_id"], "user_id": event["user_id"],
             "is_fraud": tx.is_fraud, "label_time": label_time}
        )  # fmt: skip
        wall_due = int(time.time() * 1000) + LABEL_DELAY_MS
        due.append((wall_due, key, label))
        if i % 991 == 13:
            due.append((wall_due + 500, key, label))
            log["expected"]["label:duplicate"] += 1
        if i % 1009 == 17:  # a label of an event nobody sent
            ghost = labels.encode(
                {"event_id": f"ghost-{i}", "user_id": event["user_id"], "is_fraud": False,
                 "label_time": label_time}
            )  # fmt: skip
            due.append((wall_due, key, ghost))
            log["expected"]["label:unknown_event"] += 1
        if i % 1013 == 19:
            due.append((wall_due, key, b"\x02garbage"))
            log["expected"]["label:decode_error"] += 1
        now = int(time.time() * 1000)
        due.sort(key=lambda d: d[0])
        while due and due[0][0] <= now:
            _, k, value = due.pop(0)
            send_record(producer, settings.topic_labels, k, value)
            log["labels_sent"] += 1
    for _, k, value in sorted(due, key=lambda d: d[0]):
        send_record(producer, settings.topic_labels, k, value)
        log["labels_sent"] += 1
    assert producer.flush(30) == 0


def _move_the_watermark_past_the_last_wait(settings: Settings, last: dict[str, Any]) -> None:
    """The events end, and with them the watermark: a label of an event nobody sent stays
    parked until the watermark passes its wait (allowed lateness + out-of-orderness after its
    label time), which needs later events. One event of a user of its own, stamped past the
    last label's wait and the timer step, moves it there (its prediction is not counted)."""
    wait_ms = settings.allowed_lateness_ms + settings.max_out_of_orderness_ms
    closing = {
        **last,
        "user_id": "u-closing",
        "event_id": f"closing-{last['event_id']}",
        "event_time": int(last["event_time"]) + LABEL_DELAY_MS + wait_ms
        + TIMER_STEP_MS + settings.max_out_of_orderness_ms + 2_000,
    }  # fmt: skip
    producer = new_producer(settings)
    send_record(producer, settings.topic_events, b"u-closing", Codec("event").encode(closing),
                closing["event_time"])  # fmt: skip
    assert producer.flush(30) == 0


def test_labels_challenger_promotion_and_failover(
    run_job: RunJob, two_models: Path, stack: Settings
) -> None:
    run = uuid.uuid4().hex[:8]
    topics = {
        f"topic_{name}": f"ml-{run}-{name}"
        for name in ("events", "labels", "predictions", "dead_letters", "control", "outcomes")
    }
    v1, v2 = list_versions(two_models)
    overrides = {
        **topics,
        "outcomes_partitions": "1",  # the learner's input order is then the topic's order
        "models_dir": str(two_models),
        "model_version": v1,
        "label_horizon_ms": str(HORIZON_MS),
        "challenger_publish_every": "100",
    }
    kafka.create_topics(stack.with_overrides(overrides))
    settings = run_job(**overrides)
    job = find_job(settings)
    assert job is not None
    job_id = job["jid"]
    # By process: the kill below may take counters with it (helpers.increase).
    absent_reads_before = job_metric_by_process(settings, ABSENT_READS)
    skipped_before = job_metric_by_process(settings, SKIPPED_USER_READS)

    log: dict[str, Any] = {"events": [], "labels_sent": 0, "expected": Counter()}
    sender = threading.Thread(target=_traffic, args=(settings, 4242, log), daemon=True)
    started = time.monotonic()
    sender.start()

    # Promote v2 (registered by train, v1 is champion) through the CLI, mid-stream.
    time.sleep(PROMOTE_AT_S)
    cli_settings = {**overrides, "kafka_port": settings.kafka_port, "job_name": settings.job_name}
    sets = [a for k, v in cli_settings.items() for a in ("--set", f"{k}={v}")]
    promoted = CliRunner().invoke(cli, [*sets, "models", "promote", "2"])
    assert promoted.exit_code == 0, promoted.output
    promoted_at_ms = int(time.time() * 1000)

    # Kill -9 the TaskManager that runs the learner, then start it again.
    time.sleep(max(0.0, KILL_AT_S - (time.monotonic() - started)))
    os.kill(taskmanager_pid_of(settings, job_id, "learn-challenger"), signal.SIGKILL)
    time.sleep(3)
    stack_module.up(settings)
    sender.join(timeout=SECONDS + 60)
    assert not sender.is_alive()
    _move_the_watermark_past_the_last_wait(settings, log["events"][-1])

    events = log["events"]
    ids = {e["event_id"] for e in events}
    predictions = collect(
        settings, settings.topic_predictions, "prediction", lambda r: r["event_id"] in ids,
        len(ids), timeout_s=240,
    )  # fmt: skip
    counts = Counter(p["event_id"] for p in predictions)
    assert set(counts) == ids, f"missing {len(ids - set(counts))} predictions"
    assert max(counts.values()) == 1, "duplicate predictions"
    job_after = find_job(settings)
    assert job_after is not None and job_after["jid"] == job_id

    # The switch: nothing scored by v2 before the command, nothing by v1 once v2 is in use.
    versions = sorted((p["scored_time"], p["model_version"]) for p in predictions)
    first_v2 = next(t for t, v in versions if v == v2)
    assert first_v2 >= promoted_at_ms - 1_000
    assert all(v == v1 for t, v in versions if t < promoted_at_ms - 1_000)
    assert all(v == v2 for t, v in versions if t > first_v2 + 5_000)

    # Labels: joined + dead-lettered = produced.
    outcomes = [
        Codec("outcome").decode(m.value())
        for m in read_messages(settings, settings.topic_outcomes, from_beginning=True,
                               idle_timeout_s=10)
    ]  # fmt: skip
    label_dead = Counter(
        d["reason"]
        for d in collect(
            settings, settings.topic_dead_letters, "dead_letter",
            lambda r: r["reason"].startswith("label:"), sum(log["expected"].values()),
            timeout_s=120,
        )
    )  # fmt: skip
    assert len({o["event_id"] for o in outcomes}) == len(outcomes)
    assert len(outcomes) + sum(label_dead.values()) == log["labels_sent"]
    for reason, expected in log["expected"].items():
        assert label_dead[reason] == expected, (reason, label_dead)
    # Each label of an event nobody sent found no entry waiting nor in the pending cache, read
    # Flink's state and found nothing there either (streamscore_join_state_reads_total).
    absent_reads = increase(absent_reads_before, job_metric_by_process(settings, ABSENT_READS))
    assert absent_reads >= log["expected"]["label:unknown_event"] > 0
    # The users' first events were known to be new without a read. (The labels above, joined
    # to events scored before the TaskManager's kill, show that the users restored with state
    # were still read: taken for new, their labels would have found no pending entry.)
    assert increase(skipped_before, job_metric_by_process(settings, SKIPPED_USER_READS)) > 0

    # After the drift (once the challenger had time to adapt), it beats the champion.
    drift_ms = events[0]["event_time"] + (DRIFT_AT_S + 20) * 1000
    late = [o for o in outcomes if o["event_time"] >= drift_ms and o["challenger_score"]]
    y = np.array([o["is_fraud"] for o in late], dtype=np.int8)
    assert y.sum() >= 20, "too few frauds after the drift to compare"
    champion_auc = roc_auc(y, np.array([o["score"] for o in late]))
    challenger_auc = roc_auc(y, np.array([o["challenger_score"] for o in late]))
    log_figures.info(
        "after the drift: challenger AUC %.3f, champion AUC %.3f (%d labels, %d fraud); "
        "labels sent %d = %d joined + %s dead letters",
        challenger_auc, champion_auc, len(late), int(y.sum()), log["labels_sent"],
        len(outcomes), dict(label_dead),
    )  # fmt: skip
    assert challenger_auc > champion_auc, (challenger_auc, champion_auc)

    # The same drift, seen by ADWIN in the learner on the champion's labelled error (the
    # learner restarted after the kill, before the drift), as Prometheus scraped it.
    detections = PrometheusClient(settings.prometheus_url).query(
        "max(streamscore_concept_drift_detections_total)"
    )
    log_figures.info("ADWIN detections after the concept drift: %s", detections)
    assert detections and detections[0].value >= 1

    # Exactly-once learning across the kill: the last snapshot is the offline model of the
    # first N committed outcomes.
    snapshots = [
        Codec("control").decode(m.value())
        for m in read_messages(settings, settings.topic_control, from_beginning=True,
                               idle_timeout_s=5)
    ]  # fmt: skip
    last = [s for s in snapshots if s["kind"] == "CHALLENGER"][-1]
    learned = int(last["challenger_version"].rsplit("-", 1)[1])
    assert learned >= 1_000
    published = load_snapshot(last["challenger_model"])
    offline = new_learner()
    for outcome in outcomes[:learned]:
        offline.learn_one(dict(zip(FEATURE_SET.feature_names, outcome["features"])),
                          outcome["is_fraud"])  # fmt: skip
    published_lr = published["LogisticRegression"]
    offline_lr = offline["LogisticRegression"]
    assert dict(published_lr.weights) == dict(offline_lr.weights)
    assert published_lr.intercept == offline_lr.intercept
    rng = random.Random(0)
    probe = rng.sample(outcomes, 20)
    for outcome in probe:
        x = dict(zip(FEATURE_SET.feature_names, outcome["features"]))
        assert published.predict_proba_one(x) == offline.predict_proba_one(x)

    # The point-in-time training set of the same topics, registered as a new version.
    trained = CliRunner().invoke(cli, [*sets, "train", "--from-topics"])
    assert trained.exit_code == 0, trained.output
    newest = list_versions(two_models)[-1]
    assert newest not in (v1, v2)
    source = json.loads((two_models / newest / "metadata.json").read_text())["training_data"]
    assert source["topics"] == [settings.topic_events, settings.topic_labels]
    assert source["rows"] >= len(outcomes) * 0.9  # the labelled events, late ones left out


@pytest.fixture(scope="module")
def bad_candidate(two_models: Path) -> str:
    """A version that learned the opposite (trained on flipped labels), so it declines honest
    customers and approves fraud: clearly worse in money; its local name. (Shuffled labels are
    not enough: with a constant score the cost rule still reviews the big tickets, where the
    fraud money is.)"""
    from streamscore.model.dataset import build_training_set
    from streamscore.model.train import train

    generator = TransactionGenerator(GeneratorConfig(users=300, seed=33, events_per_second=RATE))
    data = build_training_set((t.event, t.is_fraud) for t in generator.take(20_000))
    data.labels[:] = 1 - data.labels
    time.sleep(1.1)
    directory = train(data, TrainConfig(num_boost_round=20), two_models, {"source": "shuffled"})
    return directory.name


def test_a_bad_canary_is_rolled_back_automatically(
    run_job: RunJob, two_models: Path, bad_candidate: str, stack: Settings
) -> None:
    """A canary of a model that learned nothing, on half of the users: the learner sees its net
    value per label fall behind the champion's and rolls it back by itself; every event is still
    scored exactly once, by the arm its user belongs to."""
    run = uuid.uuid4().hex[:8]
    topics = {
        f"topic_{name}": f"canary-{run}-{name}"
        for name in ("events", "labels", "predictions", "dead_letters", "control", "outcomes")
    }
    v1 = list_versions(two_models)[0]
    overrides = {
        **topics,
        "models_dir": str(two_models),
        "model_version": v1,
        "rollback_min_labels": "300",
        "rollback_margin": "0.05",
    }
    kafka.create_topics(stack.with_overrides(overrides))
    settings = run_job(**overrides)
    cli_settings = {**overrides, "kafka_port": settings.kafka_port, "job_name": settings.job_name}
    sets = [a for k, v in cli_settings.items() for a in ("--set", f"{k}={v}")]
    # models promote 1 makes sure v1 is the registry's champion whatever an earlier test did.
    canary = ["models", "canary", bad_candidate, "--percent", "50"]
    for command in (["models", "promote", "1"], canary):
        result = CliRunner().invoke(cli, [*sets, *command])
        assert result.exit_code == 0, result.output
    canary_at_ms = int(time.time() * 1000)

    log: dict[str, Any] = {"events": [], "labels_sent": 0, "expected": Counter()}
    _traffic_for(settings, 5151, log, seconds=45)
    ids = {e["event_id"] for e in log["events"]}
    predictions = collect(
        settings, settings.topic_predictions, "prediction", lambda r: True, len(ids),
        timeout_s=180,
    )  # fmt: skip
    counts = Counter(p["event_id"] for p in predictions)
    assert set(counts) == ids and max(counts.values()) == 1

    commands = [
        Codec("control").decode(m.value())
        for m in read_messages(settings, settings.topic_control, from_beginning=True,
                               idle_timeout_s=5)
    ]  # fmt: skip
    rollbacks = [c for c in commands if c["kind"] == "ASSIGN" and c["reason"] == "auto-rollback"]
    assert len(rollbacks) == 1, [c["reason"] for c in commands if c["kind"] == "ASSIGN"]
    rollback = rollbacks[0]
    assert rollback["candidate_version"] is None and rollback["champion_version"] == v1
    candidate = [p for p in predictions if p["arm"] == "candidate"]
    assert candidate, "the canary never scored"
    assert {p["model_version"] for p in candidate} == {bad_candidate}
    assert min(p["scored_time"] for p in candidate) >= canary_at_ms - 1_000
    # Once the rollback is applied (a checkpoint after it is sent), only the champion scores.
    assert all(
        p["arm"] == "champion" and p["model_version"] == v1
        for p in predictions
        if p["scored_time"] > rollback["issued_at"] + 3 * settings.checkpoint_interval_ms
    )
    log_figures.info(
        "canary: %d candidate predictions, rolled back %.1f s after the canary started",
        len(candidate), (rollback["issued_at"] - canary_at_ms) / 1000,
    )  # fmt: skip


def _send_now(settings: Settings, seed: int, count: int) -> set[str]:
    """``count`` valid events stamped from now on; their ids."""
    codec = Codec("event")
    now = int(time.time() * 1000)
    txs = TransactionGenerator(
        GeneratorConfig(users=50, seed=seed, events_per_second=200, start_ms=now)
    ).take(count)
    producer = new_producer(settings)
    for tx in txs:
        send_record(
            producer, settings.topic_events, str(tx.event["user_id"]).encode(),
            codec.encode(tx.event), tx.event["event_time"],
        )  # fmt: skip
    assert producer.flush(30) == 0
    return {str(tx.event["event_id"]) for tx in txs}


def test_the_assignment_survives_a_resubmission_from_a_savepoint(
    two_models: Path, stack: Settings, job_settings: dict[str, str]
) -> None:
    """Promote v2, stop the job with a savepoint, resubmit it from the savepoint with v1 as the
    submit-time model: it still scores with v2. The control source resumes after the ASSIGN, so
    v2 can only come from the restored broadcast state."""
    from streamscore.jobcontrol import cancel, stop_with_savepoint, submit
    from streamscore.model.control import assign_record, publish
    from streamscore.model.loading import ModelBundle
    from tests.e2e.helpers import as_overrides

    run = uuid.uuid4().hex[:8]
    v1, v2 = list_versions(two_models)[:2]
    overrides = {
        **job_settings,
        **{f"topic_{n}": f"sp-{run}-{n}" for n in ("events", "labels", "predictions",
                                                   "dead_letters", "control", "outcomes")},
        "models_dir": str(two_models),
        "model_version": v1,
    }  # fmt: skip
    settings = Settings().with_overrides(overrides)
    kafka.create_topics(settings)
    job_id = submit(settings, as_overrides(overrides))
    try:
        bundle = ModelBundle.load(two_models, v2)
        publish(settings, assign_record(bundle, None, 0, "promote", job_name=settings.job_name))
        time.sleep(5)
        before = _send_now(settings, 1, 200)
        scored = collect(settings, settings.topic_predictions, "prediction",
                         lambda r: r["event_id"] in before, len(before), timeout_s=120)  # fmt: skip
        assert {p["model_version"] for p in scored} == {v2}

        savepoint = stop_with_savepoint(settings, job_id)
        job_id = submit(settings, as_overrides(overrides), from_savepoint=savepoint)
        after = _send_now(settings, 2, 200)
        scored = collect(settings, settings.topic_predictions, "prediction",
                         lambda r: r["event_id"] in after, len(after), timeout_s=120)  # fmt: skip
        assert {p["event_id"] for p in scored} == after
        assert {p["model_version"] for p in scored} == {v2}
    finally:
        cancel(settings, job_id)


def _labels_total(settings: Settings, outcome: str) -> float:
    """``streamscore_labels_total{outcome=...}``, all TaskManagers together."""
    return job_metric_total(settings, f'streamscore_labels_total{{outcome="{outcome}"}}')


def _one_user_job(
    job_settings: dict[str, str], run_job: RunJob, prefix: str, **extra: str
) -> Settings:
    """A job on topics of its own (``<prefix>-<name>``), one partition each, so one user's
    records keep their order: a 20 s label horizon and 1 s source idleness, for tests that
    walk one user's timers by hand."""
    overrides = {
        **{f"topic_{n}": f"{prefix}-{n}" for n in ("events", "labels", "predictions",
                                                   "dead_letters", "control", "outcomes")},
        **{f"{n}_partitions": "1" for n in ("events", "labels", "predictions", "outcomes")},
        "label_horizon_ms": "20000",
        "source_idleness_ms": "1000",
        **extra,
    }  # fmt: skip
    kafka.create_topics(Settings().with_overrides({**job_settings, **overrides}))
    return run_job(**overrides)


def test_an_outcome_dropped_at_the_pending_cap_makes_its_label_a_dead_letter_saying_so(
    job_settings: dict[str, str], run_job: RunJob
) -> None:
    """One user, a cap of 3 unlabelled events: when the user's timer fires with 5 pending, the
    two oldest are dropped (counted). Their labels, sent afterwards, are dead letters
    ``label:pending_dropped`` at once, not parked and later called ``label:unknown_event``;
    a kept event's label is still joined."""
    run = uuid.uuid4().hex[:8]
    settings = _one_user_job(job_settings, run_job, f"cap-{run}", max_pending_labels_per_user="3")
    dropped_before = _labels_total(settings, "dropped_pending")

    # Event times on the 10 s grid the user's timer is rounded to: e0's pending outcome is due
    # at t0 + 20 s, the timer fires there once e5 moves the watermark past it. By then e0 is
    # expired and e1..e5 are pending: 5 > 3, so e1 and e2 (the oldest) are dropped.
    t0 = (int(time.time() * 1000) // 10_000) * 10_000 - 120_000
    offsets_s = (0, 11, 12, 13, 14, 20 + settings.max_out_of_orderness_ms / 1000 + 2)
    codec = Codec("event")
    events = []
    for i, offset_s in enumerate(offsets_s):
        event = recent_events(seed=70 + i, count=1, users=1)[0]
        event.update(user_id="u-cap", event_id=f"cap-{run}-{i}",
                     event_time=t0 + int(offset_s * 1000))  # fmt: skip
        events.append(event)
    producer = new_producer(settings)
    for event in events:
        send_record(producer, settings.topic_events, b"u-cap", codec.encode(event),
                    event["event_time"])  # fmt: skip
    assert producer.flush(30) == 0
    ids = {e["event_id"] for e in events}
    scored = collect(settings, settings.topic_predictions, "prediction",
                     lambda p: p["event_id"] in ids, len(ids), timeout_s=120)  # fmt: skip
    assert {p["event_id"] for p in scored} == ids

    deadline = time.monotonic() + 60
    while _labels_total(settings, "dropped_pending") - dropped_before < 2:
        assert time.monotonic() < deadline, "the timer never dropped the pending outcomes"
        time.sleep(1)
    assert _labels_total(settings, "dropped_pending") - dropped_before == 2

    labels = Codec("label")
    labelled = [events[1], events[2], events[3]]  # two dropped, one still pending
    for event in labelled:
        label = {"event_id": event["event_id"], "user_id": "u-cap", "is_fraud": True,
                 "label_time": event["event_time"] + 5_000}  # fmt: skip
        send_record(producer, settings.topic_labels, b"u-cap", labels.encode(label),
                    label["label_time"])  # fmt: skip
    assert producer.flush(30) == 0

    dead = collect(settings, settings.topic_dead_letters, "dead_letter",
                   lambda d: d["reason"].startswith("label:"), 2, timeout_s=60)  # fmt: skip
    assert sorted((labels.decode(d["original"])["event_id"], d["reason"]) for d in dead) == [
        (events[1]["event_id"], "label:pending_dropped"),
        (events[2]["event_id"], "label:pending_dropped"),
    ]
    joined = collect(settings, settings.topic_outcomes, "outcome",
                     lambda o: o["event_id"] in ids, 1, timeout_s=60)  # fmt: skip
    assert [o["event_id"] for o in joined] == [events[3]["event_id"]]


def _control_accepted(settings: Settings, kind: str) -> float:
    """``streamscore_control_records_total{kind=..., result="accepted"}``, all TaskManagers."""
    return job_metric_total(
        settings, f'streamscore_control_records_total{{kind="{kind}",result="accepted"}}'
    )


def test_timers_fire_after_a_command_came_while_the_events_were_quiet(
    job_settings: dict[str, str], run_job: RunJob
) -> None:
    """A command on the control topic carries no event time, whenever it comes. It comes here
    while the events are idle; the events that follow are on time and scored, an event's
    unlabelled outcome expires at its label horizon, and a label of an event nobody sent,
    parked after the command, becomes a dead letter once the watermark has passed its wait.

    It failed while the control source carried a watermark at the end of time: the command made
    that the scorer's watermark, the later events were dead-lettered as late, and timers
    registered after it never fired."""
    run = uuid.uuid4().hex[:8]
    settings = _one_user_job(job_settings, run_job, f"quiet-{run}")
    expired_before = _labels_total(settings, "expired_unlabelled")
    accepted_before = _control_accepted(settings, "ASSIGN")

    # Event times in the past, on the 10 s grid timers are rounded to: e0's outcome is due at
    # t0 + 20 s, e1's at t0 + 30 s, the ghost label's wait (allowed lateness + out-of-orderness)
    # ends at t0 + 70 s; e2 moves the watermark past all three.
    t0 = (int(time.time() * 1000) // 10_000) * 10_000 - 180_000
    codec, labels = Codec("event"), Codec("label")
    events = []
    for i, offset_s in enumerate((0, 2, 90)):
        event = recent_events(seed=90 + i, count=1, users=1)[0]
        event.update(user_id="u-quiet", event_id=f"quiet-{run}-{i}",
                     event_time=t0 + offset_s * 1000)  # fmt: skip
        events.append(event)
    producer = new_producer(settings)

    def send_event(event: dict[str, Any]) -> None:
        send_record(producer, settings.topic_events, b"u-quiet", codec.encode(event),
                    event["event_time"])  # fmt: skip
        assert producer.flush(30) == 0

    def scored(event: dict[str, Any]) -> None:
        found = collect(settings, settings.topic_predictions, "prediction",
                        lambda p: p["event_id"] == event["event_id"], 1, timeout_s=90)  # fmt: skip
        assert [p["event_id"] for p in found] == [event["event_id"]]

    send_event(events[0])
    scored(events[0])
    time.sleep(3 * settings.source_idleness_ms / 1000)  # the events input is idle now

    champion = load_for_job(settings)
    assert champion is not None
    publish(settings, assign_record(champion, None, 0, "a command while the events are quiet",
                                    job_name=settings.job_name))  # fmt: skip
    deadline = time.monotonic() + 60
    while _control_accepted(settings, "ASSIGN") <= accepted_before:
        assert time.monotonic() < deadline, "the job never took the command"
        time.sleep(0.5)

    ghost = {"event_id": f"ghost-{run}", "user_id": "u-quiet", "is_fraud": False,
             "label_time": t0 + 1_000}  # fmt: skip
    send_record(producer, settings.topic_labels, b"u-quiet", labels.encode(ghost),
                ghost["label_time"])  # fmt: skip
    send_event(events[1])
    scored(events[1])  # on time: the watermark is still e0's
    send_event(events[2])
    scored(events[2])

    dead = collect(settings, settings.topic_dead_letters, "dead_letter",
                   lambda d: d["reason"].startswith("label:"), 1, timeout_s=90)  # fmt: skip
    assert [(labels.decode(d["original"])["event_id"], d["reason"]) for d in dead] == [
        (ghost["event_id"], "label:unknown_event")
    ]
    deadline = time.monotonic() + 60
    while _labels_total(settings, "expired_unlabelled") - expired_before < 2:
        assert time.monotonic() < deadline, "e0's and e1's outcomes never expired"
        time.sleep(1)
    assert _labels_total(settings, "expired_unlabelled") - expired_before == 2
