"""The scoring path compiled by mypyc (and one module by Cython), and the guard that never lets a
stale build run.

``setup.py`` compiles ``COMPILED_MODULES`` into C extensions (``MYPYC_MODULES`` with mypyc,
``CYTHON_MODULES`` with Cython, from their "pure Python" sources) and records each source's hash in
``_native_manifest.py`` next to them (in the source tree for an editable install). Python
imports an extension before a source of the same name, so without a guard an edited source
would silently keep running its old build. ``use_compiled_or_sources`` (called once, when the
``streamscore`` package is imported) checks the hashes and, unless every module is built from
its current source, imports all of them from their sources: all or none, because a compiled
module calls the others of its build directly, not through Python.
``STREAMSCORE_PURE_PYTHON=1`` asks for the sources (a same-commit comparison, or a debugger); at
install time it builds no extension.

Only the standard library here: ``setup.py`` reads ``COMPILED_MODULES`` from this file before
the package can be imported.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

# What runs per record in the scoring operator, and what it calls. A module listed here must
# pass mypy with pyproject.toml's settings (the build runs it and stops at an error): mypyc
# compiles from the checked types and enforces them at run time. Their module constants are
# ``Final``: mypyc then writes a literal into the code, or keeps a C static, where a plain module
# name is looked up in the module's dictionary at each use, about 130 instructions
# (tests/unit/test_native.py keeps it so; bench/HISTORY.md, forty-sixth session).
MYPYC_MODULES: tuple[str, ...] = (
    "streamscore.features.compiled",
    "streamscore.features.engine",
    "streamscore.job.state",
    "streamscore.job.state_writes",
    "streamscore.job.decode",
    "streamscore.job.records",
    "streamscore.job.scoring",
    "streamscore.job.floor",
    "streamscore.metric_values",
    "streamscore.feature_store",
    "streamscore.serde",
    "streamscore.model.scorer",
    "streamscore.model.decisions",
    "streamscore.model.challenger",
    "streamscore.model.compiled_learning",
    "streamscore.monitoring.drift",
)
# Modules that need what mypyc cannot give: arrays, bytes and strings read and written in C
# without boxing each number, byte or character. Written in Cython's "pure Python" mode, so their
# sources run as they are when not compiled.
CYTHON_MODULES: tuple[str, ...] = (
    "streamscore.features.rings",
    "streamscore.monitoring.bin_counts",
    "streamscore.model.logistic_arithmetic",
    "streamscore.job.avro_encoders",
    "streamscore.job.avro_decoders",
    "streamscore.job.entry_records",
    "streamscore.job.user_state_codec",
    "streamscore.validation",
    "streamscore.job.batches",
)
COMPILED_MODULES: tuple[str, ...] = MYPYC_MODULES + CYTHON_MODULES
# The shared library that holds the compiled code of all of them (mypyc's "group").
GROUP = "streamscore._scoring_path"
MANIFEST_MODULE = "streamscore._native_manifest"
PURE_PYTHON_ENV = "STREAMSCORE_PURE_PYTHON"

# Set by use_compiled_or_sources: "compiled", or why the sources run instead.
mode = "sources: not checked yet"


def source_path(root: Path, module: str) -> Path:
    """The ``.py`` file of ``module`` under ``root`` (the folder that holds ``streamscore``)."""
    return root.joinpath(*module.split(".")).with_suffix(".py")


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pure_python_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """``STREAMSCORE_PURE_PYTHON`` read as the ``pure_python`` setting reads it (pydantic's
    true values), before any setting can be."""
    return environ.get(PURE_PYTHON_ENV, "").strip().lower() in ("1", "true", "t", "yes", "y", "on")


def why_not_compiled(
    root: Path, modules: Sequence[str], built_from: Mapping[str, str] | None
) -> str | None:
    """None when every module has an extension built from its current source; else the reason."""
    if built_from is None:
        return "not built"
    changed = [m for m in modules if built_from.get(m) != source_digest(source_path(root, m))]
    if changed:
        return "sources changed since the build: " + ", ".join(changed)
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    missing = [
        m
        for m in modules
        if not any(source_path(root, m).with_suffix(s).exists() for s in suffixes)
    ]
    if missing:
        return "no extension for " + ", ".join(missing)
    return None


class SourcesFirst(importlib.abc.MetaPathFinder):
    """Imports the given modules from their ``.py`` sources, ahead of any extension."""

    def __init__(self, root: Path, modules: Sequence[str]) -> None:
        self._root = root
        self._modules = frozenset(modules)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._modules:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(self._root, fullname))


def _built_from() -> Mapping[str, str] | None:
    try:
        manifest = importlib.import_module(MANIFEST_MODULE)
    except ImportError:
        return None
    sources: Mapping[str, str] = manifest.SOURCES
    return sources


def use_compiled_or_sources() -> str:
    """Decides, before any of them is imported, whether the compiled modules or their sources
    run in this process, and returns (and keeps in ``mode``) what was decided."""
    global mode
    root = Path(__file__).resolve().parent.parent
    if pure_python_requested():
        reason: str | None = f"{PURE_PYTHON_ENV}=1"
    else:
        reason = why_not_compiled(root, COMPILED_MODULES, _built_from())
    if reason is None:
        mode = "compiled"
        return mode
    if not any(isinstance(f, SourcesFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, SourcesFirst(root, COMPILED_MODULES))
    mode = f"sources ({reason})"
    if reason.startswith("sources changed"):
        log.warning("the scoring path runs from its sources, not compiled: %s; rebuild with "
                    "`make native` (or `pip install -e .`)", reason)  # fmt: skip
    return mode


def build_is_current() -> bool:
    """Every module has an extension built from its current source (whatever
    ``STREAMSCORE_PURE_PYTHON`` asks for this process)."""
    root = Path(__file__).resolve().parent.parent
    return why_not_compiled(root, COMPILED_MODULES, _built_from()) is None
