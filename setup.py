"""Builds the scoring path's modules as C extensions with mypyc (everything else about the
package is in pyproject.toml).

The job's per-event work is plain Python (decode, features, state, scores, Avro, outputs);
compiled by mypyc from the same typed sources it costs less per event (README, Performance). The
sources stay the definition: ``streamscore/native.py`` imports them instead when
``STREAMSCORE_PURE_PYTHON=1`` or when any of them changed since the build, and
``STREAMSCORE_PURE_PYTHON=1`` at install time builds no extension at all.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

from setuptools import setup

MANIFEST_HEADER = '''"""Written by setup.py at each native build: the sources its extensions were
built from, module -> sha256. Not edited by hand, not committed."""

'''


def _native() -> ModuleType:
    """``streamscore/native.py`` on its own: the package cannot be imported before its build."""
    spec = importlib.util.spec_from_file_location("_streamscore_native", "streamscore/native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extensions() -> list[object]:
    native = _native()
    root = Path(".")
    manifest = native.source_path(root, native.MANIFEST_MODULE)
    # An earlier build's extensions go first: one of a module no longer listed would be
    # imported ahead of its source, and bound to a shared library it does not belong to.
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for built in (root / "streamscore").rglob(f"*{suffix}"):
            built.unlink()
    if native.pure_python_requested():
        manifest.unlink(missing_ok=True)
        return []
    from mypyc.build import mypycify

    sources = [native.source_path(root, m) for m in native.COMPILED_MODULES]
    digests = {
        m: hashlib.sha256(path.read_bytes()).hexdigest()
        for m, path in zip(native.COMPILED_MODULES, sources)
    }
    manifest.write_text(MANIFEST_HEADER + f"SOURCES = {digests!r}\n")
    return mypycify(
        ["--config-file", "pyproject.toml", *map(str, sources)], group_name=native.GROUP
    )


setup(ext_modules=_extensions())
