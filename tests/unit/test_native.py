"""The compiled scoring path: built from the current sources or not used at all, and the same
results as its sources."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamscore import native
from streamscore.config import Settings

EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]


def _package(root: Path, body: str = "VALUE = 'source'\n") -> Path:
    """A package ``pkg`` with one module ``pkg.mod`` under ``root``."""
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    source = root / "pkg" / "mod.py"
    source.write_text(body)
    return source


def test_a_build_is_current_only_with_every_source_unchanged_and_its_extension(
    tmp_path: Path,
) -> None:
    source = _package(tmp_path)
    built = {"pkg.mod": native.source_digest(source)}
    assert native.why_not_compiled(tmp_path, ["pkg.mod"], None) == "not built"
    assert native.why_not_compiled(tmp_path, ["pkg.mod"], built) == "no extension for pkg.mod"
    source.with_suffix(EXTENSION).write_bytes(b"")
    assert native.why_not_compiled(tmp_path, ["pkg.mod"], built) is None
    source.write_text("VALUE = 'edited'\n")
    assert native.why_not_compiled(tmp_path, ["pkg.mod"], built) == (
        "sources changed since the build: pkg.mod"
    )
    assert native.why_not_compiled(tmp_path, ["pkg.mod"], {}) == (
        "sources changed since the build: pkg.mod"
    )


def test_sources_first_imports_the_source_even_beside_an_extension(tmp_path: Path) -> None:
    """An extension Python cannot load stands in for a stale build: without the finder the
    import fails; with it, the source is what runs."""
    source = _package(tmp_path)
    source.with_suffix(EXTENSION).write_bytes(b"not a shared library")
    script = (
        "import sys; from streamscore.native import SourcesFirst; from pathlib import Path\n"
        "if sys.argv[1] == 'guarded':\n"
        "    sys.meta_path.insert(0, SourcesFirst(Path(sys.argv[2]), ['pkg.mod']))\n"
        "import pkg.mod; print(pkg.mod.VALUE, pkg.mod.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    run = [sys.executable, "-c", script]
    bare = subprocess.run([*run, "bare", str(tmp_path)], capture_output=True, text=True, env=env)
    assert bare.returncode != 0 and "ImportError" in bare.stderr
    guarded = subprocess.run(
        [*run, "guarded", str(tmp_path)], capture_output=True, text=True, env=env, check=True
    )
    assert guarded.stdout.split() == ["source", str(source)]


@pytest.mark.parametrize(
    ("value", "pure"),
    [("", False), ("0", False), ("false", False), ("1", True), ("true", True), ("Yes", True)],
)
def test_the_switch_reads_as_the_setting_reads(
    value: str, pure: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(native.PURE_PYTHON_ENV, value)
    assert native.pure_python_requested() is pure
    if value:
        assert Settings().pure_python is pure  # type: ignore[call-arg]


def test_the_tests_run_the_compiled_build() -> None:
    """What the job runs is what the tests test: `make setup` builds it, and a build older than
    its sources would not be used (CI would then test the sources, silently)."""
    if native.pure_python_requested():
        pytest.skip("STREAMSCORE_PURE_PYTHON asks for the sources")
    assert native.mode == "compiled"
    for name in native.COMPILED_MODULES:
        module = importlib.import_module(name)
        assert not module.__file__.endswith(".py"), name


# Features, states, predictions and outcomes of one generated stream, as JSON-able values.
_SAME_RESULTS = r"""
import json, pickle
from streamscore import native
from streamscore.features.engine import FeatureEngine
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.job.avro_decoders import EventDecoder, LabelDecoder, OutcomeDecoder
from streamscore.job.avro_encoders import OutcomeEncoder, PredictionEncoder
from streamscore.job.state import PendingOutcome, ScoringState, pending_entry, pending_outcome
from streamscore.resources import schema
from streamscore.serde import Codec

engine = FeatureEngine()
predictions = PredictionEncoder(schema("prediction"))
outcomes = OutcomeEncoder(schema("outcome"))
event_codec, label_codec = Codec("event"), Codec("label")
readers = (EventDecoder(schema("event")), LabelDecoder(schema("label")),
           OutcomeDecoder(schema("outcome")))
