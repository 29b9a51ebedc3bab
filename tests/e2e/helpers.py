"""Sending events and reading topics until an expected set of records has arrived."""

from __future__ import annotations

import random
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streamscore.config import Settings
from streamscore.features.engine import FeatureEngine
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.kafka_io import new_producer, read_messages, send_record
from streamscore.serde import Codec

# The checkout the tests run from (the test stack keeps its state in REPO/.stack-test).
REPO = Path(__file__).resolve().parents[2]
# The ``run_job`` fixture: ``run_job(setting=value, ...)`` → the running job's settings.
RunJob = Callable[..., Settings]


def as_overrides(settings: dict[str, str]) -> list[str]:
    """``--set`` items for a dict of settings."""
    return [f"{k}={v}" for k, v in settings.items()]


def _metrics_ports(settings: Settings) -> range:
    """Each TaskManager running a Python operator serves its own /metrics, on consecutive ports
    from ``metrics_port`` (the spare TaskManager runs none, so one port may be closed)."""
    return range(settings.metrics_port, settings.metrics_port + settings.flink_taskmanagers)


def _metrics_text(settings: Settings, port: int) -> str | None:
    url = f"http://{settings.metrics_host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except OSError:  # nothing listening: a TaskManager without a Python operator
        return None


def job_metrics_text(settings: Settings) -> str:
    """The job's Prometheus text, all TaskManagers together."""
    texts = (_metrics_text(settings, port) for port in _metrics_ports(settings))
    return "".join(text for text in texts if text is not None)


def _sample_value(text: str, sample: str) -> float:
    line_start = sample + " "
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start))


def job_metric_total(settings: Settings, sample: str) -> float:
    """One sample of the job's Prometheus text, named as printed (``name{label="value"}``),
    summed over its TaskManagers. The counters outlive a job: compare before and after, and
    across a kill compare with ``job_metric_by_process`` and ``increase``."""
    return _sample_value(job_metrics_text(settings), sample)


def job_metric_by_process(settings: Settings, sample: str) -> dict[int, float]:
    """One sample per process serving the job's metrics, by pid. A process killed and started
    again starts its counters from zero under a new pid: ``increase`` counts it from there."""
    values: dict[int, float] = {}
    for port in _metrics_ports(settings):
        text = _metrics_text(settings, port)
        pid = listening_pid(port)
        if text is not None and pid is not None:
            values[pid] = _sample_value(text, sample)
    return values


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on a local TCP port, if any."""
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    for line in listening.splitlines():
        if f":{port} " in line:
            pid = re.search(r"pid=(\d+)", line)
            return int(pid.group(1)) if pid else None
    return None


def increase(before: dict[int, float], after: dict[int, float]) -> float:
    """How much a counter grew between two ``job_metric_by_process`` readings, as Prometheus'
    ``increase`` would have it: a process started since counts from zero, and what a process
    gone since had counted after ``before`` is lost (a drop is never a negative increase)."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def send(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    """Send to the events topic as a producer that follows the contract does: each record
    stamped with its event time; one it cannot read, or whose event time is ahead of the clock,
    with the send time."""
    producer = new_producer(settings)
    codec = Codec("event")
    for key, value in records:
        send_record(producer, settings.topic_events, key, value, _event_time_or_none(codec, value))
    assert producer.flush(30) == 0


def _event_time_or_none(codec: Codec, value: bytes) -> int | None:
    try:
        event_time = int(codec.decode(value)["event_time"])
    except Exception:
        return None
    return event_time if event_time <= time.time() * 1000 else None


def collect(
    settings: Settings,
    topic: str,
    record_type: str,
    keep: Callable[[dict[str, Any]], bool],
    expected: int,
    timeout_s: float,
    settle_s: float = 3.0,
    read_committed: bool = True,
) -> list[dict[str, Any]]:
    """All records of ``topic`` that ``keep`` accepts; waits until ``expected`` have arrived,
    then keeps reading for ``settle_s`` so that duplicates would show."""
    codec = Codec(record_type)
    found: list[dict[str, Any]] = []
    settle_until: float | None = None

    def settled() -> bool:
        return settle_until is not None and time.monotonic() > settle_until

    for msg in read_messages(
        settings,
        topic,
        from_beginning=True,
        read_committed=read_committed,
        deadline_s=timeout_s + settle_s,
        until=settled,
    ):
        record = codec.decode(msg.value())
        if keep(record):
            found.append(record)
            if len(found) >= expected and settle_until is None:
                settle_until = time.monotonic() + settle_s
    return found


def taskmanager_pid_of(settings: Settings, job_id: str, operator: str) -> int:
    """The pid of the TaskManager running (the first subtask of) the named operator."""
    from streamscore.stack import flink

    vertex = next(
        v for v in flink.rest(settings, f"/jobs/{job_id}")["vertices"] if operator in v["name"]
    )
    subtask = flink.rest(settings, f"/jobs/{job_id}/vertices/{vertex['id']}")["subtasks"][0]
    tm = flink.rest(settings, f"/taskmanagers/{subtask['taskmanager-id']}")
    match = re.search(r":(\d+)/", tm["path"])
    assert match, tm["path"]
    pid = listening_pid(int(match.group(1)))
    assert pid is not None, f"no process listens on the TaskManager's port {match.group(1)}"
    return pid


def expected_store(events: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, float]]]:
    """Per user: the event with the newest event time, and its features, computed offline (what
    the online store must hold after the job has seen ``events``)."""
    engine = FeatureEngine()
    states: dict[str, Any] = {}
    newest: dict[str, tuple[int, str, dict[str, float]]] = {}
    for event in events:
        state = states.setdefault(event["user_id"], engine.new_state())
        features = dict(zip(engine.names, engine.update(state, event)))
        current = newest.get(event["user_id"])
        if current is None or event["event_time"] >= current[0]:
            newest[event["user_id"]] = (event["event_time"], event["event_id"], features)
    return {user: (event_id, f) for user, (_, event_id, f) in newest.items()}


def recent_events(
    seed: int, count: int, users: int, out_of_order: float = 0.05, rate: float = 100.0
) -> list[dict[str, Any]]:
    """Valid events whose times end about now, so the watermark moves in real time; a share
    ``out_of_order`` of them 1-3 s out of order, within the bounded out-of-orderness (so none
    is late)."""
    now = int(time.time() * 1000)
    generator = TransactionGenerator(
        GeneratorConfig(users=users, seed=seed, events_per_second=rate, start_ms=now)
    )
    events = [t.event for t in generator.take(count)]
    shift = now - events[-1]["event_time"]
    rng = random.Random(seed)
    for event in events:
        event["event_time"] += shift
        if rng.random() < out_of_order:
            event["event_time"] -= rng.randint(1, 3_000)
    return events


@contextmanager
def fresh_stack(settings: Settings) -> Iterator[Settings]:
    """A stack started from empty data (jars fetched from Maven are kept) and always stopped."""
    import shutil

    from streamscore.stack import stack as stack_module

    stack_module.down(settings)  # a previous session that died may have left servers behind
    for sub in ("kafka", "redis", "flink", "prometheus", "logs", "pids"):
        shutil.rmtree(settings.state_dir / sub, ignore_errors=True)
    try:
        stack_module.up(settings)
        yield settings
    finally:
        stack_module.down(settings)
