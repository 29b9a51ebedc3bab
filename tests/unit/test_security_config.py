"""Secured connections, the pure parts: settings and their secrets, the client configs, the
files and arguments the local stack writes for a SASL_SSL broker and an ACL-protected Redis, and
the job submission's command line. The servers themselves: tests/e2e/test_secured_stack.py."""

from __future__ import annotations

import logging
import pickle
import shutil
import ssl
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from streamscore.config import SECRET_FIELDS, Settings
from streamscore.errors import StackError
from streamscore.feature_store import connect
from streamscore.jobcontrol import public_overrides, run_arguments
from streamscore.kafka_io import client_config, connector_properties
from streamscore.stack import credentials, flink, kafka, redis_server, tls
from streamscore.stack.layout import StackLayout

KAFKA_PASSWORD = "kafka-pw-Zq8"
REDIS_PASSWORD = "redis-pw-Xk3"


def _secured(root: Path, **extra: str) -> Settings:
    return Settings().with_overrides(
        {
            "state_dir": str(root),
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_username": "app",
            "kafka_sasl_password": KAFKA_PASSWORD,
            "kafka_ssl_ca_location": str(root / "secrets" / tls.CA_CERT),
            "redis_username": "features",
            "redis_password": REDIS_PASSWORD,
            **extra,
        }
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- settings -----------------------------------------------------------------------------------
def test_defaults_are_plaintext_without_acl_user() -> None:
    s = Settings()
    assert s.kafka_security_protocol == "PLAINTEXT" and not s.kafka_sasl_ssl
    assert s.redis_username is None and s.redis_password is None
    assert client_config(s) == {"bootstrap.servers": "127.0.0.1:9092"}
    assert connector_properties(s) == {}


@pytest.mark.parametrize(
    "missing", ["kafka_sasl_username", "kafka_sasl_password", "kafka_ssl_ca_location"]
)
def test_sasl_ssl_needs_username_password_and_ca(tmp_path: Path, missing: str) -> None:
    values = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": "app",
        "kafka_sasl_password": KAFKA_PASSWORD,
        "kafka_ssl_ca_location": str(tmp_path / "ca.pem"),
    }
    del values[missing]
    with pytest.raises(ValidationError, match=missing) as error:
        Settings().with_overrides(values)
    assert KAFKA_PASSWORD not in str(error.value)  # the input is not quoted in the error


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STREAMSCORE_KAFKA_SASL_USERNAME", "app")
    monkeypatch.setenv("STREAMSCORE_KAFKA_SASL_PASSWORD", KAFKA_PASSWORD)
    monkeypatch.setenv("STREAMSCORE_KAFKA_SSL_CA_LOCATION", "ca.pem")
    s = Settings()
    assert s.kafka_sasl_password is not None
    assert s.kafka_sasl_password.get_secret_value() == KAFKA_PASSWORD
    assert s.kafka_ssl_ca_location is not None and s.kafka_ssl_ca_location.is_absolute()


def test_redis_username_has_no_spaces() -> None:
    with pytest.raises(ValidationError):
        Settings().with_overrides({"redis_username": "two words"})


def test_secrets_are_hidden_in_as_dict_repr_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = _secured(tmp_path)
    data = s.as_dict()
    assert data["kafka_sasl_password"] == data["redis_password"] == "**********"
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings %s / %r / %s", s, s, data)
    for text in (str(data), repr(s), str(s), s.model_dump_json(), caplog.text):
        assert KAFKA_PASSWORD not in text and REDIS_PASSWORD not in text


def test_secret_names_are_ones_flink_hides() -> None:
    """PyFlink's client logs the job script's environment, hiding values of names like these."""
    for name in SECRET_FIELDS:
        assert any(word in name for word in ("password", "secret", "token")), name
        assert "SecretStr" in str(Settings.model_fields[name].annotation), name


def test_secrets_travel_by_environment_not_by_job_graph(tmp_path: Path) -> None:
    s = _secured(tmp_path)
    assert s.secret_environment() == {
        "STREAMSCORE_KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        "STREAMSCORE_REDIS_PASSWORD": REDIS_PASSWORD,
    }
    assert Settings().secret_environment() == {}
    shipped = s.without_secrets()
    assert shipped.kafka_sasl_password is None and shipped.redis_password is None
    assert shipped.kafka_sasl_username == "app"  # everything else stays
    pickled = pickle.dumps(shipped)
    assert KAFKA_PASSWORD.encode() not in pickled and REDIS_PASSWORD.encode() not in pickled
    # On the TaskManager: back from its environment.
    restored = pickle.loads(pickled).with_secrets_from_env(s.secret_environment())
    assert restored == s
    assert shipped.with_secrets_from_env({}) == shipped


