"""Builds the scoring path's modules as C extensions with mypyc, and those that need C arrays with
Cython (everything else about the package is in pyproject.toml).

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
from setuptools.command.build_ext import build_ext

MANIFEST_HEADER = '''"""Written by setup.py next to the extensions it builds: the sources they
were built from, module -> sha256. Not edited by hand, not committed."""

'''


def _native() -> ModuleType:
    """``streamscore/native.py`` on its own: the package cannot be imported before its build."""
    spec = importlib.util.spec_from_file_location("_streamscore_native", "streamscore/native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NATIVE = _native()
# The sources' hashes as mypyc reads them (it generates the C code when setup.py starts).
DIGESTS = {
    module: hashlib.sha256(NATIVE.source_path(Path("."), module).read_bytes()).hexdigest()
    for module in NATIVE.COMPILED_MODULES
}


class BuildWithManifest(build_ext):
    """Writes the manifest where the extensions go: in the source tree for an editable install
    (``pip install -e .``), in the build folder for a wheel, so that a wheel built from a tree
    never vouches for that tree's own extensions."""

    def run(self) -> None:
        package = Path(self.get_ext_fullpath("streamscore.native")).parent
        if self.inplace:
            # An extension of a module no longer listed would be imported ahead of its source,
            # bound to a shared library it does not belong to.
            listed = {*NATIVE.COMPILED_MODULES, NATIVE.GROUP + "__mypyc"}
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                for built in package.rglob(f"*{suffix}"):
                    parts = built.relative_to(package.parent).parts
                    module = ".".join((*parts[:-1], parts[-1][: -len(suffix)]))
                    if module not in listed:
                        built.unlink()
        super().run()
        package.mkdir(parents=True, exist_ok=True)
        manifest = package / (NATIVE.MANIFEST_MODULE.rsplit(".", 1)[-1] + ".py")
        manifest.write_text(MANIFEST_HEADER + f"SOURCES = {DIGESTS!r}\n")


def _extensions() -> list[object]:
    if NATIVE.pure_python_requested():
        # No build, so no manifest: the tree's earlier extensions, if any, are not used.
        NATIVE.source_path(Path("."), NATIVE.MANIFEST_MODULE).unlink(missing_ok=True)
        return []
    from Cython.Build import cythonize
    from mypyc.build import mypycify

    sources = [str(NATIVE.source_path(Path("."), m)) for m in NATIVE.MYPYC_MODULES]
    mypyc = mypycify(["--config-file", "pyproject.toml", *sources], group_name=NATIVE.GROUP)
    cython = cythonize(
        [str(NATIVE.source_path(Path("."), m)) for m in NATIVE.CYTHON_MODULES],
        compiler_directives={"language_level": 3},
        quiet=True,
    )
    return [*mypyc, *cython]


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildWithManifest})
