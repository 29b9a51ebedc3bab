"""How the job gets its model: every step from a version name to a model a scorer can use.

1. ``registry.resolve`` finds the version directory (``latest`` = the newest).
2. ``ModelBundle.load`` reads the model text and metadata into one small object, which the job
   graph carries, so every worker scores with the version resolved at submit time.
3. ``load_for_job`` applies the submit-time rule: no model at all → the job runs on the fallback
   rules (and says so in every prediction); a version that was asked for by name and does not
   exist → an error, because a typo must not silently deploy the rules.
4. ``check_compatible`` refuses a model trained on another feature set or column order; the
   scorer calls it and falls back rather than score garbage.
5. ``check_model_text`` refuses a truncated model text before LightGBM sees it: LightGBM 4.7
   parses trees in an OpenMP loop and a format error there aborts the whole process
   ("terminate called without an active exception"), or segfaults, instead of raising.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamscore.config import Settings
from streamscore.errors import ModelNotFound
from streamscore.features.definitions import FeatureSet
from streamscore.model.registry import resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelBundle:
    """A model version's text and metadata, small enough to ship inside a Flink job graph."""

    version: str
    model_text: str
    metadata: dict[str, Any]

    @staticmethod
    def load(models_dir: Path, version: str = "latest") -> ModelBundle:
        artifact = resolve(models_dir, version)
        return ModelBundle(
            artifact.version, artifact.model_path.read_text(encoding="utf-8"), artifact.metadata
        )


def load_for_job(settings: Settings) -> ModelBundle | None:
    """The model the job will score with, or None for the fallback rules (see module doc)."""
    try:
        bundle = ModelBundle.load(settings.models_dir, settings.model_version)
    except ModelNotFound as exc:
        if settings.model_version != "latest":
            raise
        log.warning("%s: the job will score with the fallback rules", exc)
        return None
    log.info("scoring with model %s", bundle.version)
    return bundle


def check_compatible(bundle: ModelBundle, feature_set: FeatureSet) -> None:
    """Raise ``ValueError`` unless the model was trained on exactly this feature vector."""
    trained_on = bundle.metadata.get("feature_set_version")
    if trained_on != feature_set.version:
        raise ValueError(
            f"model {bundle.version} was trained on feature set {trained_on}, "
            f"job uses {feature_set.version}"
        )
    if tuple(bundle.metadata["feature_names"]) != feature_set.feature_names:
        raise ValueError(f"model {bundle.version}: feature names/order differ")


_TREE_SIZES = re.compile(rb"^tree_sizes=([0-9 ]*)$", re.MULTILINE)


def check_model_text(model_text: str) -> None:
    """Raise ``ValueError`` unless the LightGBM model text is whole (see the module doc).

    LightGBM finds tree ``i`` at the byte offset given by the header's ``tree_sizes`` and reads
    from there without a bound; so every offset must start a ``Tree=`` block, the trees must end
    exactly at ``end of trees``, and the parameters' trailer must follow."""
    data = model_text.encode("utf-8")
    start = data.find(b"\nTree=") + 1
    if start == 0:
        raise ValueError("no trees in the model text")
    sizes = _TREE_SIZES.search(data, 0, start)
    if sizes is None:
        raise ValueError("no tree_sizes line in the model header")
    offset = start
    for i, size in enumerate(int(n) for n in sizes.group(1).split()):
        if not data.startswith(b"Tree=", offset):
            raise ValueError(f"tree {i} is not where tree_sizes puts it: the text is cut")
        offset += size
    if not data.startswith(b"end of trees", offset):
        raise ValueError("the trees do not end where tree_sizes says: the text is cut or altered")
    if data.find(b"end of parameters", offset) < 0:
        raise ValueError("the model text is cut after its trees (no end of parameters)")
