"""The package installed from its wheel, not the checkout, works from any directory.

Builds the wheel, installs it (no dependencies) into a fresh venv that borrows the test venv's
third-party packages, and runs the CLI from a folder outside the repository against the test
stack: it reads the schemas (produce, consume), the job entry script (submit) and the Maven pom
from the installed package, and the submitted job scores the events it produced.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import uuid
import venv
from pathlib import Path

import pytest

from tests.e2e.helpers import REPO, as_overrides

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the streamscore wheel installed; its dependencies come from the test venv."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root), str(REPO)],
        check=True,
    )
    (wheel,) = root.glob("streamscore-*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # A plain path line: the test venv's packages become importable, but its .pth files (the
    # editable install's finder among them) are not run, so `streamscore` can only be the wheel.
    (site / "test-venv-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         str(wheel)],
        check=True,
    )  # fmt: skip
    return env_dir


def test_installed_package_reads_its_own_files(wheel_venv: Path, tmp_path: Path) -> None:
    probe = (
        "import json, streamscore, streamscore.resources as r; "
        "print(json.dumps([streamscore.__file__, str(r.job_entry_script()), str(r.maven_pom()), "
        "r.schema('prediction')['name']]))"
    )
    out = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    package, entry, pom, schema_name = json.loads(out)
    for path in (package, entry, pom):
        assert Path(path).is_relative_to(wheel_venv), path
        assert not Path(path).is_relative_to(REPO), path
    assert schema_name == "Prediction"


def test_wheel_cli_produces_submits_and_scores(
    wheel_venv: Path, tmp_path: Path, job_settings: dict[str, str]
) -> None:
    run = uuid.uuid4().hex[:8]
    overrides = {**job_settings, "job_name": f"wheel-{run}", "consumer_group": f"wheel-{run}"}
    sets = [arg for item in as_overrides(overrides) for arg in ("--set", item)]

    def cli(*args: str) -> str:
        result = subprocess.run(
            [str(wheel_venv / "bin" / "streamscore"), *sets, *args],
            cwd=tmp_path,  # outside the repository
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    seed = 7000 + int(run[:4], 16) % 1000
    prefix = f"e{seed:x}-"
    cli("produce", "--count", "30", "--rate", "0", "--seed", str(seed), "--no-labels")
    # Other tests leave malformed records on the topic: their "record" is None.
    lines = cli("consume", "--topic", "events", "--from-beginning", "--timeout", "5", "--json")
    records = [json.loads(line)["record"] for line in lines.splitlines()]
    ids = {r["event_id"] for r in records if r and r["event_id"].startswith(prefix)}
    assert len(ids) == 30
    cli("submit")
    try:
        scored = [
            json.loads(line)["record"]
            for line in cli("consume", "--from-beginning", "--timeout", "15", "--json").splitlines()
        ]
        assert {p["event_id"] for p in scored if p["event_id"] in ids} == ids
    finally:
        cli("cancel")
