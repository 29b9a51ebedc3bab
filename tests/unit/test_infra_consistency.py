"""docker-compose.yml, infra/k8s/ and the Dockerfile agree with the local stack.

They restate values that streamscore/config.py and streamscore/stack/ own: topics and partitions,
ports, the Kafka broker's and the Flink cluster's configs, where the image keeps its files, what
Prometheus scrapes and which rules it evaluates. These tests read the files statically (no
Docker, no servers; only `promtool check config`) and fail when the two drift apart.
"""

from __future__ import annotations

import re
import subprocess
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
from streamscore.stack.prometheus import scrape_config
from streamscore.stack.redis_server import server_args

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "infra" / "k8s"
FLINK_ROLES = ("jobmanager", "taskmanager", "submit")
RULES = ROOT / "streamscore" / "monitoring" / "rules.yml"
# Kustomize reads no file outside infra/k8s/, so the rules ConfigMap is generated from a copy.
K8S_RULES = K8S_DIR / "prometheus" / "rules.yml"
# The local stack runs Debian's prometheus package (bookworm: 2.42.0; `promtool --version`
# shows it). The containers run the same version, so the rules behave the same everywhere.
PROMETHEUS_VERSION = "2.42.0"

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
# Redis in a container listens beyond loopback (the network is the boundary, so protected mode
# is off) and keeps its data dir on a volume of its own; every other flag is the local one.
REDIS_CONTAINER_FLAGS = {"--bind", "--daemonize", "--dir", "--protected-mode"}


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
    redis_volume_mounts: set[str]  # Redis's paths backed by a volume
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
        redis_volume_mounts={
            v.split(":")[1]
            for v in services["redis"].get("volumes", [])
            if not v.startswith((".", "/"))  # a named volume, not a bind mount
        },
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
    redis_pod = docs[("Deployment", "redis")]["spec"]["template"]["spec"]
    redis_volumes = {v["name"]: v for v in redis_pod.get("volumes", [])}
    return Stack(
        flink_config=yaml.safe_load(docs[("ConfigMap", "flink-config")]["data"]["config.yaml"]),
        cli_env=_strings(cli_env),
        kafka_env={e["name"]: e["value"] for e in container("StatefulSet", "kafka")["env"]},
        topics=_topics(init_topics["TOPICS"]),
        topic_spec=init_topics["TOPICS"],
        redis_args=container("Deployment", "redis")["args"],
        redis_ports={p["port"] for p in redis_service} | {p["targetPort"] for p in redis_service},
        redis_volume_mounts={
            m["mountPath"]
            for m in redis_pod["containers"][0].get("volumeMounts", [])
            if "persistentVolumeClaim" in redis_volumes[m["name"]]
        },
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


def dockerfile_text() -> str:
    return (ROOT / "Dockerfile").read_text()


@cache
def dockerfile_env() -> dict[str, str]:
    return dict(re.findall(r"\b((?:FLINK|STREAMSCORE)_\w+|VIRTUAL_ENV)=(\S+)", dockerfile_text()))


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


def _redis_flags(args: list[str]) -> dict[str, str]:
    """``["redis-server", "--port", "6379", "--save", ""]`` -> ``{"--port": "6379", ...}``."""
    first = next(i for i, arg in enumerate(args) if arg.startswith("--"))
    flags = args[first:]
    assert len(flags) % 2 == 0 and all(f.startswith("--") for f in flags[::2]), args
    return dict(zip(flags[::2], flags[1::2], strict=True))


def test_redis_persists_like_the_local_one(stack: Stack, defaults: Settings) -> None:
    """The same AOF flags as the local server (appendonly, everysec, no RDB snapshots), and the
    data dir on a volume, so a restarted container finds the store it left."""
    local = _redis_flags(server_args(defaults, image_layout()))
    container = _redis_flags(stack.redis_args)
    assert local["--appendonly"] == "yes" and local["--appendfsync"] == "everysec"
    assert set(container) <= set(local), "a flag the local server does not run with"
    for flag, value in local.items():
        if flag not in REDIS_CONTAINER_FLAGS:
            assert container.get(flag) == value, flag
    assert container["--dir"] in stack.redis_volume_mounts


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
    c1_only = "-XX:TieredStopAtLevel=1" in env.get("KAFKA_OPTS", "").split()
    assert c1_only == defaults.kafka_jit_c1_only


def test_local_broker_compiles_as_the_setting_says(tmp_path: Path) -> None:
    from streamscore.stack.kafka import program

    for c1_only in (True, False):
        s = Settings().with_overrides({"kafka_jit_c1_only": c1_only})
        command = program(s, StackLayout(tmp_path)).command
        assert ("-XX:TieredStopAtLevel=1" in command) == c1_only


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
    jars = re.search(r"-DoutputDirectory=(\S+)", dockerfile_text())
    assert jars is not None and Path(jars.group(1)) == layout.flink_jars
    # The job's own operators' jar, where the job (pipeline.configure) looks for it.
    operators = re.search(r"python -m streamscore\.job\.jvm_jar (\S+)", dockerfile_text())
    assert operators is not None and Path(operators.group(1)) == layout.flink_jars
    assert f"COPY --from=operators {layout.flink_jars}/ {layout.flink_jars}/" in dockerfile_text()
    # The Kafka sink's serializer is compiled against the connector's jar (jvm_jar.kafka_jar):
    # the stage that builds the jars has the connector's before it builds them.
    text = dockerfile_text()
    connector = text.find(f"COPY --from=jars {layout.flink_jars}/ {layout.flink_jars}/")
    assert -1 < connector < text.find("python -m streamscore.job.jvm_jar")
    assert Path(env["FLINK_LIB_DIR"]) == layout.flink_work / "lib"  # what build_lib_dir() makes
    assert Path(env["FLINK_LOG_DIR"]) == layout.logs
    assert Path(env["FLINK_PID_DIR"]) == layout.pids


def test_compose_and_k8s_run_the_same_flink_config_and_cli_settings() -> None:
    assert compose_stack().flink_config == k8s_stack().flink_config
    assert compose_stack().cli_env == k8s_stack().cli_env


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert kustomization["resources"] == sorted(p.name for p in K8S_DIR.glob("[0-9]*.yaml"))


# --- Prometheus ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prometheus:
    """What one set of deployment files says about Prometheus, in the same shape for both."""

    name: str  # "compose" or "k8s"
    image: str
    args: dict[str, str]  # --flag=value
    files: dict[str, str]  # path in the container -> its content
    sources: dict[str, Path]  # path in the container -> the repository file mounted there
    targets: dict[str, set[tuple[str, int]]]  # scrape job -> (service or Deployment, port)

    @property
    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.files[self.args["--config.file"]])


