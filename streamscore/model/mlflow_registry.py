"""The model registry: every trained version in MLflow, and which one serves, by alias.

``streamscore train`` still writes ``<models_dir>/fraud-lgbm-<timestamp>/`` (the job and the
tests load from there) and then registers that directory here as a new version of the
registered model ``fraud-lgbm``: model.txt and metadata.json as artifacts of a run that also
holds the metrics and parameters, and tags that trace the registry version back to the local
version name. Three aliases say what serves:

* ``champion``: scores every user (the first registered version gets it automatically);
* ``candidate``: scores a canary share of users next to the champion;
* ``previous-champion``: the champion before the last promote, what ``rollback`` returns to.

``promote``/``canary``/``rollback`` plan the new aliases (pure functions, below), validate the
ASSIGN record exactly as the job will (``control.parse_assignment``), publish it, and only then
move the aliases: a command that fails to reach Kafka leaves the registry as it was, and
running it again is safe (promoting the champion again re-sends the same assignment).

The store is ``Settings.mlflow_tracking_uri``: a tracking server (``http://...``), or by
default a local file store at ``<models_dir>/mlruns``. MLflow 3.17 keeps the file store in
"maintenance mode" behind ``MLFLOW_ALLOW_FILE_STORE=true``, which this module sets for local
stores only: the file store has the model registry with aliases and needs nothing beyond
``mlflow-skinny``, while ``sqlite:`` needs SQLAlchemy and Alembic (which work too, if a user
installs them and sets the URI).

MLflow is imported only here, lazily (≈ 0.8 s): the Flink job never imports this module, it
gets its models through the control topic.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from streamscore.config import Settings, settings_from
from streamscore.errors import ModelNotFound, StreamscoreError
from streamscore.features.definitions import FEATURE_SET
from streamscore.model import control
from streamscore.model.loading import ModelBundle
from streamscore.model.registry import METADATA_FILE, MODEL_FILE, resolve

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

REGISTERED_MODEL = "fraud-lgbm"
EXPERIMENT = "streamscore"
ARTIFACT_DIR = "model"
CHAMPION, CANDIDATE, PREVIOUS_CHAMPION = "champion", "candidate", "previous-champion"
TAG_LOCAL_VERSION = "streamscore.local_version"
TAG_FEATURE_SET = "streamscore.feature_set_version"
TAG_AUC = "streamscore.holdout_auc"
# A dead tracking server should fail a command in seconds, not after MLflow's default 7
# retries with backoff (minutes); a user's own MLFLOW_HTTP_* variables still win.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


class RegistryError(StreamscoreError):
    """The model registry could not be reached, or refused a change."""


def tracking_uri(settings: Settings) -> str:
    """The registry's URI: the setting, or a local file store next to the model versions."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    return (settings.models_dir / "mlruns").as_uri()


def _is_local_file_store(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")


# --- what the registry holds -------------------------------------------------------------------
@dataclass(frozen=True)
class RegisteredVersion:
    """One version of the registered model, as ``models list`` shows it."""

    version: str  # the registry's number: "1", "2", ...
    local_version: str  # the version directory's name, which predictions carry
    aliases: tuple[str, ...]
    created_ms: int
    holdout_auc: float | None
    feature_set_version: str | None
    source: str

    @property
    def label(self) -> str:
        return f"v{self.version} ({self.local_version})"


@dataclass(frozen=True)
class Aliases:
    """The registry versions (numbers) the three aliases point at, None if unset."""

    champion: str | None = None
    candidate: str | None = None
    previous_champion: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            CHAMPION: self.champion,
            CANDIDATE: self.candidate,
            PREVIOUS_CHAMPION: self.previous_champion,
        }


@dataclass(frozen=True)
class Transition:
    """A planned command: the aliases before and after, and what the job is told to do."""

    before: Aliases
    after: Aliases
    canary_percent: int
    reason: str  # the control record's reason: promote, canary, rollback
    summary: str  # what the registry change is, for the command's one line


# --- planning: pure functions on the aliases ----------------------------------------------------
def plan_promote(current: Aliases, version: str) -> Transition:
    """``version`` becomes champion; the old champion becomes previous-champion (unless it is
    the same version: promoting twice only re-sends); any canary ends."""
    previous = current.previous_champion
    if current.champion is not None and current.champion != version:
        previous = current.champion
    after = Aliases(champion=version, candidate=None, previous_champion=previous)
    if current.champion == version:
        summary = f"v{version} stays champion"
    elif current.champion is None:
        summary = f"v{version} is champion"
    else:
        summary = f"v{version} is champion, v{current.champion} previous-champion"
    if current.candidate is not None and current.candidate != version:
        summary += f", canary of v{current.candidate} ended"
    return Transition(current, after, 0, "promote", summary)


