"""A standalone Flink cluster (one JobManager, one TaskManager) from the PyFlink wheel.

The wheel ships a full distribution (``bin/``, ``lib/`` with the RocksDB backend, ``opt/``,
``plugins/`` with the Prometheus reporter); we only point ``FLINK_CONF_DIR`` at a config folder
inside the stack's state dir, so the installed package is never edited.

Secured (SASL_SSL), every Flink JVM gets ``-Djava.security.auth.login.config`` pointing at a
JAAS file under the stack's secrets folder, which the job's Kafka connector logs in with, and
the TaskManagers get the secret settings (``Settings.secret_environment``) in their environment,
where the job's Python functions read them: neither is then part of the job graph.
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
from streamscore.native import PURE_PYTHON_ENV
from streamscore.stack import credentials
from streamscore.stack.layout import StackLayout
from streamscore.stack.process import wait_until
from streamscore.stack.supervision import Program

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


# Flink's JVMs stop at C1 (``flink_jit_c1_only``).
C1_ONLY = "-XX:TieredStopAtLevel=1"
# The TaskManagers' heap touched at start (``flink_taskmanager_pretouch``).
PRETOUCH = "-XX:+AlwaysPreTouch"


def java_opts(s: Settings, layout: StackLayout) -> str:
    """The wheel's JVM flags, C1 only unless turned off, the Kafka client JAAS file when Kafka
    is SASL_SSL, and the user's ``flink_extra_java_opts`` last (so they can override the
    others)."""
    opts = shipped_java_opts()
    if s.flink_jit_c1_only:
        opts = f"{opts} {C1_ONLY}"
    if s.kafka_sasl_ssl:
        jaas = credentials.client_jaas_file(layout)
        opts = f"{opts} -Djava.security.auth.login.config={jaas}"
    return f"{opts} {s.flink_extra_java_opts}".strip()


def cluster_config(s: Settings, layout: StackLayout) -> dict[str, Any]:
    """The local stack's Flink config.yaml: the stack's own keys, then ``flink_extra_config``
    over them."""
    return {**_stack_config(s, layout), **s.flink_extra_config}


def _stack_config(s: Settings, layout: StackLayout) -> dict[str, Any]:
    python = sys.executable
    work = layout.flink_work
    return {
        "env.java.opts.all": java_opts(s, layout),
        # Flink adds these to env.java.opts.all for the TaskManagers only.
        "env.java.opts.taskmanager": PRETOUCH if s.flink_taskmanager_pretouch else "",
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
        # The web UI's and REST API's checkpoint history (Flink keeps 10): the benchmark reads
        # every checkpoint of a measurement back from it (bench/systems.py).
        "web.checkpoints.history": 200,
        "restart-strategy.type": "exponential-delay",
        # A lost TaskManager is restarted by the supervisor within seconds: notice it as fast
        # (heartbeats every 2 s, lost after 10 s instead of 50 s) and retry the job at most 10 s
        # apart, so a kill -9 costs seconds of output, not a minute (tests/e2e/test_chaos.py).
        "restart-strategy.exponential-delay.initial-backoff": "1 s",
        "restart-strategy.exponential-delay.max-backoff": "10 s",
        "heartbeat.interval": 2000,
        "heartbeat.timeout": 10000,
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


# Flink's source coordinator logs every watermark-alignment update at INFO: ten lines a second
# with the job's 100 ms update interval (job/pipeline.py ALIGNMENT_UPDATE_MS), which rotated the
# JobManager's log every two minutes and pushed out everything else in it.
QUIETER_LOGGERS = """
logger.sourcecoordinator.name = org.apache.flink.runtime.source.coordinator.SourceCoordinator
logger.sourcecoordinator.level = WARN
"""


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
            if name.endswith(".properties"):
                with (conf / name).open("a") as properties:
                    properties.write(QUIETER_LOGGERS)
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


def flink_env_overrides(layout: StackLayout) -> dict[str, str]:
    """What Flink's scripts need on top of the caller's environment."""
    return {
        "FLINK_HOME": str(flink_home()),
        "FLINK_LIB_DIR": str(layout.flink_work / "lib"),
        "FLINK_CONF_DIR": str(layout.flink_conf),
        "FLINK_LOG_DIR": str(layout.logs),
        "FLINK_PID_DIR": str(layout.pids),
        # The venv's bin first, so `python` in Flink's scripts is the project's interpreter.
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }


def flink_env(layout: StackLayout) -> dict[str, str]:
    build_lib_dir(layout)
    return {**os.environ, **flink_env_overrides(layout)}


def rest(s: Settings, path: str, timeout_s: float = 3.0) -> Any:
    with urllib.request.urlopen(f"{s.flink_rest_url}{path}", timeout=timeout_s) as response:
        return json.loads(response.read())


def overview_ok(s: Settings) -> bool:
    overview = rest(s, "/overview")
    return (
        overview.get("taskmanagers", 0) >= s.flink_taskmanagers
        and overview.get("slots-total", 0) >= s.flink_taskmanagers * s.flink_taskmanager_slots
    )


def prepare(s: Settings, layout: StackLayout) -> None:
    if s.kafka_sasl_ssl:
        credentials.write_client_jaas(s, layout)
    write_config(s, layout)
    build_lib_dir(layout)


def programs(s: Settings, layout: StackLayout) -> list[Program]:
    """A JobManager and ``flink_taskmanagers`` TaskManagers. Each TaskManager is a JVM with its
    own embedded Python interpreter: in thread mode that is what lets Python operators in
    different slot sharing groups run on different cores (one interpreter means one GIL).

    The TaskManagers' environment carries the secret settings the job's functions read there
    (``Settings.with_secrets_from_env``); it ends up in the supervisor's config, which is
    therefore private to its owner (supervision.py)."""
    env = flink_env_overrides(layout)
    if s.pure_python:  # read by streamscore.native when a TaskManager imports the package
        env[PURE_PYTHON_ENV] = "1"
    secrets = s.secret_environment()
    bin_dir = flink_home() / "bin"
    jobmanager = Program(
        JOBMANAGER, [str(bin_dir / "jobmanager.sh"), "start-foreground"], env, start_seconds=5
    )
    return [jobmanager] + [
        Program(
            name,
            [str(bin_dir / "taskmanager.sh"), "start-foreground"],
            {**env, **secrets, "FLINK_IDENT_STRING": name},
            start_seconds=5,
        )
        for name in taskmanager_names(s)
    ]


def wait_ready(s: Settings, layout: StackLayout) -> None:
    wait_until(lambda: overview_ok(s), "Flink", 120, layout.log_file(JOBMANAGER))
    log.info("Flink up: web UI %s", s.flink_rest_url)


def flink_cli(
    layout: StackLayout,
    *args: str,
    timeout_s: float = 300,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run Flink's CLI; ``extra_env`` (e.g. secret settings) goes into its environment: unlike
    its arguments, that is not in the process list, and Flink's client log, which lists the
    job script's environment, masks the values of names with "password" in them."""
    if not layout.flink_conf.joinpath("config.yaml").exists():
        raise StackError("no Flink config yet: run `streamscore stack up` first")
    return subprocess.run(
        [str(flink_home() / "bin" / "flink"), *args],
        env={**flink_env(layout), **(extra_env or {})},
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