def _flags(args: list[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in args)


@cache
def compose_prometheus() -> Prometheus:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    service = services["prometheus"]
    sources = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):  # a bind mount, not a named volume
            sources[target] = (ROOT / source).resolve()
    files = {path: source.read_text() for path, source in sources.items() if source.is_file()}
    config = yaml.safe_load(files[_flags(service["command"])["--config.file"]])
    targets: dict[str, set[tuple[str, int]]] = {}
    for job in config["scrape_configs"]:
        found = targets.setdefault(job["job_name"], set())
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                found.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            assert dns["type"] == "A", "one A record per replica of a compose service"
            found.update((name, dns["port"]) for name in dns["names"])
    return Prometheus(
        name="compose",
        image=service["image"],
        args=_flags(service["command"]),
        files=files,
        sources=sources,
        targets=targets,
    )


def _generated_config_maps() -> dict[str, dict[str, Path]]:
    """kustomization.yaml's configMapGenerator: ConfigMap name -> key -> file."""
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True
    generated = {}
    for generator in kustomization["configMapGenerator"]:
        files = {}
        for entry in generator["files"]:
            key, _, path = entry.rpartition("=")
            files[key or Path(path).name] = K8S_DIR / path
        generated[generator["name"]] = files
    return generated


def _k8s_pods_keeping(keep: dict[str, str]) -> set[tuple[str, int]]:
    """The (Deployment, port) pairs whose pods a pod-role ``keep`` relabelling selects."""
    port = int(keep["__meta_kubernetes_pod_container_port_number"])
    labels = {
        name.removeprefix("__meta_kubernetes_pod_label_"): value
        for name, value in keep.items()
        if name.startswith("__meta_kubernetes_pod_label_")
    }
    assert labels, "select pods by their labels"
    found = set()
    for (kind, name), doc in k8s_docs().items():
        if kind not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]
        ports = {p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        if labels.items() <= pod["metadata"].get("labels", {}).items() and port in ports:
            found.add((name, port))
    return found


@cache
def k8s_prometheus() -> Prometheus:
    docs = k8s_docs()
    pod = docs[("Deployment", "prometheus")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    generated = _generated_config_maps()
    volumes = {v["name"]: v for v in pod["volumes"]}
    files, sources = {}, {}
    for mount in container["volumeMounts"]:
        config_map = volumes[mount["name"]].get("configMap", {}).get("name")
        if config_map is None:
            continue
        if config_map in generated:
            keys = {key: path.read_text() for key, path in generated[config_map].items()}
            for key, path in generated[config_map].items():
                sources[f"{mount['mountPath']}/{key}"] = path
        else:
            keys = docs[("ConfigMap", config_map)]["data"]
        if "subPath" in mount:
            files[mount["mountPath"]] = keys[mount["subPath"]]
        else:
            files.update({f"{mount['mountPath']}/{key}": text for key, text in keys.items()})
    args = _flags(container["args"])
    config = yaml.safe_load(files[args["--config.file"]])
    targets = {}
    for job in config["scrape_configs"]:
        (sd,) = job["kubernetes_sd_configs"]
        assert sd["role"] == "pod" and sd["namespaces"]["names"] == ["streamscore"], job
        keep = {}
        for relabel in job["relabel_configs"]:
            if relabel.get("action") == "keep":
                values = relabel["regex"].split(";")
                assert len(values) == len(relabel["source_labels"]), relabel
                keep.update(zip(relabel["source_labels"], values, strict=True))
        targets[job["job_name"]] = _k8s_pods_keeping(keep)
    return Prometheus(
        name="k8s",
        image=container["image"],
        args=args,
        files=files,
        sources=sources,
        targets=targets,
    )


@pytest.fixture(params=["compose", "k8s"])
def prometheus(request: pytest.FixtureRequest) -> Prometheus:
    return compose_prometheus() if request.param == "compose" else k8s_prometheus()


def test_k8s_rules_are_a_copy_of_the_monitoring_rules() -> None:
    assert K8S_RULES.read_bytes() == RULES.read_bytes(), (
        "infra/k8s/prometheus/rules.yml is stale: "
        "cp streamscore/monitoring/rules.yml infra/k8s/prometheus/rules.yml"
    )


def test_prometheus_evaluates_the_monitoring_rules(prometheus: Prometheus) -> None:
    (rules,) = prometheus.config["rule_files"]
    # compose mounts the rules file itself; k8s generates its ConfigMap from the copy.
    expected = {"compose": RULES, "k8s": K8S_RULES}[prometheus.name]
    assert prometheus.sources.get(rules) == expected
    assert prometheus.files[rules] == RULES.read_text()


def test_prometheus_scrapes_what_the_local_stack_scrapes(
    prometheus: Prometheus, defaults: Settings
) -> None:
    """The job's /metrics on every TaskManager, Flink's reporter on every Flink process."""
    local = scrape_config(defaults)
    interval = f"{defaults.prometheus_scrape_interval_s}s"
    assert prometheus.config["global"] == local["global"]
    assert local["global"] == {"scrape_interval": interval, "evaluation_interval": interval}
    assert [job["job_name"] for job in prometheus.config["scrape_configs"]] == [
        job["job_name"] for job in local["scrape_configs"]
    ]
    reporter = cluster_config(defaults, image_layout())["metrics.reporter.prom.port"]
    assert reporter == defaults.flink_prometheus_port
    # One Flink process per container or pod, so each listens on the first port of the range.
    flink_port = int(str(reporter).split("-")[0])
    assert prometheus.targets == {
        "streamscore": {("taskmanager", defaults.metrics_port)},
        "flink": {("jobmanager", flink_port), ("taskmanager", flink_port)},
    }


def test_prometheus_is_the_local_stacks_version(prometheus: Prometheus, defaults: Settings) -> None:
    assert prometheus.image == f"prom/prometheus:v{PROMETHEUS_VERSION}"
    assert prometheus.args["--storage.tsdb.retention.time"] == defaults.prometheus_retention


def test_promtool_accepts_the_prometheus_config(prometheus: Prometheus, tmp_path: Path) -> None:
    """The config as Prometheus loads it, with rule_files pointing at the repository's files.

    Debian's promtool is built without Kubernetes discovery, so the k8s config is checked with
    static targets in its place (global settings, relabelling and rules are checked all the same).
    """
    config = prometheus.config
    config["rule_files"] = [str(prometheus.sources[path]) for path in config["rule_files"]]
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["pod:1"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_compose_publishes_prometheus_at_the_default_url(defaults: Settings) -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    (published,) = services["prometheus"]["ports"]
    host_ip, host_port, _ = published.split(":")
    assert f"http://{host_ip}:{host_port}" == defaults.prometheus_url
    assert {host for targets in compose_prometheus().targets.values() for host, _ in targets} <= (
        set(services)
    )


def test_compose_publishes_a_host_port_per_taskmanager_replica() -> None:
    taskmanager = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][
        "taskmanager"
    ]
    for published in taskmanager["ports"]:
        first, _, last = published.split(":")[1].partition("-")
        assert int(last or first) - int(first) + 1 == taskmanager["deploy"]["replicas"], published


def test_compose_grafana_reads_prometheus_and_our_dashboards() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = {
        target: (ROOT / source).resolve()
        for source, target, *_ in (v.split(":") for v in services["grafana"]["volumes"])
    }
    provisioning = {
        target.removeprefix("/etc/grafana/provisioning/"): path
        for target, path in mounts.items()
        if target.startswith("/etc/grafana/provisioning/")
    }
    (datasource,) = [
        d
        for f in sorted(provisioning["datasources"].glob("*.yml"))
        for d in yaml.safe_load(f.read_text())["datasources"]
    ]
    prometheus_port = services["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert datasource["uid"] == "prometheus"
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    (provider,) = [
        p
        for f in sorted(provisioning["dashboards"].glob("*.yml"))
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert mounts[provider["options"]["path"]] == ROOT / "infra" / "grafana" / "dashboards"


def test_k8s_prometheus_may_watch_the_pods_and_is_reachable() -> None:
    docs = k8s_docs()
    deployment = docs[("Deployment", "prometheus")]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert ("ServiceAccount", account) in docs
    (binding,) = [
        doc
        for (kind, _), doc in docs.items()
        if kind == "RoleBinding"
        and any(s["kind"] == "ServiceAccount" and s["name"] == account for s in doc["subjects"])
    ]
    role = docs[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
    assert any(
        "pods" in rule["resources"] and {"list", "watch"} <= set(rule["verbs"])
        for rule in role["rules"]
    )
    service = docs[("Service", "prometheus")]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    (port,) = service["ports"]
    assert port["targetPort"] == 9090
