"""kill -9 in the middle of a build, then build again: the result equals a clean full build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import add_synthetic, copy_examples, stacgit_proc, tree


def _start(repo: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stacgit", "build", "-j", "2"],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _count(path: Path) -> int:
    return sum(1 for _ in path.rglob("*.json")) if path.exists() else 0


@pytest.mark.integration
@pytest.mark.parametrize("kill_after_files", [0, 1500, 4000])
def test_kill_9_then_build_equals_clean_build(tmp_path, kill_after_files):
    clean = copy_examples(tmp_path / "clean", catalogs=("shift",))
    crashed = copy_examples(tmp_path / "crashed", catalogs=("shift",))
    for r in (clean, crashed):
        add_synthetic(r, 6000)
    assert stacgit_proc(clean, "build", "-j", "2").returncode == 0

    proc = _start(crashed)
    deadline = time.monotonic() + 120
    target = crashed / "build" / "synthetic"
    if kill_after_files == 0:
        # during mapping: wait until the state store exists, before any item is written
        while not (crashed / ".stacgit" / "cache").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
    else:
        while _count(target) < kill_after_files and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    assert proc.poll() is None, "build finished before it could be killed; raise the item count"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    res = stacgit_proc(crashed, "build", "-j", "2")
    assert res.returncode == 0, res.stderr
    assert tree(crashed / "build") == tree(clean / "build")
    assert stacgit_proc(crashed, "status").returncode == 0
    # nothing left behind in the temp area
    assert not any((crashed / ".stacgit" / "tmp").iterdir())
