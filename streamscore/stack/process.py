"""Starting, finding and stopping the stack's server processes by pid."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from streamscore.errors import StackError

log = logging.getLogger(__name__)


def port_open(host: str, port: int, timeout_s: float = 0.3) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        return sock.connect_ex((host, port)) == 0


def ensure_port_free(host: str, port: int, what: str) -> None:
    if port_open(host, port):
        raise StackError(
            f"port {host}:{port} for {what} is taken by another process; "
            "stop it or choose another port (see `streamscore config`)"
        )


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def start_detached(
    cmd: list[str],
    log_file: Path,
    pid_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``cmd`` in its own session (so its pid is the server's), logging to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def stop_pid(pid: int, what: str, timeout_s: float = 30.0) -> None:
    """SIGTERM the process (and its session), then SIGKILL if it outlives ``timeout_s``."""
    if not alive(pid):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + (timeout_s if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            if not alive(pid):
                log.info("stopped %s (pid %d)", what, pid)
                return
            time.sleep(0.2)
        if sig == signal.SIGTERM:
            log.warning("%s (pid %d) ignored SIGTERM for %.0fs; killing it", what, pid, timeout_s)
    if alive(pid):
        raise StackError(f"could not stop {what} (pid {pid})")


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout_s: float,
    log_file: Path | None = None,
    pid: int | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # not up yet: connection refused, partial answers, ...
            pass
        if pid is not None and not alive(pid):
            break
        time.sleep(0.5)
    tail = ""
    if log_file and log_file.exists():
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-25:])
    state = (
        "exited" if pid is not None and not alive(pid) else f"not healthy after {timeout_s:.0f}s"
    )
    raise StackError(f"{what} {state}; last log lines from {log_file}:\n{tail}")
