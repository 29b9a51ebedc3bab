"""The context of a benchmark run: machine, versions, git state, command, model, stale code.

Figures are only comparable with the conditions they were measured under, so every result file
records them. Two checks also belong here because they are about the environment rather than
the measurement: a model must exist before the job can score, and a TaskManager started before
the package changed may still run the older code.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import streamscore
from streamscore.config import Settings

REPO = Path(__file__).resolve().parent.parent


def _run(*cmd: str) -> str:
    """A command's stdout in the project root; empty if it cannot run (the record is optional)."""
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, check=False, cwd=REPO, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info() -> dict[str, Any]:
    """CPUs, memory, platform, Python and Java, and the load average before the run."""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    java = subprocess.run(
        ["java", "-version"], capture_output=True, text=True, check=False
    ).stderr.splitlines()
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_bytes": int(mem.group(1)) * 1024 if mem else None,
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "java": java[0] if java else None,
        "load_average_at_start": os.getloadavg(),
    }


def versions() -> dict[str, Any]:
    """Versions of the libraries on the measured path."""
    import confluent_kafka

    found = {
        name: importlib.metadata.version(name)
        for name in ("apache-flink", "confluent-kafka", "lightgbm", "fastavro")
    }
    found["librdkafka"] = confluent_kafka.libversion()[0]
    return found


def git_info() -> dict[str, Any]:
    """The commit measured, and whether the work tree differed from it."""
    # Tracked files that differ from the commit, staged or not. (Read from ``git status
    # --porcelain`` before, whose first line lost its leading blank to the output's strip and
    # so a letter of its name: "EADME.md".)
    changed = _run("git", "diff", "--name-only", "HEAD").splitlines()
    untracked = _run("git", "ls-files", "--others", "--exclude-standard").splitlines()
    return {
        "commit": _run("git", "rev-parse", "HEAD"),
        "dirty": bool(changed),
        "changed_files": changed,
        "untracked_files": untracked,
    }


def ensure_model(s: Settings, user_sets: list[str]) -> str:
    """The model version the job will score with; trains one first if there is none."""
    from streamscore.model.registry import list_versions, resolve

    if not list_versions(s.models_dir):
        cli = Path(sys.executable).parent / "streamscore"
        sets = [a for pair in user_sets for a in ("--set", pair)]
        subprocess.run([str(cli), *sets, "train", "--if-missing"], check=True)
    return resolve(s.models_dir, s.model_version).version


def stale_code(s: Settings) -> str | None:
    """A warning if the package changed after the TaskManager started: in thread mode its one
    Python interpreter keeps the modules it imported for the first job, for every later job."""
    from streamscore.stack import flink
    from streamscore.stack.stack import pid_of

    pid = pid_of(s, flink.taskmanager_names(s)[0])
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = re.search(r"^btime (\d+)", Path("/proc/stat").read_text(), re.M)
        started = int(boot.group(1)) + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # type: ignore[union-attr]
    except (OSError, IndexError, AttributeError, ValueError):
        return None
    package = Path(streamscore.__file__).resolve().parent
    sources = package.rglob("*.py")
    newer = sorted(str(p.relative_to(package)) for p in sources if p.stat().st_mtime > started)
    if not newer:
        return None
    return (
        f"{', '.join(newer[:5])}{' …' if len(newer) > 5 else ''} changed after the Flink "
        "TaskManager started: it may still run the older code (restart the stack)"
    )


def command_line() -> str:
    """The command as typed, with the STREAMSCORE_* variables it ran under (no passwords), so
    a result can be reproduced."""
    env = [
        f"{k}={shlex.quote(v)}"
        for k, v in sorted(os.environ.items())
        if k.startswith("STREAMSCORE_") and "PASSWORD" not in k
    ]
    return " ".join([*env, shlex.join([sys.executable, *sys.argv])])