# --- Kafka clients ------------------------------------------------------------------------------
def test_client_config_for_sasl_ssl(tmp_path: Path) -> None:
    s = _secured(tmp_path)
    assert client_config(s) == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "app",
        "sasl.password": KAFKA_PASSWORD,
        "ssl.ca.location": str(tmp_path / "secrets" / tls.CA_CERT),
    }


def test_connector_properties_carry_no_credentials(tmp_path: Path) -> None:
    s = _secured(tmp_path)
    props = connector_properties(s)
    assert props == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tmp_path / "secrets" / tls.CA_CERT),
    }
    assert KAFKA_PASSWORD not in str(props)


def test_the_job_sources_have_the_security_properties_only_when_secured(tmp_path: Path) -> None:
    from streamscore.job.pipeline import source_properties

    assert "security.protocol" not in source_properties(Settings())
    secured = source_properties(_secured(tmp_path))
    assert secured["security.protocol"] == "SASL_SSL"
    assert secured["ssl.truststore.type"] == "PEM"
    assert "sasl.jaas.config" not in secured and KAFKA_PASSWORD not in str(secured)


# --- the job's command line ---------------------------------------------------------------------
def test_submit_command_line_carries_no_secret(tmp_path: Path) -> None:
    s = _secured(tmp_path)
    overrides = [
        "kafka_security_protocol=SASL_SSL",
        f"kafka_sasl_password={KAFKA_PASSWORD}",
        f"redis-password={REDIS_PASSWORD}",
        "redis_username=features",
    ]
    assert public_overrides(overrides) == [
        "kafka_security_protocol=SASL_SSL",
        "redis_username=features",
    ]
    args = run_arguments(s, overrides, tmp_path / "connector.jar")
    command = " ".join(args)
    assert KAFKA_PASSWORD not in command and REDIS_PASSWORD not in command
    assert "kafka_security_protocol=SASL_SSL" in args and "redis_username=features" in args
    assert f"state_dir={s.state_dir}" in args


# --- the local stack's Kafka broker -------------------------------------------------------------
def test_plaintext_broker_properties_are_unchanged() -> None:
    props = kafka.server_properties(Settings(), Path("data"))
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in props
    assert "inter.broker.listener.name=PLAINTEXT" in props
    assert "sasl" not in props and "ssl" not in props


def test_sasl_ssl_broker_properties(tmp_path: Path) -> None:
    s = _secured(tmp_path)
    security = kafka.BrokerSecurity(
        tls.broker_tls_paths(tmp_path / "secrets"), credentials.BROKER_USER, "broker-pw"
    )
    lines = kafka.server_properties(s, tmp_path / "data", security).splitlines()
    assert "listeners=SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in lines
    assert "advertised.listeners=SASL_SSL://127.0.0.1:9092" in lines
    assert "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT" in lines
    assert "inter.broker.listener.name=SASL_SSL" in lines
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in lines
    assert "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512" in lines
    assert (
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{credentials.BROKER_USER}" password="broker-pw";'
    ) in lines
    assert "ssl.keystore.type=PEM" in lines and "ssl.truststore.type=PEM" in lines
    assert f"ssl.keystore.location={tmp_path / 'secrets' / tls.BROKER_KEYSTORE}" in lines
    assert KAFKA_PASSWORD not in "\n".join(lines)  # the clients' user is set at start-up
    with pytest.raises(ValueError):
        kafka.server_properties(s, tmp_path / "data")


def test_storage_format_adds_the_broker_user_salted(tmp_path: Path) -> None:
    s = _secured(tmp_path)
    security = kafka.BrokerSecurity(tls.broker_tls_paths(tmp_path), "broker", "broker-pw")
    assert kafka._scram_arguments(Settings(), None) == []
    flag, value = kafka._scram_arguments(s, security)
    assert flag == "--add-scram"
    assert value.startswith("SCRAM-SHA-512=[name=broker,iterations=8192,salt=")
    assert "saltedpassword=" in value and "broker-pw" not in value


def test_salted_scram_is_pbkdf2_of_the_password() -> None:
    import base64
    import hashlib

    value = credentials.salted_scram_argument("SCRAM-SHA-512", "u", "pw", salt=b"0123456789abcdef")
    salted = hashlib.pbkdf2_hmac("sha512", b"pw", b"0123456789abcdef", 8192)
    assert value == (
        'SCRAM-SHA-512=[name=u,iterations=8192,salt="MDEyMzQ1Njc4OWFiY2RlZg==",'
        f'saltedpassword="{base64.b64encode(salted).decode()}"]'
    )


