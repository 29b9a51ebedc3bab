"""A standalone Flink cluster (one JobManager, one TaskManager) from the PyFlink wheel.

The wheel ships a full distribution (``bin/``, ``lib/`` with the RocksDB backend, ``opt/``,
``plugins/`` with the Prometheus reporter); we only point ``FLINK_CONF_DIR`` at a config folder
inside the stack's state dir, so the installed package is never edited.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from streamscore.config import Settings
from streamscore.errors import StackError
from streamscore.stack.layout import StackLayout
from streamscore.stack.process import alive, read_pid, start_detached, wait_until

log = logging.getLogger(__name__)
JOBMANAGER = "flink-jobmanager"


def taskmanager_names(s: Settings) -> list[str]:
    return [f"flink-taskmanager-{i}" for i in range(s.flink_taskmanagers)]


def flink_home() -> Path:
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def shipped_java_opts() -> str:
    """The JVM flags of the wheel's own config (Java 17 needs its --add-opens list)."""
    import yaml

    shipped = yaml.safe_load((flink_home() / "conf" / "config.yaml").read_text())
    return str(shipped.get("env", {}).get("java", {}).get("opts", {}).get("all", ""))


def cluster_config(s: Settings, layout: StackLayout) -> dict[str, Any]:
    python = sys.executable
    work = layout.flink_work
    return {
        "env.java.opts.all": shipped_java_opts(),
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.rpc.port": s.flink_rpc_port,
        "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.memory.process.size": s.flink_jobmanager_memory,
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        "taskmanager.memory.process.size": s.flink_taskmanager_memory,
        "taskmanager.numberOfTaskSlots": s.flink_taskmanager_slots,
        "rest.address": s.flink_rest_host,
        "rest.bind-address": s.flink_rest_host,
        "rest.port": s.flink_rest_port,
        "parallelism.default": s.parallelism,
        "env.pid.dir": str(layout.pids),
        "env.log.dir": str(layout.logs),
        "io.tmp.dirs": str(work / "tmp"),
        "web.tmpdir": str(work / "web"),
        "web.upload.dir": str(work / "web"),
        "blob.storage.directory": str(work / "blobs"),
        "state.backend.type": "rocksdb",
        "execution.checkpointing.incremental": "true",
        "execution.checkpointing.dir": layout.checkpoints.as_uri(),
        "execution.checkpointing.savepoint-dir": layout.savepoints.as_uri(),
        "execution.checkpointing.num-retained": 2,
        "restart-strategy.type": "exponential-delay",
        # pemja (PyFlink's thread mode) cannot be loaded by a second user-code class loader in
        # one JVM on Java 17 (FLINK-37727), which breaks resubmitting a job to the same
        # TaskManager. flink-python is on the cluster class path instead (see build_lib_dir),
        # and pemja is resolved parent-first so every job shares that one copy.
        "classloader.parent-first-patterns.additional": "pemja.",
        "python.executable": python,
        "python.client.executable": python,
        "python.execution-mode": s.python_execution_mode,
        "metrics.reporter.prom.factory.class": (
            "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
        ),
        "metrics.reporter.prom.port": s.flink_prometheus_port,
        # flink_jobmanager_job_runningState (1 while RUNNING) for the "job not RUNNING" alert,
        # next to the default <state>Time gauges.
        "metrics.job.status.enable": ["STATE", "CURRENT_TIME"],
    }


def write_config(s: Settings, layout: StackLayout) -> None:
    conf = layout.flink_conf
    conf.mkdir(parents=True, exist_ok=True)
    shipped = flink_home() / "conf"
    for name in (
        "log4j.properties",
        "log4j-console.properties",
        "log4j-cli.properties",
        "log4j-session.properties",
        "logback.xml",
        "logback-console.xml",
    ):
        if (shipped / name).exists():
            shutil.copy(shipped / name, conf / name)
    lines = [
        f"{k}: {json.dumps(v) if isinstance(v, str | list) else v}"
        for k, v in cluster_config(s, layout).items()
    ]
    (conf / "config.yaml").write_text("\n".join(lines) + "\n")
    (conf / "masters").write_text(f"127.0.0.1:{s.flink_rest_port}\n")
    (conf / "workers").write_text("127.0.0.1\n")
    for sub in ("tmp", "web", "blobs"):
        (layout.flink_work / sub).mkdir(parents=True, exist_ok=True)


