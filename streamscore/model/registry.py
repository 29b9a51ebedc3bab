"""Versioned model directories: ``<models_dir>/<version>/{model.txt, metadata.json}``.

Versions are ``fraud-lgbm-<UTC yyyymmddHHMMSS>``, so "latest" is simply the greatest name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamscore.errors import ModelNotFound

MODEL_FILE = "model.txt"
METADATA_FILE = "metadata.json"
VERSION_PREFIX = "fraud-lgbm-"


@dataclass(frozen=True)
class ModelArtifact:
    version: str
    directory: Path
    metadata: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def feature_names(self) -> list[str]:
        return list(self.metadata["feature_names"])


def list_versions(models_dir: Path) -> list[str]:
    if not models_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in models_dir.iterdir()
        if p.name.startswith(VERSION_PREFIX)
        and (p / MODEL_FILE).is_file()
        and (p / METADATA_FILE).is_file()
    )


def resolve(models_dir: Path, version: str = "latest") -> ModelArtifact:
    """Find a model version; ``latest`` picks the newest one."""
    versions = list_versions(models_dir)
    if version == "latest":
        if not versions:
            raise ModelNotFound(f"no model in {models_dir}; run `streamscore train`")
        version = versions[-1]
    elif version not in versions:
        raise ModelNotFound(f"model {version!r} not in {models_dir} (have: {versions})")
    directory = models_dir / version
    metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    return ModelArtifact(version, directory, metadata)
