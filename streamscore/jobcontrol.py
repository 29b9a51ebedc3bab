"""Submitting the scoring job to a Flink cluster and watching it become RUNNING."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from streamscore.config import SECRET_FIELDS, Settings, parse_overrides
from streamscore.errors import StackError
from streamscore.job.jvm_jar import kafka_jar, operators_jar
from streamscore.model.loading import load_for_job
from streamscore.resources import job_entry_script
from streamscore.stack import flink, maven
from streamscore.stack.stack import layout_of

log = logging.getLogger(__name__)


def find_job(
    s: Settings, states: tuple[str, ...] = ("RUNNING", "CREATED", "INITIALIZING", "RESTARTING")
) -> dict[str, Any] | None:
    for job in flink.rest(s, "/jobs/overview")["jobs"]:
        if job["name"] == s.job_name and job["state"] in states:
            return job
    return None


def public_overrides(overrides: list[str]) -> list[str]:
    """``overrides`` without the secret settings (``SECRET_FIELDS``)."""
    secret = {name.lower() for name in SECRET_FIELDS}
    return [item for item in overrides if next(iter(parse_overrides([item]))).lower() not in secret]


def run_arguments(
    s: Settings, overrides: list[str], jar: Path, from_savepoint: str | None = None
) -> list[str]:
    """``flink run``'s arguments: the job script and its ``--set`` settings, secrets excepted.

    A command line is visible to every local user and written to Flink's client log; the
    secrets go to the job script through its environment instead (``submit``), and from there
    to no further than its own process (``pipeline.build`` drops them from the job graph)."""
    args = [
        "run",
        "-d",
        "-m",
        f"{s.flink_rest_host}:{s.flink_rest_port}",
        "--jarfile",
        str(jar),
        "-pyclientexec",
        sys.executable,
        *(["--fromSavepoint", from_savepoint] if from_savepoint else []),
        "-py",
        str(job_entry_script()),
    ]
    items = [f"models_dir={s.models_dir}", f"state_dir={s.state_dir}", *overrides]
    for item in public_overrides(items):
        args += ["--set", item]
    return args


def submit(
    s: Settings, overrides: list[str], wait_s: float = 180, from_savepoint: str | None = None
) -> str:
    """Submit the job detached (unless it already runs) and wait until all its tasks run.

    The model is resolved here first, so a version asked for by name that does not exist fails
    at once, before anything reaches the cluster. The job script runs under this process's own
    Python (``-pyclientexec``), so it imports the same installed ``streamscore`` as the caller;
    ``models_dir`` and ``state_dir`` go along as absolute paths. ``from_savepoint`` restores
    the job's state (user state, the label join, the learner, the model assignment). Secret
    settings reach the job script as STREAMSCORE_* variables, never as arguments."""
    load_for_job(s)
    existing = find_job(s)
    if existing is not None:
        log.info("job %s already %s (%s)", s.job_name, existing["state"], existing["jid"])
        return str(existing["jid"])
    layout = layout_of(s)
    jar = maven.connector_jar(layout.flink_jars)
    # Built here, so that a build failure shows before Flink's client.
    operators_jar(layout.flink_jars)
    kafka_jar(layout.flink_jars)
    args = run_arguments(s, overrides, jar, from_savepoint)
    result = flink.flink_cli(layout, *args, extra_env=s.secret_environment())
    match = re.search(r"JobID ([0-9a-f]{32})", result.stdout + result.stderr)
    if result.returncode != 0 or match is None:
        raise StackError(
            f"job submission failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    job_id = match.group(1)
    wait_running(s, job_id, wait_s)
    return job_id


def wait_running(s: Settings, job_id: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    state = "?"
    while time.monotonic() < deadline:
        job = flink.rest(s, f"/jobs/{job_id}")
        state = job["state"]
        if state in ("FAILED", "CANCELED", "FINISHED", "RESTARTING"):
            raise StackError(f"job {job_id} is {state}: {first_exception(s, job_id)}")
        if state == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"]):
            log.info(
                "job %s RUNNING: %s/#/job/running/%s/overview", job_id, s.flink_rest_url, job_id
            )
            return
        time.sleep(1)
    raise StackError(f"job {job_id} not RUNNING after {wait_s:.0f}s (state {state})")


def first_exception(s: Settings, job_id: str) -> str:
    """The first failure of the job, shortened: what a user needs to see to fix it."""
    entries = flink.rest(s, f"/jobs/{job_id}/exceptions").get("exceptionHistory", {}).get("entries")
    if not entries:
        return "no exception recorded"
    trace = entries[-1]["stacktrace"]
    return "\n".join(trace.splitlines()[:40])


def cancel(s: Settings, job_id: str | None = None) -> str | None:
    job = {"jid": job_id} if job_id else find_job(s)
    if job is None:
        return None
    request = urllib.request.Request(
        f"{s.flink_rest_url}/jobs/{job['jid']}?mode=cancel", method="PATCH"
    )
    try:
        urllib.request.urlopen(request, timeout=10).read()
    except urllib.error.HTTPError as exc:
        if exc.code != 409:  # 409: the job already ended (e.g. stopped with a savepoint)
            raise
        return None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if flink.rest(s, f"/jobs/{job['jid']}")["state"] in ("CANCELED", "FAILED", "FINISHED"):
            break
        time.sleep(0.5)
    return str(job["jid"])


def stop_with_savepoint(s: Settings, job_id: str, wait_s: float = 120) -> str:
    """Stop the job with a savepoint (its sources stop at a consistent point, its transactions
    commit); returns the savepoint's location, for ``submit(from_savepoint=...)``."""
    request = urllib.request.Request(
        f"{s.flink_rest_url}/jobs/{job_id}/stop",
        data=json.dumps({"drain": False, "formatType": "CANONICAL"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        trigger = json.loads(response.read())["request-id"]
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        status = flink.rest(s, f"/jobs/{job_id}/savepoints/{trigger}")
        if status["status"]["id"] == "COMPLETED":
            operation = status["operation"]
            if "failure-cause" in operation:
                raise StackError(f"savepoint of {job_id} failed: {operation['failure-cause']}")
            return str(operation["location"])
        time.sleep(1)
    raise StackError(f"no savepoint of {job_id} after {wait_s:.0f}s")


def checkpoints(s: Settings, job_id: str) -> dict[str, Any]:
    return flink.rest(s, f"/jobs/{job_id}/checkpoints")