def build_lib_dir(layout: StackLayout) -> Path:
    """The cluster's lib/: the wheel's own lib jars plus its opt/flink-python jar, as links."""
    lib = layout.flink_work / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    home = flink_home()
    wanted = {p.name: p for p in (home / "lib").glob("*.jar")}
    wanted.update({p.name: p for p in (home / "opt").glob("flink-python-*.jar")})
    for existing in lib.iterdir():
        if existing.name not in wanted or existing.resolve() != wanted[existing.name].resolve():
            existing.unlink()
    for name, target in wanted.items():
        if not (lib / name).exists():
            (lib / name).symlink_to(target)
    return lib


def flink_env(layout: StackLayout) -> dict[str, str]:
    env = dict(os.environ)
    env["FLINK_HOME"] = str(flink_home())
    env["FLINK_LIB_DIR"] = str(build_lib_dir(layout))
    env["FLINK_CONF_DIR"] = str(layout.flink_conf)
    env["FLINK_LOG_DIR"] = str(layout.logs)
    env["FLINK_PID_DIR"] = str(layout.pids)
    # The venv's bin first, so `python` in Flink's scripts is the project's interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def rest(s: Settings, path: str, timeout_s: float = 3.0) -> Any:
    with urllib.request.urlopen(f"{s.flink_rest_url}{path}", timeout=timeout_s) as response:
        return json.loads(response.read())


def overview_ok(s: Settings) -> bool:
    overview = rest(s, "/overview")
    return (
        overview.get("taskmanagers", 0) >= s.flink_taskmanagers
        and overview.get("slots-total", 0) >= s.flink_taskmanagers * s.flink_taskmanager_slots
    )


def start(s: Settings, layout: StackLayout) -> None:
    """A JobManager and ``flink_taskmanagers`` TaskManagers. Each TaskManager is a JVM with its
    own embedded Python interpreter: in thread mode that is what lets Python operators in
    different slot sharing groups run on different cores (one interpreter means one GIL)."""
    jm = read_pid(layout.pid_file(JOBMANAGER))
    tms = {name: read_pid(layout.pid_file(name)) for name in taskmanager_names(s)}
    if alive(jm) and all(alive(pid) for pid in tms.values()):
        return
    write_config(s, layout)
    env = flink_env(layout)
    bin_dir = flink_home() / "bin"
    if not alive(jm):
        jm = start_detached(
            [str(bin_dir / "jobmanager.sh"), "start-foreground"],
            layout.log_file(JOBMANAGER),
            layout.pid_file(JOBMANAGER),
            env=env,
        )
    for name, pid in tms.items():
        if not alive(pid):
            tms[name] = start_detached(
                [str(bin_dir / "taskmanager.sh"), "start-foreground"],
                layout.log_file(name),
                layout.pid_file(name),
                env={**env, "FLINK_IDENT_STRING": name},
            )
    wait_until(lambda: overview_ok(s), "Flink", 120, layout.log_file(JOBMANAGER), jm)
    log.info(
        "Flink up: web UI %s (JobManager pid %s, TaskManager pids %s)",
        s.flink_rest_url,
        jm,
        ", ".join(str(p) for p in tms.values()),
    )


def flink_cli(
    layout: StackLayout, *args: str, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    if not layout.flink_conf.joinpath("config.yaml").exists():
        raise StackError("no Flink config yet: run `streamscore stack up` first")
    return subprocess.run(
        [str(flink_home() / "bin" / "flink"), *args],
        env=flink_env(layout),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def running_jobs(s: Settings) -> list[dict[str, Any]]:
    return [
        j
        for j in rest(s, "/jobs/overview")["jobs"]
        if j["state"] in ("RUNNING", "CREATED", "INITIALIZING", "RESTARTING")
    ]
