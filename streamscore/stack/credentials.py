"""The local stack's secret files: one folder, ``<state_dir>/secrets/`` (0700), each file 0600.

A secured stack (``kafka_security_protocol=SASL_SSL``) keeps here what its servers must read
from disk: the TLS key and certificates (``tls.py``), the password the broker uses to log in to
itself (inter-broker traffic runs over the SASL_SSL listener, so it needs a SCRAM user of its
own, generated once per state dir), the JAAS file the Flink JVMs log in to Kafka with, and
Redis's ACL file. Files are created with mode 0600 before anything is written to them, so a
secret is never readable by another local user, not even for a moment.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from streamscore.config import Settings
from streamscore.stack.layout import StackLayout

# The broker's own SCRAM user (inter-broker traffic); clients log in as kafka_sasl_username.
BROKER_USER = "streamscore-broker"
BROKER_PASSWORD_FILE = "kafka_broker_password"
CLIENT_JAAS_FILE = "kafka_client_jaas.conf"
# The login module as the Flink SQL Kafka connector jar has it: that jar relocates the Kafka
# client to org.apache.flink.kafka.shaded, and JAAS loads the module by this name.
FLINK_SCRAM_LOGIN_MODULE = (
    "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule"
)
SCRAM_ITERATIONS = 8192  # Kafka's minimum for SCRAM-SHA-512 is 4096
_SCRAM_HASHES = {"SCRAM-SHA-512": "sha512", "SCRAM-SHA-256": "sha256"}


def secrets_path(layout: StackLayout) -> Path:
    """``<state_dir>/secrets`` (see ``secrets_dir`` to create it)."""
    return layout.root / "secrets"


def secrets_dir(layout: StackLayout) -> Path:
    """``<state_dir>/secrets``, created private (0700) if missing."""
    directory = secrets_path(layout)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    return directory


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), also if it existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)


def broker_password(layout: StackLayout) -> str:
    """The broker user's password: generated at the first secured start, then kept."""
    path = secrets_dir(layout) / BROKER_PASSWORD_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    password = secrets.token_urlsafe(32)
    write_private(path, password + "\n")
    return password


def jaas_quote(value: str) -> str:
    """A JAAS option value in double quotes (JAAS files and Kafka's ``sasl.jaas.config`` both
    read quoted strings with backslash escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scram_login(module: str, username: str, password: str) -> str:
    """One JAAS login-module entry for SCRAM, with its terminating semicolon."""
    return f"{module} required username={jaas_quote(username)} password={jaas_quote(password)};"


def kafka_client_jaas(username: str, password: str) -> str:
    """A JAAS file with the ``KafkaClient`` section every Kafka client of a JVM uses when it is
    given no ``sasl.jaas.config``: how the job's connector logs in without a password in the
    job graph."""
    entry = scram_login(FLINK_SCRAM_LOGIN_MODULE, username, password)
    return f"KafkaClient {{\n  {entry}\n}};\n"


def client_jaas_file(layout: StackLayout) -> Path:
    return secrets_path(layout) / CLIENT_JAAS_FILE


def write_client_jaas(s: Settings, layout: StackLayout) -> Path:
    """Write the Flink cluster's JAAS file from the settings' SASL user; returns its path."""
    if s.kafka_sasl_username is None or s.kafka_sasl_password is None:
        raise ValueError("SASL_SSL needs kafka_sasl_username and kafka_sasl_password")
    secrets_dir(layout)
    path = client_jaas_file(layout)
    write_private(
        path, kafka_client_jaas(s.kafka_sasl_username, s.kafka_sasl_password.get_secret_value())
    )
    return path


def salted_scram_argument(
    mechanism: str, user: str, password: str, salt: bytes | None = None
) -> str:
    """A ``kafka-storage format --add-scram`` argument holding the salted password (SCRAM's
    ``Hi(password, salt, i)``, i.e. PBKDF2-HMAC) instead of the password itself, so the
    password never shows on a command line."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac(
        _SCRAM_HASHES[mechanism], password.encode(), salt, SCRAM_ITERATIONS
    )
    return (
        f"{mechanism}=[name={user},iterations={SCRAM_ITERATIONS},"
        f'salt="{base64.b64encode(salt).decode()}",'
        f'saltedpassword="{base64.b64encode(salted).decode()}"]'
    )
