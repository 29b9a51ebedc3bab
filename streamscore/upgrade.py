"""``streamscore upgrade``: new code, a new model or another parallelism, with the job's state.

The running job stops with a savepoint (its sources stop at one consistent point and its
exactly-once transactions commit, so nothing is scored twice or lost), and the job is submitted
again from that savepoint with the new settings. Per-user windows, pending label joins, the
learner and the model assignment continue where they were.

What may change: the Python code of the operators as long as their state layout is the same,
the model version (``model_version``), the scoring parallelism (keyed state is redistributed by
key group; max parallelism stays 128), any setting that is not part of the state. What the
upgrade refuses: a savepoint written with a per-user state layout this code cannot read
(``STATE_VERSION`` of job/state.py, and the older ones it still reads: ``READABLE_STATE_VERSIONS``)
or another feature set (``FEATURE_SET.version``): the restored bytes would be read
as something they are not. Those need a new job that rebuilds its state from the event log.
Each savepoint gets a ``streamscore-job.json`` beside its metadata saying what wrote it.
The operators' uids (job/pipeline.py) must never change: they are how Flink finds each
operator's state in a savepoint.

A job started before the forty-first session's version read Kafka through the Table API's
sources, whose operators had no uids: their offsets in its savepoints cannot be found by this
version's sources (``source-input``, ``source-control``, ``source-outcomes``). The upgrade
refuses such a job before stopping it (``refuse_legacy_sources``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

from streamscore.config import Settings
from streamscore.errors import StreamscoreError

log = logging.getLogger(__name__)
MANIFEST = "streamscore-job.json"


class UpgradeRefused(StreamscoreError):
    """The savepoint's state cannot be read by this version of the job."""


@dataclass(frozen=True)
class StateManifest:
    state_version: int
    feature_set_version: str
    job_name: str
    scoring_parallelism: int
    model_version: str

    @staticmethod
    def current(s: Settings) -> StateManifest:
        from streamscore.features.definitions import FEATURE_SET
        from streamscore.job.state import STATE_VERSION

        return StateManifest(
            STATE_VERSION, FEATURE_SET.version, s.job_name, s.scoring_parallelism, s.model_version
        )


def _directory(savepoint: str) -> Path:
    parsed = urlparse(savepoint)
    return Path(parsed.path if parsed.scheme in ("file", "") else savepoint)


def write_manifest(savepoint: str, manifest: StateManifest) -> None:
    directory = _directory(savepoint)
    if directory.is_dir():  # a local (file://) savepoint; remote ones carry no manifest
        (directory / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2))


def read_manifest(savepoint: str) -> StateManifest | None:
    path = _directory(savepoint) / MANIFEST
    if not path.exists():
        return None
    return StateManifest(**json.loads(path.read_text()))


def check_compatible(saved: StateManifest | None, new: StateManifest) -> None:
    """Raise ``UpgradeRefused`` unless the new job can read the saved state."""
    if saved is None:
        return
    from streamscore.job.state import READABLE_STATE_VERSIONS

    # (a test's manifests may name other versions: "this code" reads its own and READABLE's)
    if saved.state_version != new.state_version and saved.state_version not in (
        READABLE_STATE_VERSIONS
    ):
        raise UpgradeRefused(
            f"the savepoint's per-user state has layout version {saved.state_version}, this "
            f"code reads version {new.state_version}: start a new job instead"
        )
    if saved.feature_set_version != new.feature_set_version:
        raise UpgradeRefused(
            f"the savepoint holds windows of feature set {saved.feature_set_version}, this code "
            f"computes {new.feature_set_version}: start a new job instead"
        )


# How the Table API named its Kafka sources' vertices in the job graphs of versions before the
# forty-first session ("Source: KafkaSource-default_catalog.default_database.raw_input -> ...").
_LEGACY_SOURCE_PREFIX = "Source: KafkaSource-"


def refuse_legacy_sources(vertex_names: list[str]) -> None:
    """Raise ``UpgradeRefused`` when a running job's vertices (their names, from Flink's REST
    API) include the Table API's Kafka sources of earlier versions: their offsets have no uid
    this version's sources could take over, and a restore would fail after the job stopped."""
    legacy = [name for name in vertex_names if name.startswith(_LEGACY_SOURCE_PREFIX)]
    if legacy:
        raise UpgradeRefused(
            "the running job reads Kafka through the Table API's sources of an earlier version "
            f"({legacy[0]!r}), whose offsets this version's sources cannot take over from a "
            "savepoint: let it run, or cancel it and start this version as a new job (with "
            "start_from=group-offsets it continues from the offsets the old job committed, with "
            "empty windows)"
        )


def savepoint_of_running_job(s: Settings) -> str:
    """Stop the running job with a savepoint and write the savepoint's manifest."""
    from streamscore.errors import StackError
    from streamscore.jobcontrol import find_job, stop_with_savepoint
    from streamscore.stack import flink

    job = find_job(s, states=("RUNNING",))
    if job is None:
        raise StackError(f"no RUNNING job named {s.job_name!r} to upgrade")
    refuse_legacy_sources([v["name"] for v in flink.rest(s, f"/jobs/{job['jid']}")["vertices"]])
    savepoint = stop_with_savepoint(s, job["jid"])
    write_manifest(savepoint, StateManifest.current(s))
    log.info("job %s stopped with savepoint %s", job["jid"], savepoint)
    return savepoint


def upgrade(old: Settings, new: Settings, overrides: list[str]) -> tuple[str, str]:
    """Stop the job described by ``old`` with a savepoint and submit ``new`` from it; returns
    (savepoint, new job id). Refuses before stopping anything when ``new`` cannot read the
    running job's state (its manifest is that of the code now installed)."""
    from streamscore.jobcontrol import submit
    from streamscore.model.loading import load_for_job

    load_for_job(new)  # a model version that does not exist fails before the job stops
    check_compatible(StateManifest.current(old), StateManifest.current(new))
    savepoint = savepoint_of_running_job(old)
    check_compatible(read_manifest(savepoint), StateManifest.current(new))
    job_id = submit(new, overrides, from_savepoint=savepoint)
    log.info("job %s runs from %s", job_id, savepoint)
    return savepoint, job_id
