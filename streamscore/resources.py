"""Files that ship inside the package: the Avro schemas, the job's entry script, the Maven pom.

They are read through ``importlib.resources``, so an installed wheel works from any directory,
exactly like an editable checkout. Two of them are handed to other programs by path
(``flink run -py`` and ``mvn -f``), which need a real file: the package must be installed as
files, not imported from a zip archive (pip always installs it as files).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from streamscore.errors import StreamscoreError

RECORD_TYPES = ("event", "label", "prediction", "dead_letter", "control", "outcome")


def _file(*parts: str) -> Path:
    resource = files("streamscore").joinpath(*parts)
    path = Path(str(resource))
    if not path.is_file():
        raise StreamscoreError(
            f"package file {'/'.join(parts)} is missing: reinstall streamscore (pip install .)"
        )
    return path


@cache
def schema(name: str) -> dict[str, Any]:
    """The Avro schema of a record type, as written in ``streamscore/schemas/<name>.avsc``."""
    if name not in RECORD_TYPES:
        raise ValueError(f"unknown record type {name!r}; expected one of {RECORD_TYPES}")
    return json.loads(_file("schemas", f"{name}.avsc").read_text(encoding="utf-8"))


def job_entry_script() -> Path:
    """The script ``flink run -py`` executes to build and run the scoring job."""
    return _file("job", "entry.py")


def maven_pom() -> Path:
    """The pom pinning the jars the local stack fetches from Maven Central."""
    return _file("stack", "pom.xml")


def prometheus_rules() -> Path:
    """The Prometheus recording and alerting rules (the local stack loads them by path)."""
    return _file("monitoring", "rules.yml")
