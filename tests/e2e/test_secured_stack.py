"""A secured stack end to end: Kafka over SASL_SSL (SCRAM-SHA-512, a CA made at set-up) and Redis
with an ACL user, both with passwords generated here.

A second stack, beside the session's plain one (conftest.py): every port moved by 100, a state
dir of its own. The job scores events produced with the secured client and writes the features
with the ACL user; clients without the right credentials are refused; and none of the passwords
shows where the job or the stack could publish it: Flink's REST API (the job's config and plan),
the stack's log files, Flink's files (its blob store holds the job graph) and command lines.
"""

from __future__ import annotations

import secrets
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streamscore.config import Settings
from streamscore.feature_store import connect, read_features
from streamscore.jobcontrol import cancel, submit
from streamscore.kafka_io import client_config
from streamscore.serde import Codec
from streamscore.stack import credentials, flink, tls
from streamscore.stack import stack as stack_module
from tests.e2e.conftest import TEST_STACK
from tests.e2e.helpers import (
    REPO,
    as_overrides,
    collect,
    expected_store,
    fresh_stack,
    recent_events,
    send,
)

pytestmark = pytest.mark.e2e

PORTS = (
    "kafka_port",
    "kafka_controller_port",
    "redis_port",
    "flink_rest_port",
    "flink_rpc_port",
    "metrics_port",
    "flink_prometheus_port",
    "prometheus_port",
)
STATE_DIR = REPO / ".stack-secure-test"


def _shifted(value: str) -> str:
    """A port (or a port range ``a-b``) moved by 100."""
    return "-".join(str(int(part) + 100) for part in value.split("-"))


SECURE_STACK = {
    **TEST_STACK,
    **{name: _shifted(TEST_STACK[name]) for name in PORTS},
    "state_dir": str(STATE_DIR),
    "flink_taskmanagers": "3",
    "scoring_parallelism": "1",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_username": "streamscore-app",
    "kafka_ssl_ca_location": str(STATE_DIR / "secrets" / tls.CA_CERT),
    "redis_username": "streamscore-features",
}


@pytest.fixture(scope="module")
def secured_overrides(models_dir: Path) -> dict[str, str]:
    return {
        **SECURE_STACK,
        "models_dir": str(models_dir),
        "kafka_sasl_password": secrets.token_urlsafe(24),
        "redis_password": secrets.token_urlsafe(24),
    }


@pytest.fixture(scope="module")
def secured(secured_overrides: dict[str, str]) -> Iterator[Settings]:
    with fresh_stack(Settings().with_overrides(secured_overrides)) as settings:
        yield settings


def _passwords(settings: Settings) -> dict[str, str]:
    """Every password of the secured stack: the two of the settings and the broker's own."""
    assert settings.kafka_sasl_password is not None and settings.redis_password is not None
    layout = stack_module.layout_of(settings)
    return {
        "kafka_sasl_password": settings.kafka_sasl_password.get_secret_value(),
        "redis_password": settings.redis_password.get_secret_value(),
        "broker password": credentials.broker_password(layout),
    }


def _leaks(text: str, passwords: dict[str, str]) -> list[str]:
    return [name for name, value in passwords.items() if value in text]