def plan_canary(current: Aliases, version: str, percent: int) -> Transition:
    """``version`` becomes the candidate on ``percent`` % of users, next to the champion."""
    if current.champion is None:
        raise RegistryError(
            "no champion yet, so there is nothing to run a canary against: "
            "`streamscore models promote VERSION` first"
        )
    if current.champion == version:
        raise RegistryError(f"v{version} is the champion already; canary another version")
    after = replace(current, candidate=version)
    return Transition(current, after, percent, "canary", f"v{version} is candidate")


def plan_rollback(current: Aliases) -> Transition:
    """While a canary runs, end it; otherwise previous-champion becomes champion again (and
    the alias is dropped, so a second rollback cannot flip back to the bad version)."""
    if current.champion is not None and current.candidate is not None:
        after = replace(current, candidate=None)
        return Transition(current, after, 0, "rollback", f"canary of v{current.candidate} ended")
    if current.previous_champion is None:
        raise RegistryError(
            "nothing to roll back: no canary runs and no version has the previous-champion "
            "alias; `streamscore models list` shows the versions, `promote` picks one"
        )
    after = Aliases(champion=current.previous_champion)
    summary = f"v{current.previous_champion} is champion again, v{current.champion} retired"
    return Transition(current, after, 0, "rollback", summary)


