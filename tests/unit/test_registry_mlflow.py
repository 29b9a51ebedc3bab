"""The MLflow model registry, against a real local MLflow store in a tmp folder.

The alias rules are pure functions (tested first, no MLflow); then versions are registered,
moved between champion / candidate / previous-champion by the commands, and each command's
ASSIGN record is parsed as the job would. Kafka is replaced by a list that collects the
records (publish itself is tested end to end)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streamscore.cli import main
from streamscore.config import Settings, settings_from
from streamscore.errors import KafkaUnavailable, ModelNotFound, Rejection
from streamscore.features.definitions import FEATURE_SET
from streamscore.model import control
from streamscore.model import mlflow_registry as mr
from streamscore.model.mlflow_registry import Aliases, ModelRegistry, RegistryError
from tests.unit.test_control import tiny_model_text

V1, V2, V3 = (f"fraud-lgbm-2026010{i}000000" for i in (1, 2, 3))


def write_version(models_dir: Path, name: str, auc: float, seed: int, **metadata: Any) -> Path:
    """A version directory as ``streamscore train`` writes it, with a small real model."""
    directory = models_dir / name
    directory.mkdir(parents=True)
    (directory / "model.txt").write_text(tiny_model_text(seed=seed))
    meta = {
        "version": name,
        "feature_set_version": FEATURE_SET.version,
        "feature_names": list(FEATURE_SET.feature_names),
        "metrics": {"auc": auc, "log_loss": 0.05, "review": {"precision": 0.5, "recall": 0.7}},
        "params": {"num_leaves": 31, "learning_rate": 0.05},
        **metadata,
    }
    (directory / "metadata.json").write_text(json.dumps(meta))
    return directory


class Sent(list[dict[str, Any]]):
    """Stands in for Kafka: keeps what the commands publish, parsed as the job would."""

    def __call__(self, record: dict[str, Any]) -> None:
        self.append(record)

    def last(self) -> control.Assignment:
        return control.parse_assignment(control.decode(control.encode(self[-1])), FEATURE_SET)


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return settings_from([f"models_dir={tmp_path / 'models'}"])


@pytest.fixture()
def registry(settings: Settings) -> ModelRegistry:
    """Two registered versions: v1 (the champion, automatically) and v2."""
    reg = ModelRegistry(settings)
    reg.register(write_version(settings.models_dir, V1, 0.91, seed=1))
    reg.register(write_version(settings.models_dir, V2, 0.93, seed=2))
    return reg


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def aliases_by_version(reg: ModelRegistry) -> dict[str, tuple[str, ...]]:
    return {v.version: v.aliases for v in reg.versions()}


# --- the alias rules ---------------------------------------------------------------------------
def test_promote_keeps_the_old_champion_as_previous_and_ends_the_canary() -> None:
    plan = mr.plan_promote(Aliases(champion="1", candidate="2"), "2")
    assert plan.after == Aliases(champion="2", previous_champion="1")
    assert (plan.canary_percent, plan.reason) == (0, "promote")


def test_promoting_the_champion_again_changes_nothing_but_resends() -> None:
    current = Aliases(champion="2", previous_champion="1")
    assert mr.plan_promote(current, "2").after == current


def test_the_first_promote_has_no_previous() -> None:
    assert mr.plan_promote(Aliases(), "1").after == Aliases(champion="1")


def test_canary_needs_a_champion_and_another_version() -> None:
    with pytest.raises(RegistryError, match="no champion yet"):
        mr.plan_canary(Aliases(), "1", 10)
    with pytest.raises(RegistryError, match="champion already"):
        mr.plan_canary(Aliases(champion="1"), "1", 10)
    plan = mr.plan_canary(Aliases(champion="1", previous_champion="0"), "2", 10)
    assert plan.after == Aliases(champion="1", candidate="2", previous_champion="0")
    assert plan.canary_percent == 10


def test_rollback_ends_a_canary_before_it_touches_the_champion() -> None:
    plan = mr.plan_rollback(Aliases(champion="2", candidate="3", previous_champion="1"))
    assert plan.after == Aliases(champion="2", previous_champion="1")
    plan = mr.plan_rollback(plan.after)
    assert plan.after == Aliases(champion="1")
    with pytest.raises(RegistryError, match="nothing to roll back"):
        mr.plan_rollback(plan.after)


# --- the registry ------------------------------------------------------------------------------
def test_default_store_is_next_to_the_models_and_a_server_uri_wins(settings: Settings) -> None:
    assert mr.tracking_uri(settings) == (settings.models_dir / "mlruns").as_uri()
    server = settings.with_overrides({"mlflow_tracking_uri": "http://mlflow.internal:5000"})
    assert mr.tracking_uri(server) == "http://mlflow.internal:5000"


def test_registered_versions_trace_back_to_their_directories(registry: ModelRegistry) -> None:
    v1, v2 = registry.versions()
    assert (v1.version, v1.local_version, v1.aliases) == ("1", V1, ("champion",))
    assert (v2.version, v2.local_version, v2.aliases) == ("2", V2, ())
    assert (v2.holdout_auc, v2.feature_set_version) == (0.93, FEATURE_SET.version)
    bundle = registry.bundle(v2)
    assert bundle.version == V2
    assert bundle.model_text == (registry.settings.models_dir / V2 / "model.txt").read_text()
    assert bundle.metadata["metrics"]["auc"] == 0.93


def test_the_run_holds_metrics_params_and_the_feature_set(registry: ModelRegistry) -> None:
    client = registry._client
    run_id = client.get_model_version(registry.name, "2").run_id
    run = client.get_run(run_id)
    assert run.data.metrics["auc"] == 0.93
    assert run.data.metrics["review.precision"] == 0.5
    assert run.data.params["num_leaves"] == "31"
    assert run.data.tags[mr.TAG_LOCAL_VERSION] == V2
    assert run.data.tags[mr.TAG_FEATURE_SET] == FEATURE_SET.version


def test_registering_again_does_nothing(registry: ModelRegistry) -> None:
    again = registry.register(registry.settings.models_dir / V2)
    assert again.version == "2"
    assert len(registry.versions()) == 2


def test_find_by_number_or_local_name(registry: ModelRegistry) -> None:
    assert registry.find("2").local_version == V2
    assert registry.find("v2").local_version == V2
    assert registry.find(V1).version == "1"
    with pytest.raises(ModelNotFound, match="no version '7'.*have: v1"):
        registry.find("7")


def test_train_registers_what_it_writes(tmp_path: Path) -> None:
    from streamscore.generator import GeneratorConfig
    from streamscore.model.train import TrainConfig, train_from_generator

    directory = train_from_generator(
        tmp_path, TrainConfig(events=8000, num_boost_round=5), GeneratorConfig(users=100, seed=5)
    )
    (only,) = ModelRegistry(settings_from([f"models_dir={tmp_path}"])).versions()
    assert (only.local_version, only.aliases) == (directory.name, ("champion",))
    assert (tmp_path / directory.name / "model.txt").is_file()  # the job's copy stays


def test_a_failed_registration_says_how_to_finish_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("STREAMSCORE_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    directory = write_version(tmp_path, V1, 0.9, seed=1)
    with pytest.raises(RegistryError, match=f"not registered.*streamscore models register {V1}"):
        mr.register_trained(directory)


# --- the commands ------------------------------------------------------------------------------
def test_canary_promote_rollback(settings: Settings, registry: ModelRegistry) -> None:
    sent = Sent()
    line = mr.canary(settings, "2", 10, sent)
    assert "10 % of users with v2" in line and "champion v1" in line
    assert aliases_by_version(registry) == {"1": ("champion",), "2": ("candidate",)}
    canary = sent.last()
    assert (canary.champion.version, canary.candidate and canary.candidate.version) == (V1, V2)
    assert (canary.canary_percent, canary.reason, canary.job_name) == (
        10,
        "canary",
        "streamscore-scoring",
    )

    line = mr.promote(settings, "v2", sent)
    assert "every user with v2" in line
    assert aliases_by_version(registry) == {"1": ("previous-champion",), "2": ("champion",)}
    promoted = sent.last()
    assert (promoted.champion.version, promoted.candidate, promoted.canary_percent) == (V2, None, 0)

    line = mr.rollback(settings, sent)
    assert "every user with v1" in line
    assert aliases_by_version(registry) == {"1": ("champion",), "2": ()}
    assert sent.last().champion.version == V1
    assert len(sent) == 3
    with pytest.raises(RegistryError, match="nothing to roll back"):
        mr.rollback(settings, sent)
    assert len(sent) == 3


def test_rollback_during_a_canary_only_drops_the_candidate(
    settings: Settings, registry: ModelRegistry
) -> None:
    registry.register(write_version(settings.models_dir, V3, 0.95, seed=3))
    sent = Sent()
    mr.promote(settings, "2", sent)
    mr.canary(settings, "3", 25, sent)
    mr.rollback(settings, sent)
    assert aliases_by_version(registry) == {
        "1": ("previous-champion",),
        "2": ("champion",),
        "3": (),
    }
    assert (sent.last().champion.version, sent.last().candidate) == (V2, None)


def failing_send(record: dict[str, Any]) -> None:
    raise KafkaUnavailable("Kafka is not reachable at 127.0.0.1:1")


@pytest.mark.parametrize(
    "command",
    [
        lambda s, send: mr.promote(s, "2", send),
        lambda s, send: mr.canary(s, "2", 5, send),
    ],
    ids=["promote", "canary"],
)
def test_an_unsent_command_leaves_the_aliases_alone(
    settings: Settings, registry: ModelRegistry, command: Callable[..., str]
) -> None:
    with pytest.raises(KafkaUnavailable):
        command(settings, failing_send)
    assert aliases_by_version(registry) == {"1": ("champion",), "2": ()}


def test_a_model_the_job_would_refuse_is_refused_before_sending(
    settings: Settings, registry: ModelRegistry
) -> None:
    registry.register(
        write_version(settings.models_dir, V3, 0.99, seed=3, feature_set_version="fs-v0")
    )
    sent = Sent()
    with pytest.raises(Rejection) as info:
        mr.canary(settings, "3", 10, sent)
    assert info.value.reason == control.FEATURE_SET_MISMATCH
    assert sent == [] and aliases_by_version(registry)["3"] == ()


# --- the CLI -----------------------------------------------------------------------------------
def run(settings: Settings, *args: str) -> Any:
    return CliRunner().invoke(main, ["--set", f"models_dir={settings.models_dir}", *args])


def test_models_list(settings: Settings, registry: ModelRegistry) -> None:
    result = run(settings, "models", "list")
    assert result.exit_code == 0, result.output
    header, newest, oldest = result.output.strip().splitlines()
    assert "aliases" in header and "AUC" in header
    assert newest.split()[:2] == ["v2", V2] and "0.9300" in newest
    assert oldest.split()[:3] == ["v1", V1, "champion"] and FEATURE_SET.version in oldest


def test_models_list_of_an_empty_registry(settings: Settings) -> None:
    result = run(settings, "models", "list")
    assert result.exit_code == 0 and "run `streamscore train`" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["models", "canary", "1", "--percent", "5"], "v1 is the champion already"),
        (["models", "rollback"], "nothing to roll back"),
        (["models", "promote", "9"], "no version '9' of fraud-lgbm"),
    ],
)
def test_models_commands_fail_in_one_line(
    settings: Settings, registry: ModelRegistry, args: list[str], expected: str
) -> None:
    result = run(settings, *args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert expected in result.output


def test_an_unreachable_tracking_server_is_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    closed = closed_port()
    result = run(
        settings, "--set", f"mlflow_tracking_uri=http://127.0.0.1:{closed}", "models", "list"
    )
    assert result.exit_code == 1
    assert f"the MLflow registry at http://127.0.0.1:{closed} failed" in result.output