generator = TransactionGenerator(GeneratorConfig(users=50, seed=11, start_ms=1_700_000_000_000))
states, vectors, encoded, decoded = {}, [], [], []
for i in range(3000):
    event = next(generator).event
    state = states.setdefault(event["user_id"], ScoringState(engine.new_state()))
    vector = engine.update(state.features, event)
    vectors.append(vector)
    score = (i % 97) / 97
    outcome = PendingOutcome(event["event_time"], event["amount"], vector, score, "REVIEW",
                             "m-1", "champion", 0, None, score / 2, "c-1")
    assert pending_outcome(pending_entry(outcome)) == outcome
    encoded.append(predictions.encode(
        event["event_id"], event["user_id"], event["event_time"], score, "APPROVE", "m-1",
        "fs-1", ["redis"] if i % 5 else [], i, i + 1, event["amount"], "champion",
        None if i % 3 else score, "c-1").hex())
    encoded.append(outcomes.encode(
        event["event_id"], event["user_id"], event["event_time"], i, i % 2 == 0, event["amount"],
        score, "REVIEW", "m-1", "champion", i % 100, None if i % 2 else score, score / 2,
        None if i % 3 else "c-1", "fs-1", vector).hex())
    label = {"event_id": event["event_id"], "user_id": event["user_id"], "is_fraud": i % 7 == 0,
             "label_time": event["event_time"] + i}
    for reader, payload in zip(readers, (event_codec.encode(event), label_codec.encode(label),
                                         bytes.fromhex(encoded[-1]))):
        decoded.append(repr(reader.decode(payload)))
print(json.dumps({"mode": native.mode, "vectors": vectors, "encoded": encoded, "decoded": decoded,
                  "states": pickle.dumps(states, 5).hex()}))
"""


def test_the_compiled_build_gives_what_its_sources_give() -> None:
    """Feature vectors, the users' pickled state (what a savepoint holds), the encoded
    predictions and outcomes and the decoded events, labels and outcomes, from the build and
    from the sources: equal, so either can restore the other's checkpoints, writes the same
    bytes and reads the same records."""

    def run(pure: bool) -> dict[str, object]:
        # (one hash seed: the state holds sets of strings, pickled in their iteration order)
        env = {**os.environ, native.PURE_PYTHON_ENV: "1" if pure else "0", "PYTHONHASHSEED": "0"}
        done = subprocess.run(
            [sys.executable, "-c", _SAME_RESULTS], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    compiled, sources = run(pure=False), run(pure=True)
    assert sources["mode"] == f"sources ({native.PURE_PYTHON_ENV}=1)"
    if native.mode == "compiled":
        assert compiled["mode"] == "compiled"
    assert compiled["vectors"] == sources["vectors"]
    assert compiled["encoded"] == sources["encoded"]
    assert compiled["decoded"] == sources["decoded"]
    assert compiled["states"] == sources["states"]


def test_the_compiled_modules_constants_are_final() -> None:
    """A module constant of a mypyc-compiled module that is not ``Final`` is looked up in the
    module's dictionary at each use (about 130 instructions; the join's entry kinds and the
    timer step were read several times per record). Constants are the names in capitals."""
    import ast
    import re

    constant = re.compile(r"^_?[A-Z][A-Z0-9_]*$")
    plain: list[str] = []
    for module in native.MYPYC_MODULES:
        path = Path(native.__file__).parent.parent / (module.replace(".", "/") + ".py")
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.AnnAssign):
                annotation = node.annotation
                if isinstance(annotation, ast.Subscript):
                    annotation = annotation.value  # Final[int]
                if isinstance(annotation, ast.Name) and annotation.id == "Final":
                    continue
                targets: list[ast.expr] = [node.target]
            elif isinstance(node, ast.Assign):
                targets = node.targets
            else:
                continue
            for target in targets:
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                plain += [f"{module}.{n.id}" for n in names
                          if isinstance(n, ast.Name) and constant.match(n.id)]  # fmt: skip
    assert plain == [], "constants without Final"