# --- the registry ------------------------------------------------------------------------------
class ModelRegistry:
    """The registered model ``fraud-lgbm`` in the MLflow store of ``settings``."""

    def __init__(self, settings: Settings, name: str = REGISTERED_MODEL) -> None:
        self.settings = settings
        self.name = name
        self.uri = tracking_uri(settings)
        self._client_instance: MlflowClient | None = None

    @property
    def _client(self) -> MlflowClient:
        if self._client_instance is None:
            if _is_local_file_store(self.uri):
                os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
            else:
                for key, value in _HTTP_DEFAULTS.items():
                    os.environ.setdefault(key, value)
            with self._errors():
                from mlflow import MlflowClient

                self._client_instance = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client_instance

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """MLflow's failures as one-line errors that say where the registry is."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as exc:
            raise RegistryError(
                f"the MLflow registry at {self.uri} failed: {exc.message.strip().splitlines()[0]}; "
                "check that it runs, or set mlflow_tracking_uri"
            ) from None

    # reading
    def versions(self) -> list[RegisteredVersion]:
        """Every version, oldest first."""
        with self._errors():
            found = self._client.search_model_versions(f"name = '{self.name}'")
        return sorted((_registered(mv) for mv in found), key=lambda v: int(v.version))

    def aliases(self) -> Aliases:
        from mlflow.exceptions import MlflowException

        with self._errors():
            try:
                model = self._client.get_registered_model(self.name)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return Aliases()
                raise
        given = {alias: str(version) for alias, version in model.aliases.items()}
        return Aliases(given.get(CHAMPION), given.get(CANDIDATE), given.get(PREVIOUS_CHAMPION))

    def find(self, version: str) -> RegisteredVersion:
        """A version by its registry number (``3`` or ``v3``) or its local name."""
        wanted = version[1:] if version[:1] in "vV" and version[1:].isdigit() else version
        versions = self.versions()
        for v in versions:
            if wanted in (v.version, v.local_version):
                return v
        have = ", ".join(v.label for v in versions) or "none"
        raise ModelNotFound(
            f"no version {version!r} of {self.name} in the registry at {self.uri} (have: {have})"
        )

    def bundle(self, version: RegisteredVersion) -> ModelBundle:
        """The version's files, from the registry's artifacts (not the local folder: with a
        tracking server, the machine running the command may never have trained it)."""
        import mlflow.artifacts

        with tempfile.TemporaryDirectory() as tmp, self._errors():
            # The version's own source: a ``models:/`` URI would be resolved through MLflow's
            # global registry URI, not this one.
            source = self._client.get_model_version_download_uri(self.name, version.version)
            path = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=source, dst_path=tmp, tracking_uri=self.uri
                )
            )
            try:
                metadata = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
                model_text = (path / MODEL_FILE).read_text(encoding="utf-8")
            except (OSError, ValueError) as exc:
                raise RegistryError(
                    f"{version.label}: its artifacts at {source} are not a model version "
                    f"({exc}); register the local version again"
                ) from None
        if metadata.get("version") != version.local_version:
            raise RegistryError(
                f"{version.label}: its artifacts hold {metadata.get('version')!r}; the "
                "registry is inconsistent, register the local version again"
            )
        return ModelBundle(version.local_version, model_text, metadata)

    # writing
    def register(self, directory: Path) -> RegisteredVersion:
        """Register a trained version directory (idempotent: a version already registered under
        this local name is returned as it is). The first version becomes champion."""
        artifact = resolve(directory.parent, directory.name)
        for existing in self.versions():
            if existing.local_version == artifact.version:
                log.info("%s is registered already as %s", artifact.version, existing.label)
                return existing
        metadata = artifact.metadata
        tags = {
            TAG_LOCAL_VERSION: artifact.version,
            TAG_FEATURE_SET: str(metadata.get("feature_set_version")),
            TAG_AUC: str(metadata.get("metrics", {}).get("auc")),
        }
        with self._errors():
            run_id = self._log_run(artifact.directory, metadata, tags)
            self._ensure_registered_model()
            mv = self._client.create_model_version(
                self.name,
                source=f"{self._client.get_run(run_id).info.artifact_uri}/{ARTIFACT_DIR}",
                run_id=run_id,
                tags=tags,
                description=(
                    f"streamscore {artifact.version}, feature set "
                    f"{metadata.get('feature_set_version')}, trained by `streamscore train`"
                ),
            )
            if self.aliases().champion is None:
                self._client.set_registered_model_alias(self.name, CHAMPION, mv.version)
        registered = self.find(str(mv.version))
        log.info("registered %s in %s as %s", artifact.version, self.uri, registered.label)
        return registered

    def _log_run(self, directory: Path, metadata: dict[str, Any], tags: dict[str, str]) -> str:
        from mlflow.entities import Metric, Param

        client = self._client
        experiment = client.get_experiment_by_name(EXPERIMENT)
        experiment_id = (
            experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
        )
        run = client.create_run(experiment_id, tags=tags, run_name=directory.name)
        now = int(datetime.now(UTC).timestamp() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in _flat_numbers(metadata.get("metrics", {}))]
        params = {**metadata.get("params", {}), **metadata.get("train_config", {})}
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())],
        )
        client.log_artifacts(run.info.run_id, str(directory), ARTIFACT_DIR)
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            self._client.create_registered_model(
                self.name, description="streamscore's LightGBM fraud model"
            )

    def execute(self, transition: Transition, send: Callable[[dict[str, Any]], None]) -> str:
        """Carry out a planned command: build the ASSIGN record, check it as the job will,
        ``send`` it (publish to Kafka), then move the aliases. Returns the one-line summary."""
        after = transition.after
        assert after.champion is not None
        champion = self.find(after.champion)
        candidate = self.find(after.candidate) if after.candidate else None
        record = control.assign_record(
            self.bundle(champion),
            self.bundle(candidate) if candidate else None,
            transition.canary_percent,
            transition.reason,
            job_name=self.settings.job_name,
        )
        control.parse_assignment(record, FEATURE_SET)  # refuse here what the job would refuse
        if self.aliases() != transition.before:
            raise RegistryError(
                "the aliases changed while this command ran; check `streamscore models list` "
                "and run it again"
            )
        send(record)
        try:
            self._move_aliases(transition.before, after)
        except RegistryError as exc:
            raise RegistryError(
                f"the job was sent the assignment ({record['command_id']}) but the aliases were "
                f"not all moved ({exc}); run the same command again"
            ) from None
        if candidate is None:
            job = f"the job scores every user with {champion.label}"
        else:
            job = (
                f"the job scores {transition.canary_percent} % of users with {candidate.label} "
                f"and the rest with champion {champion.label}"
            )
        return f"{transition.summary}; sent ASSIGN {record['command_id'][:8]}: {job}"

    def _move_aliases(self, before: Aliases, after: Aliases) -> None:
        """Set the new aliases first, then delete the dropped ones: if a step fails, every
        version the job may score still has an alias."""
        old, new = before.as_dict(), after.as_dict()
        with self._errors():
            for alias, version in new.items():
                if version is not None and version != old[alias]:
                    self._client.set_registered_model_alias(self.name, alias, version)
            for alias, version in new.items():
                if version is None and old[alias] is not None:
                    self._client.delete_registered_model_alias(self.name, alias)


def _registered(mv: Any) -> RegisteredVersion:
    tags = mv.tags or {}
    auc = tags.get(TAG_AUC)
    try:
        holdout_auc: float | None = float(auc) if auc is not None else None
    except ValueError:
        holdout_auc = None
    return RegisteredVersion(
        version=str(mv.version),
        local_version=tags.get(TAG_LOCAL_VERSION, "?"),
        aliases=tuple(sorted(mv.aliases or ())),
        created_ms=int(mv.creation_timestamp or 0),
        holdout_auc=holdout_auc,
        feature_set_version=tags.get(TAG_FEATURE_SET),
        source=mv.source,
    )


def _flat_numbers(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """``{"review": {"precision": 0.9}}`` → ``("review.precision", 0.9)``; finite numbers only
    (MLflow stores metrics as floats; a NaN AUC is kept in the metadata, not here)."""
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _flat_numbers(value, f"{prefix}{key}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                yield f"{prefix}{key}", float(value)


# --- entry points: the `models` commands and `train` -------------------------------------------
Send = Callable[[dict[str, Any]], None]


def _sender(settings: Settings, send: Send | None) -> Send:
    return send if send is not None else (lambda record: control.publish(settings, record))


def promote(settings: Settings, version: str, send: Send | None = None) -> str:
    """``models promote``: returns the line saying what was done and what the job will do."""
    registry = ModelRegistry(settings)
    plan = plan_promote(registry.aliases(), registry.find(version).version)
    return registry.execute(plan, _sender(settings, send))


def canary(settings: Settings, version: str, percent: int, send: Send | None = None) -> str:
    """``models canary``: ``version`` on ``percent`` % of users next to the champion."""
    registry = ModelRegistry(settings)
    plan = plan_canary(registry.aliases(), registry.find(version).version, percent)
    return registry.execute(plan, _sender(settings, send))


def rollback(settings: Settings, send: Send | None = None) -> str:
    """``models rollback``: end the canary, or go back to previous-champion."""
    registry = ModelRegistry(settings)
    return registry.execute(plan_rollback(registry.aliases()), _sender(settings, send))


def register_local(settings: Settings, local_version: str = "latest") -> str:
    """``models register``: a version directory trained before the registry existed, or whose
    registration failed."""
    registered = ModelRegistry(settings).register(
        resolve(settings.models_dir, local_version).directory
    )
    aliases = f" [{', '.join(registered.aliases)}]" if registered.aliases else ""
    return f"{registered.label} registered{aliases}; nothing was sent to the job"


def list_lines(settings: Settings) -> list[str]:
    """``models list``: the table, or a line saying the registry is empty."""
    registry = ModelRegistry(settings)
    versions = registry.versions()
    if not versions:
        return [f"no versions in the registry at {registry.uri}; run `streamscore train`"]
    return format_versions(versions)


def register_trained(directory: Path) -> RegisteredVersion:
    """Register the version ``train`` just wrote, with the settings of the running command.

    ``train()`` is given a models folder, not the settings, so the settings are the CLI
    command's when there is one (``--set mlflow_tracking_uri=...`` applies), else the
    environment's; the default store is next to ``directory`` either way."""
    settings = (_command_settings() or settings_from()).with_overrides(
        {"models_dir": directory.parent}
    )
    registry = ModelRegistry(settings)
    try:
        return registry.register(directory)
    except RegistryError as exc:
        raise RegistryError(
            f"model written to {directory} but not registered ({exc}); once the registry "
            f"answers: streamscore models register {directory.name}"
        ) from None


def _command_settings() -> Settings | None:
    import click

    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    found = obj.get("settings") if isinstance(obj, dict) else None
    return found if isinstance(found, Settings) else None


def format_versions(versions: list[RegisteredVersion]) -> list[str]:
    """The ``models list`` table, newest first."""
    lines = [
        f"{'version':>7}  {'local version':<26} {'aliases':<28} {'created (UTC)':<19}  "
        f"{'AUC':>6}  feature set"
    ]
    for v in reversed(versions):
        created = datetime.fromtimestamp(v.created_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        auc = f"{v.holdout_auc:.4f}" if v.holdout_auc is not None else "-"
        lines.append(
            f"{'v' + v.version:>7}  {v.local_version:<26} {','.join(v.aliases) or '-':<28} "
            f"{created:<19}  {auc:>6}  {v.feature_set_version or '-'}"
        )
    return lines
