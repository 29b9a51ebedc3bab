"""docker-compose.yml, infra/k8s/ and the Dockerfile agree with the local stack.

They restate values that streamscore/config.py and streamscore/stack/ own: topics and partitions,
ports, the Kafka broker's and the Flink cluster's configs, where the image keeps its files. These
tests read the files statically (no Docker, no servers) and fail when the two drift apart.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamscore.config import Settings
from streamscore.stack.flink import cluster_config
from streamscore.stack.kafka import server_properties
from streamscore.stack.layout import StackLayout

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "infra" / "k8s"
FLINK_ROLES = ("jobmanager", "taskmanager", "submit")

# Local values that containers must replace: loopback hosts become service names or 0.0.0.0
# (taskmanager.host is left out so each TaskManager advertises its own address), and the
# developer's interpreter becomes the image's.
FLINK_CONTAINER_KEYS = {
    "jobmanager.rpc.address",
    "jobmanager.bind-host",
    "taskmanager.bind-host",
    "taskmanager.host",
    "rest.address",
    "rest.bind-address",
    "metrics.reporter.prom.host",
    "python.executable",
    "python.client.executable",
}
# The broker's listeners and log dir differ, and the image needs a static controller quorum.
KAFKA_CONTAINER_KEYS = {
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "controller.quorum.bootstrap.servers",
    "log.dirs",
}


@dataclass(frozen=True)
class Stack:
    """What one set of deployment files says, in the same shape for compose and k8s."""

    flink_config: dict[str, Any]
    cli_env: dict[str, str]  # STREAMSCORE_* of the client that submits the job
    kafka_env: dict[str, str]  # the broker's variables
    topics: dict[str, int]  # what the init-topics step creates
    topic_spec: str  # the init-topics step's TOPICS value
    redis_args: list[str]
    redis_ports: set[int]  # where other containers (and the host) reach Redis
    images: dict[str, set[str]]  # Flink role -> images of its containers
    config_mounts: dict[str, str]  # Flink role -> where config.yaml is mounted
    volume_mounts: dict[str, set[str]]  # Flink role -> paths backed by a volume
    hostnames: set[str]  # names other containers can resolve


def _topics(spec: str) -> dict[str, int]:
    """``"events:4 predictions:4:a=b"`` -> ``{"events": 4, "predictions": 4}``."""
    return {item.split(":")[0]: int(item.split(":")[1]) for item in spec.split()}


def _topic_configs(spec: str) -> dict[str, dict[str, str]]:
    """``"events:4 predictions:4:a=b,c=d"`` -> each topic's configs (``{}`` when none)."""
    return {
        parts[0]: dict(c.split("=", 1) for c in parts[2].split(",")) if len(parts) > 2 else {}
        for parts in (item.split(":", 2) for item in spec.split())
    }


def _strings(mapping: dict[str, Any]) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in mapping.items()}


@cache
def compose_stack() -> Stack:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]

    def published(service: str) -> set[int]:
        return {int(p.rsplit(":", 1)[1]) for p in services[service].get("ports", [])}

    return Stack(
        flink_config=yaml.safe_load(compose["configs"]["flink-config"]["content"]),
        cli_env=_strings(services["submit"]["environment"]),
        kafka_env=_strings(services["kafka"]["environment"]),
        topics=_topics(services["init-topics"]["environment"]["TOPICS"]),
        topic_spec=services["init-topics"]["environment"]["TOPICS"],
        redis_args=services["redis"]["command"],
        redis_ports=published("redis"),
        images={role: {services[role]["image"]} for role in FLINK_ROLES},
        config_mounts={
            role: next(
                c["target"] for c in services[role]["configs"] if c["source"] == "flink-config"
            )
            for role in FLINK_ROLES
        },
        volume_mounts={
            role: {v.split(":")[1] for v in services[role].get("volumes", [])}
            for role in FLINK_ROLES
        },
        hostnames=set(services),
    )


