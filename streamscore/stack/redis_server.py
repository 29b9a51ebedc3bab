"""A Redis server on loopback, from the system's ``redis-server`` binary.

It persists with an append-only file fsynced every second (``appendfsync everysec``): a crash
loses at most about a second of feature writes, which the job's pending writes and
``streamscore store backfill`` make good; ``always`` would cost a disk sync per write.

With ``redis_username`` set, access is by ACL: the default user is off and the named user may
do everything. The users are in an ACL file under the stack's secrets folder (0600), with the
password's SHA-256 instead of the password: on the command line (``--user ... >password``) it
would be readable by every local user in the process list and in the supervisor's config.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from streamscore.config import Settings
from streamscore.errors import StackError
from streamscore.feature_store import connect
from streamscore.stack import credentials
from streamscore.stack.layout import StackLayout
from streamscore.stack.process import wait_until
from streamscore.stack.supervision import Program

log = logging.getLogger(__name__)
NAME = "redis"
ACL_FILE = "redis_users.acl"


def ping(s: Settings) -> bool:
    return bool(connect(s, timeout_s=1).ping())


def server_args(s: Settings, layout: StackLayout) -> list[str]:
    """redis-server's arguments (the compose and Kubernetes configs restate them)."""
    args = [
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
        "yes",
        "--appendfsync",
        "everysec",
        "--protected-mode",
        "yes",
    ]
    if s.redis_username:
        args += ["--aclfile", str(acl_file(layout))]
    elif s.redis_password:
        args += ["--requirepass", s.redis_password.get_secret_value()]
    return args


def acl_file(layout: StackLayout) -> Path:
    return credentials.secrets_path(layout) / ACL_FILE


def acl_text(s: Settings) -> str:
    """The ACL file: the default user off and without rights, the configured user with all."""
    if s.redis_username is None or s.redis_password is None:
        raise StackError("a Redis ACL user needs both redis_username and redis_password")
    digest = hashlib.sha256(s.redis_password.get_secret_value().encode()).hexdigest()
    return (
        "user default off resetpass resetkeys resetchannels -@all\n"
        f"user {s.redis_username} on #{digest} ~* &* +@all\n"
    )


def prepare(s: Settings, layout: StackLayout) -> None:
    layout.redis_dir.mkdir(parents=True, exist_ok=True)
    if s.redis_username:
        credentials.secrets_dir(layout)
        credentials.write_private(acl_file(layout), acl_text(s))


def program(s: Settings, layout: StackLayout) -> Program:
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError("redis-server is not installed: apt-get install redis-server")
    return Program(NAME, [binary, *server_args(s, layout)])


def wait_ready(s: Settings, layout: StackLayout) -> None:
    wait_until(lambda: ping(s), "Redis", 30, layout.log_file(NAME))
    log.info("Redis up on %s:%d", s.redis_host, s.redis_port)
