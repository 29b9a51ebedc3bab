"""A Redis server on loopback, from the system's ``redis-server`` binary."""

from __future__ import annotations

import logging
import shutil

from streamscore.config import Settings
from streamscore.errors import StackError
from streamscore.feature_store import connect
from streamscore.stack.layout import StackLayout
from streamscore.stack.process import alive, read_pid, start_detached, wait_until

log = logging.getLogger(__name__)
NAME = "redis"


def ping(s: Settings) -> bool:
    return bool(connect(s, timeout_s=1).ping())


def start(s: Settings, layout: StackLayout) -> int:
    pid = read_pid(layout.pid_file(NAME))
    if alive(pid):
        return pid  # type: ignore[return-value]
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError("redis-server is not installed: apt-get install redis-server")
    layout.redis_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        binary,
        "--port",
        str(s.redis_port),
        "--bind",
        s.redis_host,
        "--daemonize",
        "no",
        "--dir",
        str(layout.redis_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
    ]
    if s.redis_password:
        cmd += ["--requirepass", s.redis_password.get_secret_value()]
    pid = start_detached(cmd, layout.log_file(NAME), layout.pid_file(NAME))
    wait_until(lambda: ping(s), "Redis", 30, layout.log_file(NAME), pid)
    log.info("Redis up on %s:%d (pid %d)", s.redis_host, s.redis_port, pid)
    return pid
