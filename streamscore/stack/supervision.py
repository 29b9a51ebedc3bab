"""The local stack's processes under ``supervisord`` (the ``supervisor`` package from PyPI).

Why a supervisor: a server killed by the kernel (OOM) or by a crash must come back without a
person running ``stack up``, or the job sits in RESTARTING with no slot to run in. supervisord
is the long-kept tool for exactly this: it restarts a program that exits
(``autorestart=true``), backs off while a program fails to start (1 s, 2 s, 3 s, ... up to
``startretries``), stops whole process groups, keeps each program's log, and answers
``supervisorctl status``. A home-made loop would have to get all of that right again.

Each server module (kafka, redis_server, flink, prometheus) gives a ``Program``: its command,
environment and log. ``up`` writes one ``supervisord.conf`` under the stack's state dir and
starts supervisord (daemonized, on a unix socket in the state dir, so two stacks in two folders
never meet); ``down`` shuts it down, which stops every program's process group. How often each
program was restarted is counted from supervisord's own log (its "spawned" lines).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from socket import AF_UNIX, SOCK_STREAM, socket
from typing import Any

from streamscore.errors import StackError
from streamscore.stack.credentials import write_private
from streamscore.stack.layout import StackLayout
from streamscore.stack.process import alive, read_pid, stop_pid

log = logging.getLogger(__name__)
NAME = "supervisord"
START_RETRIES = 10  # back-off 1 s, 2 s, ... 10 s between failed starts, then FATAL


@dataclass(frozen=True)
class Program:
    """One supervised server: how to start it, in the foreground."""

    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None
    # Seconds it must stay up to count as started (else a failed start, with back-off).
    start_seconds: int = 3
    stop_wait_seconds: int = 30


@dataclass(frozen=True)
class ProgramStatus:
    name: str
    state: str  # supervisord's: RUNNING, STARTING, BACKOFF, EXITED, FATAL, STOPPED, ...
    pid: int | None
    restarts: int

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


def _quote(value: str) -> str:
    """A value for supervisord's ``environment=`` (double-quoted; % is its format character)."""
    return '"' + value.replace("%", "%%").replace('"', '\\"') + '"'


def config_text(layout: StackLayout, programs: list[Program]) -> str:
    socket_path = layout.supervisor_socket
    lines = [
        "[unix_http_server]",
        f"file={socket_path}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={layout.log_file(NAME)}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        f"pidfile={layout.pid_file(NAME)}",
        f"directory={layout.root}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{socket_path}",
        "",
    ]
    for program in programs:
        lines += [
            f"[program:{program.name}]",
            "command=" + " ".join(_argument(a) for a in program.command),
            "autostart=true",
            "autorestart=true",
            f"startsecs={program.start_seconds}",
            f"startretries={START_RETRIES}",
            f"stopwaitsecs={program.stop_wait_seconds}",
            # The whole process group: a start script's child (the JVM) goes with it.
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={layout.log_file(program.name)}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=2",
        ]
        if program.directory is not None:
            lines.append(f"directory={program.directory}")
        if program.environment:
            env = ",".join(f"{k}={_quote(v)}" for k, v in sorted(program.environment.items()))
            lines.append(f"environment={env}")
        lines.append("")
    return "\n".join(lines)


def _argument(arg: str) -> str:
    """supervisord splits ``command=`` like a shell (shlex) and expands %(...)s."""
    escaped = arg.replace("%", "%%")
    if re.search(r"[\s'\"\\]", escaped):
        return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def _binary(name: str) -> str:
    """supervisord/supervisorctl next to the running interpreter (the project's venv)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise StackError(f"{name} is missing: pip install supervisor (a streamscore dependency)")
    return found


class _UnixHTTPConnection(HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self._path = path

    def connect(self) -> None:
        sock = socket(AF_UNIX, SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self._path)
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def make_connection(self, host: Any) -> HTTPConnection:
        return _UnixHTTPConnection(self._path)


def _rpc(layout: StackLayout) -> Any:
    return xmlrpc.client.ServerProxy(
        "http://localhost", transport=_UnixTransport(str(layout.supervisor_socket))
    ).supervisor


def running(layout: StackLayout) -> bool:
    return alive(read_pid(layout.pid_file(NAME)))


def up(layout: StackLayout, programs: list[Program]) -> None:
    """Start supervisord with these programs, or make a running one match them (new programs
    start, changed ones restart, unchanged ones keep running).

    The config is readable by its owner only: programs' environments may hold secrets (the
    TaskManagers' STREAMSCORE_*_PASSWORD, see flink.programs)."""
    write_private(layout.supervisor_config, config_text(layout, programs))
    if not running(layout):
        # A fresh supervisord: the restart counts (from its log) start over.
        previous = layout.log_file(NAME)
        if previous.exists():
            previous.replace(previous.with_suffix(".log.previous"))
        result = subprocess.run(
            [_binary("supervisord"), "-c", str(layout.supervisor_config)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"supervisord did not start:\n{result.stdout}{result.stderr}")
        _wait_for_socket(layout)
        return
    rpc = _rpc(layout)
    added, changed, removed = rpc.reloadConfig()[0]
    for name in removed:
        rpc.stopProcessGroup(name)
        rpc.removeProcessGroup(name)
    for name in changed:
        rpc.stopProcessGroup(name)
        rpc.removeProcessGroup(name)
        rpc.addProcessGroup(name)
    for name in added:
        rpc.addProcessGroup(name)
    for info in rpc.getAllProcessInfo():
        if info["statename"] in ("STOPPED", "EXITED", "FATAL"):
            rpc.startProcess(info["name"], False)


def _wait_for_socket(layout: StackLayout, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _rpc(layout).getState()
            return
        except OSError:
            time.sleep(0.2)
    raise StackError(f"supervisord did not answer on {layout.supervisor_socket}")


def down(layout: StackLayout, timeout_s: float = 90) -> None:
    """Stop every program (process groups, SIGTERM then SIGKILL) and supervisord itself."""
    pid = read_pid(layout.pid_file(NAME))
    if not alive(pid):
        return
    try:
        _rpc(layout).stopAllProcesses(True)
        _rpc(layout).shutdown()
    except (OSError, xmlrpc.client.Fault) as exc:
        log.warning("supervisord did not stop cleanly (%s); stopping it by pid", exc)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        stop_pid(pid, NAME)  # type: ignore[arg-type]


def status(layout: StackLayout) -> list[ProgramStatus]:
    if not running(layout):
        return []
    restarts = restart_counts(layout)
    return [
        ProgramStatus(
            info["name"],
            info["statename"],
            info["pid"] or None,
            restarts.get(info["name"], 0),
        )
        for info in _rpc(layout).getAllProcessInfo()
    ]


def pid_of(layout: StackLayout, name: str) -> int | None:
    """The running pid of a program, or None."""
    if not running(layout):
        return None
    try:
        return _rpc(layout).getProcessInfo(name)["pid"] or None
    except xmlrpc.client.Fault:
        return None


def restart_counts(layout: StackLayout) -> dict[str, int]:
    """How often supervisord started each program again after its first start (its log)."""
    spawned: dict[str, int] = {}
    log_file = layout.log_file(NAME)
    if not log_file.exists():
        return spawned
    for match in re.finditer(r"spawned: '([^']+)'", log_file.read_text(errors="replace")):
        spawned[match.group(1)] = spawned.get(match.group(1), 0) + 1
    return {name: count - 1 for name, count in spawned.items()}
