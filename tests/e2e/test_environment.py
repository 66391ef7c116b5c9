"""Environment faults give one line naming the path, and hand-deleted output is rebuilt.

The faults are real: a read-only bind mount and a full tmpfs (the tests run as root, as CI
does; mounting is what needs it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import copy_examples, stacgit, tree


def _build(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stacgit", "build", "-j", "1"], cwd=repo, capture_output=True, text=True, timeout=300)


@pytest.fixture
def mounts():
    done: list[Path] = []

    def mount(*args: str, target: Path) -> None:
        subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
        done.append(target)

    yield mount
    for target in reversed(done):
        subprocess.run(["umount", str(target)], capture_output=True)


def _errors(res: subprocess.CompletedProcess) -> list[str]:
    return [l for l in res.stderr.splitlines() if l.startswith("error:")]


def test_a_read_only_output_folder(repo, tmp_path, mounts):
    empty = tmp_path / "empty"
    empty.mkdir()
    (repo / "build").mkdir()
    mounts("--bind", str(empty), target=repo / "build")
    mounts("-o", "remount,bind,ro", target=repo / "build")
    res = _build(repo)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert _errors(res) == ["error: build: cannot write: Read-only file system"]


def test_a_read_only_state_folder(repo, tmp_path, mounts):
    assert _build(repo).returncode == 0
    saved = tmp_path / "state"
    shutil.copytree(repo / ".stacgit", saved)
    mounts("--bind", str(saved), target=repo / ".stacgit")
    mounts("-o", "remount,bind,ro", target=repo / ".stacgit")
    (repo / "catalogs/shift/sources/flightlines.csv").write_text((repo / "catalogs/shift/sources/flightlines.csv").read_text().replace(",good", ",fair", 1))
    res = _build(repo)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert _errors(res) == ["error: .stacgit: cannot write: Read-only file system"]


def test_a_full_disk_is_one_line_naming_the_file(repo, mounts):
    (repo / "build").mkdir()
    mounts("-t", "tmpfs", "-o", "size=64k", "tmpfs", target=repo / "build")
    res = _build(repo)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    errors = _errors(res)
    assert len(errors) == 1 and errors[0].endswith("failed the same way)") and ": No space left on device" in errors[0]
    assert str(repo / "build") in errors[0] and ".stacgit/tmp" not in errors[0]  # the destination, not a temporary file


def test_deleted_output_folders_are_built_again(tmp_path):
    repo = copy_examples(tmp_path / "repo")
    clean = copy_examples(tmp_path / "clean")
    assert stacgit(repo, "build").exit_code == 0 and stacgit(clean, "build").exit_code == 0
    shutil.rmtree(repo / "build/3dep/MN_RedRiver_2019")
    assert stacgit(repo, "build").exit_code == 0
    shutil.rmtree(repo / "build")
    assert stacgit(repo, "build").exit_code == 0
    assert tree(repo / "build") == tree(clean / "build")