@cache
def k8s_docs() -> dict[tuple[str, str], dict[str, Any]]:
    docs = {}
    for path in sorted(K8S_DIR.glob("[0-9]*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


@cache
def k8s_stack() -> Stack:
    docs = k8s_docs()
    pods = {
        "jobmanager": docs[("Deployment", "jobmanager")],
        "submit": docs[("Job", "submit")],
        "taskmanager": docs[("Deployment", "taskmanager")],
    }
    pods = {role: doc["spec"]["template"]["spec"] for role, doc in pods.items()}

    def mounts(role: str) -> dict[str, dict[str, Any]]:
        """Mount path -> the volume behind it, for the role's main container."""
        volumes = {v["name"]: v for v in pods[role]["volumes"]}
        mounted = pods[role]["containers"][0]["volumeMounts"]
        return {m["mountPath"]: volumes[m["name"]] for m in mounted}

    def container(kind: str, name: str) -> dict[str, Any]:
        return docs[(kind, name)]["spec"]["template"]["spec"]["containers"][0]

    cli_env: dict[str, str] = {}
    for source in pods["submit"]["containers"][0]["envFrom"]:
        cli_env.update(docs[("ConfigMap", source["configMapRef"]["name"])]["data"])
    init_topics = {e["name"]: e["value"] for e in container("Job", "init-topics")["env"]}
    redis_service = docs[("Service", "redis")]["spec"]["ports"]
    return Stack(
        flink_config=yaml.safe_load(docs[("ConfigMap", "flink-config")]["data"]["config.yaml"]),
        cli_env=_strings(cli_env),
        kafka_env={e["name"]: e["value"] for e in container("StatefulSet", "kafka")["env"]},
        topics=_topics(init_topics["TOPICS"]),
        topic_spec=init_topics["TOPICS"],
        redis_args=container("Deployment", "redis")["args"],
        redis_ports={p["port"] for p in redis_service} | {p["targetPort"] for p in redis_service},
        images={
            role: {c["image"] for c in pod["containers"] + pod.get("initContainers", [])}
            for role, pod in pods.items()
        },
        config_mounts={
            role: next(
                path
                for path, v in mounts(role).items()
                if v.get("configMap", {}).get("name") == "flink-config"
            )
            for role in FLINK_ROLES
        },
        volume_mounts={
            role: {path for path, v in mounts(role).items() if "persistentVolumeClaim" in v}
            for role in FLINK_ROLES
        },
        hostnames={name for kind, name in docs if kind == "Service"},
    )


@pytest.fixture(params=["compose", "k8s"])
def stack(request: pytest.FixtureRequest) -> Stack:
    return compose_stack() if request.param == "compose" else k8s_stack()


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The default settings, whatever STREAMSCORE_* variables this shell has."""
    for name in Settings.model_fields:
        monkeypatch.delenv(f"STREAMSCORE_{name.upper()}", raising=False)
    return Settings()


@cache
def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    return dict(re.findall(r"\b((?:FLINK|STREAMSCORE)_\w+|VIRTUAL_ENV)=(\S+)", text))


def image_layout() -> StackLayout:
    """The layout the CLI sees inside the image, whose state dir the Dockerfile sets."""
    return StackLayout(Path(dockerfile_env()["STREAMSCORE_STATE_DIR"]))


def expected_image() -> str:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return f"streamscore:{version}"


def cli_settings(stack: Stack, defaults: Settings) -> Settings:
    """The settings of the containerized CLI; unknown or invalid variables fail here."""
    assert all(name.startswith("STREAMSCORE_") for name in stack.cli_env)
    return defaults.with_overrides(
        {name.removeprefix("STREAMSCORE_").lower(): value for name, value in stack.cli_env.items()}
    )


def test_topics_and_partitions_are_the_settings(stack: Stack, defaults: Settings) -> None:
    assert stack.topics == defaults.topic_partitions()


def test_topic_configs_are_the_local_stacks(stack: Stack, defaults: Settings) -> None:
    """Timestamp types (LogAppendTime outputs), the compacted control topic, its size limit."""
    from streamscore.stack.kafka import topic_config

    local = {topic: topic_config(defaults, topic) for topic in defaults.topic_partitions()}
    assert _topic_configs(stack.topic_spec) == local


def test_cli_reaches_the_services_on_the_default_ports(stack: Stack, defaults: Settings) -> None:
    s = cli_settings(stack, defaults)
    assert {s.kafka_host, s.redis_host, s.flink_rest_host} <= stack.hostnames
    for port in ("kafka_port", "redis_port", "flink_rest_port", "metrics_port"):
        assert getattr(s, port) == getattr(defaults, port), port


def test_redis_serves_on_the_settings_port(stack: Stack, defaults: Settings) -> None:
    args = stack.redis_args
    assert args[args.index("--port") + 1] == str(defaults.redis_port)
    assert stack.redis_ports == {defaults.redis_port}


def test_kafka_broker_is_configured_like_the_local_one(stack: Stack, defaults: Settings) -> None:
    lines = server_properties(defaults, Path("data")).splitlines()
    local = dict(line.split("=", 1) for line in lines if line)
    env = stack.kafka_env
    for key, value in local.items():
        if key not in KAFKA_CONTAINER_KEYS:
            assert env.get("KAFKA_" + key.upper().replace(".", "_")) == value, key
    assert int(env["KAFKA_TRANSACTION_MAX_TIMEOUT_MS"]) >= defaults.transaction_timeout_ms
    heap = defaults.kafka_heap
    assert env["KAFKA_HEAP_OPTS"].split() == [f"-Xmx{heap}", f"-Xms{heap}"]


def _listeners(spec: str) -> dict[str, tuple[str, int]]:
    """``"PLAINTEXT://kafka:9092,..."`` -> ``{"PLAINTEXT": ("kafka", 9092), ...}``."""
    result = {}
    for item in spec.split(","):
        name, address = item.split("://")
        host, port = address.rsplit(":", 1)
        result[name] = (host, int(port))
    return result


def test_kafka_listens_where_the_settings_point(stack: Stack, defaults: Settings) -> None:
    listeners = _listeners(stack.kafka_env["KAFKA_LISTENERS"])
    advertised = _listeners(stack.kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    assert listeners["PLAINTEXT"][1] == defaults.kafka_port
    assert listeners["CONTROLLER"][1] == defaults.kafka_controller_port
    s = cli_settings(stack, defaults)
    assert advertised["PLAINTEXT"] == (s.kafka_host, s.kafka_port)


def test_compose_publishes_kafka_at_the_default_bootstrap(defaults: Settings) -> None:
    """From the host, the CLI's default settings reach the broker through the second listener."""
    kafka = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["kafka"]
    listeners = _listeners(kafka["environment"]["KAFKA_LISTENERS"])
    advertised = _listeners(kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"])
    (published,) = kafka["ports"]
    host_ip, host_port, container_port = published.split(":")
    (external,) = [name for name, (_, port) in listeners.items() if port == int(container_port)]
    assert f"{host_ip}:{host_port}" == defaults.kafka_bootstrap
    assert advertised[external] == (defaults.kafka_host, defaults.kafka_port)


def test_flink_config_is_the_local_cluster_config(stack: Stack, defaults: Settings) -> None:
    config = stack.flink_config
    assert config["state.backend.type"] == "rocksdb"
    assert config["execution.checkpointing.incremental"] is True
    assert config["python.execution-mode"] == "thread"
    assert "pemja." in config["classloader.parent-first-patterns.additional"].split(";")
    # Every other key as the local stack writes it, with paths under the image's state dir.
    local = _strings(cluster_config(defaults, image_layout()))
    container = _strings(config)
    for key, value in local.items():
        if key not in FLINK_CONTAINER_KEYS:
            assert container.get(key) == value, key
    assert {config["jobmanager.rpc.address"], config["rest.address"]} <= stack.hostnames
    python = f"{dockerfile_env()['VIRTUAL_ENV']}/bin/python"
    assert config["python.executable"] == config["python.client.executable"] == python


def test_flink_processes_share_checkpoint_and_savepoint_volumes(stack: Stack) -> None:
    for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir"):
        path = stack.flink_config[key].removeprefix("file://")
        for role in ("jobmanager", "taskmanager"):
            assert path in stack.volume_mounts[role], (role, key)


def test_config_yaml_is_mounted_where_the_image_reads_it(stack: Stack) -> None:
    expected = str(image_layout().flink_conf / "config.yaml")
    assert f"{dockerfile_env()['FLINK_CONF_DIR']}/config.yaml" == expected
    assert stack.config_mounts == dict.fromkeys(FLINK_ROLES, expected)


def test_flink_and_cli_run_the_image_of_our_dockerfile(stack: Stack) -> None:
    assert stack.images == dict.fromkeys(FLINK_ROLES, {expected_image()})


def test_compose_builds_that_image_from_our_dockerfile() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for role in FLINK_ROLES:
        build = services[role]["build"]
        dockerfile = ROOT / build["context"] / build.get("dockerfile", "Dockerfile")
        assert dockerfile.resolve() == ROOT / "Dockerfile"


def test_dockerfile_puts_files_where_the_cli_looks() -> None:
    layout, env = image_layout(), dockerfile_env()
    jars = re.search(r"-DoutputDirectory=(\S+)", (ROOT / "Dockerfile").read_text())
    assert jars is not None and Path(jars.group(1)) == layout.flink_jars
    assert Path(env["FLINK_LIB_DIR"]) == layout.flink_work / "lib"  # what build_lib_dir() makes
    assert Path(env["FLINK_LOG_DIR"]) == layout.logs
    assert Path(env["FLINK_PID_DIR"]) == layout.pids


def test_compose_and_k8s_run_the_same_flink_config_and_cli_settings() -> None:
    assert compose_stack().flink_config == k8s_stack().flink_config
    assert compose_stack().cli_env == k8s_stack().cli_env


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert kustomization["resources"] == sorted(p.name for p in K8S_DIR.glob("[0-9]*.yaml"))