def test_stack_refuses_a_ca_setting_it_did_not_generate(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    s = _secured(tmp_path, kafka_ssl_ca_location=str(tmp_path / "elsewhere.pem"))
    with pytest.raises(StackError, match="kafka_ssl_ca_location"):
        kafka.broker_security(s, StackLayout(tmp_path))


# --- TLS ----------------------------------------------------------------------------------------
def test_subject_alt_names() -> None:
    assert tls.subject_alt_names(["127.0.0.1", "localhost", "127.0.0.1", "::1"]) == (
        "IP:127.0.0.1,DNS:localhost,IP:::1"
    )


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> None:
    """A TLS handshake in memory, as a client checking the server's name ``host``."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=host)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for name, side in (("c", c), ("s", s)):
            try:
                side.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("no handshake")


def test_generated_certificates(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path / "secrets"
    files = tls.ensure_broker_tls(directory, ["127.0.0.1", "localhost"])
    assert _mode(files.keystore) == 0o600 and _mode(directory) == 0o700
    assert sorted(p.name for p in directory.iterdir()) == [tls.BROKER_KEYSTORE, tls.CA_CERT]
    keystore = files.keystore.read_text()
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert keystore.count("BEGIN CERTIFICATE") == 2  # broker certificate, then the CA's
    before = files.ca_cert.read_bytes()
    assert tls.ensure_broker_tls(directory, ["127.0.0.1"]).ca_cert.read_bytes() == before

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.keystore)
    client = ssl.create_default_context(cafile=str(files.ca_cert))
    _handshake(server, client, "127.0.0.1")
    _handshake(server, client, "localhost")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client, "example.org")


# --- JAAS, Redis, Flink, supervisor files ---------------------------------------------------------
def test_client_jaas_file(tmp_path: Path) -> None:
    s = _secured(tmp_path, kafka_sasl_username='a"b', kafka_sasl_password='p\\w"d')
    layout = StackLayout(tmp_path)
    path = credentials.write_client_jaas(s, layout)
    assert path == tmp_path / "secrets" / "kafka_client_jaas.conf"
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert path.read_text() == (
        "KafkaClient {\n"
        "  org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule"
        ' required username="a\\"b" password="p\\\\w\\"d";\n'
        "};\n"
    )


def test_write_private_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    path.chmod(0o644)
    credentials.write_private(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o600


def test_broker_password_is_generated_once(tmp_path: Path) -> None:
    layout = StackLayout(tmp_path)
    first = credentials.broker_password(layout)
    assert len(first) >= 32 and credentials.broker_password(layout) == first
    assert _mode(tmp_path / "secrets" / credentials.BROKER_PASSWORD_FILE) == 0o600


def test_redis_arguments_in_both_modes(tmp_path: Path) -> None:
    layout = StackLayout(tmp_path)
    plain = redis_server.server_args(Settings(), layout)
    assert "--aclfile" not in plain and "--requirepass" not in plain
    with_password = Settings().with_overrides({"redis_password": REDIS_PASSWORD})
    assert redis_server.server_args(with_password, layout)[-2:] == ["--requirepass", REDIS_PASSWORD]

    s = _secured(tmp_path)
    args = redis_server.server_args(s, layout)
    assert args[-2:] == ["--aclfile", str(tmp_path / "secrets" / redis_server.ACL_FILE)]
    assert REDIS_PASSWORD not in " ".join(args) and "--requirepass" not in args
    assert args[:-2] == plain  # everything else as without ACLs


def test_redis_acl_file(tmp_path: Path) -> None:
    import hashlib

    s = _secured(tmp_path)
    layout = StackLayout(tmp_path)
    redis_server.prepare(s, layout)
    path = redis_server.acl_file(layout)
    assert _mode(path) == 0o600
    digest = hashlib.sha256(REDIS_PASSWORD.encode()).hexdigest()
    assert path.read_text().splitlines() == [
        "user default off resetpass resetkeys resetchannels -@all",
        f"user features on #{digest} ~* &* +@all",
    ]
    assert REDIS_PASSWORD not in path.read_text()


def test_redis_client_logs_in_as_the_acl_user(tmp_path: Path) -> None:
    kwargs = connect(_secured(tmp_path)).connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("features", REDIS_PASSWORD)
    assert connect(Settings()).connection_pool.connection_kwargs["username"] is None


def test_flink_jvms_get_the_jaas_file_only_when_secured(tmp_path: Path) -> None:
    layout = StackLayout(tmp_path)
    assert "java.security.auth.login.config" not in flink.java_opts(Settings(), layout)
    opts = flink.java_opts(_secured(tmp_path), layout)
    assert opts.endswith(
        f"-Djava.security.auth.login.config={tmp_path / 'secrets' / 'kafka_client_jaas.conf'}"
    )
    assert opts.startswith(flink.shipped_java_opts())


def test_flink_jvms_compile_with_c1_only_unless_turned_off(tmp_path: Path) -> None:
    layout = StackLayout(tmp_path)
    shipped = flink.shipped_java_opts().strip()
    assert flink.java_opts(Settings(), layout) == f"{shipped} -XX:TieredStopAtLevel=1"
    tiered = Settings().with_overrides({"flink_jit_c1_only": False})
    assert flink.java_opts(tiered, layout) == shipped


def test_taskmanagers_touch_their_heap_at_start_unless_turned_off(tmp_path: Path) -> None:
    layout = StackLayout(tmp_path)
    config = flink.cluster_config(Settings(), layout)
    assert config["env.java.opts.taskmanager"] == "-XX:+AlwaysPreTouch"
    assert "AlwaysPreTouch" not in config["env.java.opts.all"]  # not the JobManager
    untouched = Settings().with_overrides({"flink_taskmanager_pretouch": False})
    assert flink.cluster_config(untouched, layout)["env.java.opts.taskmanager"] == ""


def test_extra_flink_config_goes_over_the_stacks_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = StackLayout(tmp_path)
    extra = '{"state.backend.rocksdb.compaction.style": "UNIVERSAL", "heartbeat.interval": "5000"}'
    monkeypatch.setenv("STREAMSCORE_FLINK_EXTRA_CONFIG", extra)
    config = flink.cluster_config(Settings(), layout)
    assert config["state.backend.rocksdb.compaction.style"] == "UNIVERSAL"
    assert config["heartbeat.interval"] == "5000"  # over the stack's 2000
    monkeypatch.delenv("STREAMSCORE_FLINK_EXTRA_CONFIG")
    assert flink.cluster_config(Settings(), layout)["heartbeat.interval"] == 2000


def test_extra_java_opts_come_last(tmp_path: Path) -> None:
    layout = StackLayout(tmp_path)
    extra = "-XX:+UseParallelGC -Dprofiled=yes"
    secured = _secured(tmp_path).with_overrides({"flink_extra_java_opts": extra})
    opts = flink.java_opts(secured, layout)
    assert opts.endswith(f"kafka_client_jaas.conf {extra}")


def test_taskmanagers_get_the_secrets_in_their_environment(tmp_path: Path) -> None:
    layout = StackLayout(tmp_path)
    jobmanager, *taskmanagers = flink.programs(_secured(tmp_path), layout)
    for tm in taskmanagers:
        assert tm.environment["STREAMSCORE_KAFKA_SASL_PASSWORD"] == KAFKA_PASSWORD
        assert tm.environment["STREAMSCORE_REDIS_PASSWORD"] == REDIS_PASSWORD
    assert not any(k.startswith("STREAMSCORE_") for k in jobmanager.environment)
    assert KAFKA_PASSWORD not in " ".join(jobmanager.command + taskmanagers[0].command)
    plain = flink.programs(Settings(), layout)
    assert not any(k.startswith("STREAMSCORE_") for p in plain for k in p.environment)


def test_supervisor_config_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamscore.stack import supervision

    layout = StackLayout(tmp_path)
    monkeypatch.setattr(supervision, "running", lambda _layout: True)
    monkeypatch.setattr(supervision, "_rpc", _NoRpc)
    supervision.up(layout, flink.programs(_secured(tmp_path), layout))
    assert _mode(layout.supervisor_config) == 0o600


class _NoRpc:
    """A running supervisord that has nothing to change."""

    def __init__(self, _layout: StackLayout) -> None:
        pass

    def reloadConfig(self) -> list[list[list[str]]]:  # noqa: N802 (supervisord's name)
        return [[[], [], []]]

    def getAllProcessInfo(self) -> list[dict[str, str]]:  # noqa: N802
        return []


def test_job_sinks_take_batching_from_the_settings(tmp_path: Path) -> None:
    from streamscore.job.pipeline import sink_properties

    tuned = Settings().with_overrides({"sink_batch_bytes": 262_144, "sink_linger_ms": 20})
    assert sink_properties(tuned)["batch.size"] == "262144"
    assert sink_properties(tuned)["linger.ms"] == "20"
    assert sink_properties(Settings())["batch.size"] == "16384"
    secured = sink_properties(_secured(tmp_path))
    assert secured["security.protocol"] == "SASL_SSL" and secured["batch.size"] == "16384"
