"""The bench's record of the commit measured names the files that differed from it, whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import environment  # noqa: E402 (bench/ is a folder of scripts, not a package)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_changed_files_are_named_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _git(tmp_path, "init", "-q")
    for name in ("README.md", "b.py", "c.py"):
        (tmp_path / name).write_text("one\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    (tmp_path / "README.md").write_text("two\n")  # changed, not staged: " M README.md"
    (tmp_path / "b.py").write_text("two\n")
    _git(tmp_path, "add", "b.py")  # changed and staged: "M  b.py"
    (tmp_path / "new.txt").write_text("new\n")
    monkeypatch.setattr(environment, "REPO", tmp_path)
    info = environment.git_info()
    assert info["dirty"] is True
    assert sorted(info["changed_files"]) == ["README.md", "b.py"]
    assert info["untracked_files"] == ["new.txt"]