def test_scoring_over_secured_connections(
    secured: Settings, secured_overrides: dict[str, str]
) -> None:
    run = uuid.uuid4().hex[:8]
    job = {"job_name": f"secure-{run}", "consumer_group": f"secure-{run}"}
    overrides = {**secured_overrides, **job}
    settings = Settings().with_overrides(overrides)
    # Secrets among the overrides on purpose: submit must keep them off the command line.
    job_id = submit(settings, as_overrides(overrides))
    try:
        events = recent_events(seed=211, count=300, users=40, out_of_order=0.0)
        codec = Codec("event")
        send(settings, [(e["user_id"].encode(), codec.encode(e)) for e in events])

        ids = {e["event_id"] for e in events}
        predictions = collect(
            settings,
            settings.topic_predictions,
            "prediction",
            lambda r: r["event_id"] in ids,
            len(ids),
            timeout_s=180,
            read_committed=True,
        )
        counts = Counter(p["event_id"] for p in predictions)
        assert set(counts) == ids, f"missing {len(ids - set(counts))} predictions"
        assert max(counts.values()) == 1, "duplicate predictions"
        assert all(p["degraded"] == [] for p in predictions)  # Redis was reachable

        # Redis holds every user's features, read back as the ACL user.
        client = connect(settings)
        for user, (event_id, _) in expected_store(events).items():
            stored = read_features(client, settings.redis_key_prefix, user)
            assert stored is not None, user
            assert stored["event_id"] == event_id

        # The job's Python side logged in to Kafka too (it lists the events' partitions).
        logs = "".join(
            f.read_text(errors="replace") for f in (settings.state_dir / "logs").glob("*.log")
        )
        assert "could not list" not in logs

        passwords = _passwords(settings)
        for path in (f"/jobs/{job_id}/config", f"/jobs/{job_id}/plan", f"/jobs/{job_id}"):
            assert not _leaks(str(flink.rest(settings, path)), passwords), path
        assert not _leaks(str(flink.rest(settings, "/jobmanager/config")), passwords)
    finally:
        cancel(settings, job_id)


def test_no_password_in_logs_flink_files_or_command_lines(secured: Settings) -> None:
    passwords = _passwords(secured)
    root = secured.state_dir
    # Where secrets belong: the secrets folder, the supervisor's config (the TaskManagers'
    # environment), the broker's config (its own password). All readable by the owner only.
    private = {root / "supervisord.conf", root / "kafka" / "server.properties"}
    for path in private:
        assert path.stat().st_mode & 0o077 == 0, path
    assert (root / "secrets").stat().st_mode & 0o077 == 0
    broker_config = (root / "kafka" / "server.properties").read_text()
    assert _leaks(broker_config, passwords) == ["broker password"]

    skipped = {root / "secrets", root / "jars", *private}
    found: list[tuple[str, list[str]]] = []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file() or path in skipped:
            continue
        if any(parent in skipped for parent in path.parents):
            continue
        if path.suffix in (".index", ".timeindex"):
            continue  # Kafka's offset indexes: numbers only, preallocated to 10 MB each
        leaks = _leaks(path.read_bytes().decode("latin-1"), passwords)
        if leaks:
            found.append((str(path.relative_to(root)), leaks))
    assert not found, found
    assert any((root / "logs").iterdir())  # the scan did read the logs

    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode("latin-1")
        except OSError:
            continue  # the process has gone
        assert not _leaks(text, passwords), cmdline


def test_plaintext_client_is_refused(secured: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": secured.kafka_bootstrap, "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def test_wrong_sasl_password_is_refused(secured: Settings) -> None:
    wrong = secured.with_overrides({"kafka_sasl_password": secrets.token_urlsafe(24)})
    admin = AdminClient({**client_config(wrong), "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def test_broker_is_not_trusted_without_the_ca(secured: Settings) -> None:
    config = client_config(secured)
    del config["ssl.ca.location"]  # the system's CAs: none of them signed the broker
    admin = AdminClient({**config, "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def test_redis_refuses_clients_without_the_acl_user(secured: Settings) -> None:
    assert connect(secured).ping()
    anonymous = redis.Redis(host=secured.redis_host, port=secured.redis_port, socket_timeout=2)
    with pytest.raises(redis.RedisError):
        anonymous.ping()
    default_user = secured.with_overrides({"redis_username": None})
    with pytest.raises(redis.RedisError):
        connect(default_user).ping()  # the password alone is the default user's: it is off
    wrong = secured.with_overrides({"redis_password": secrets.token_urlsafe(24)})
    with pytest.raises(redis.RedisError):
        connect(wrong).ping()
