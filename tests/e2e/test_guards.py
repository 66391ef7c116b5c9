"""Nothing reaches the live catalog by accident: mistakes in a mapping or a source are named
when the build reads them, and ``publish --prune`` after them leaves the live target as it was,
naming the guard that refused."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from conftest import add_synthetic, copy_examples, stacgit, stacgit_proc, tree
from test_publish import git

CSV = "catalogs/shift/sources/flightlines.csv"
MAPPING = "mappings/aviris-ng.yaml"


@pytest.fixture
def live(tmp_path: Path) -> tuple[Path, Path]:
    """The examples (with a small synthetic NDJSON catalog), committed, built and published."""
    repo = copy_examples(tmp_path / "repo", catalogs=("shift", "3dep", "synthetic"))
    add_synthetic(repo, 300)
    (repo / ".gitignore").write_text("/build/\n/.stacgit/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "examples")
    assert stacgit(repo, "build").exit_code == 0
    mirror = tmp_path / "public"
    assert stacgit(repo, "publish", "--to", f"file://{mirror}").exit_code == 0
    return repo, mirror


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _drop_column(path: Path, column: str) -> None:
    rows = [l.split(",") for l in path.read_text().splitlines()]
    i = rows[0].index(column)
    path.write_text("".join(",".join(r[:i] + r[i + 1 :]) + "\n" for r in rows))


MISTAKES = {
    "bad strptime directive": (
        lambda repo: _edit(repo / MAPPING, "%H%M%S'", "%H%M%Q'"),
        2,
        f"{MAPPING}:4: datetime.format: '%Y%m%dt%H%M%Q': '%Q' is not a strptime directive",
    ),
    "mapping path naming no column": (
        lambda repo: _edit(repo / MAPPING, "path: pixel_size_m,", "path: pixel_sise_m,"),
        1,  # found when the build reads the source: a failed build
        f"{MAPPING}:9: {CSV} has no column 'pixel_sise_m' (did you mean 'pixel_size_m'?)",
    ),
    "CSV that lost a column": (
        lambda repo: _drop_column(repo / CSV, "altitude_km"),
        1,
        f"{MAPPING}:10: {CSV} has no column 'altitude_km'",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_is_named_and_publish_prune_leaves_the_live_catalog(live, mistake):
    repo, mirror = live
    before = tree(mirror)
    make, code, message = MISTAKES[mistake]
    make(repo)
    res = stacgit_proc(repo, "build")  # what users run: one line on stderr, no traceback
    assert res.returncode == code and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    pub = stacgit(repo, "publish", "--to", f"file://{mirror}", "--prune")
    assert pub.exit_code == 1 and "guard: stale build" in pub.stderr
    assert tree(mirror) == before


def test_an_emptied_source_is_named_and_its_deletes_are_refused(live):
    repo, mirror = live
    before = tree(mirror)
    for f in (repo / "catalogs/synthetic/sources/hls-s30-00").iterdir():
        f.write_bytes(b"")
    res = stacgit(repo, "build")
    assert res.exit_code == 0  # an empty file is a valid NDJSON file: the build cannot tell
    assert "warning: collection synthetic/hls-s30-00 has no items" in res.stdout + res.stderr
    pub = stacgit(repo, "publish", "--to", f"file://{mirror}", "--prune")
    assert pub.exit_code == 1 and "guard: deletes" in pub.stderr
    assert "collection 'hls-s30-00': this publish would delete" in pub.stderr and "--allow-deletes" in pub.stderr
    assert tree(mirror) == before
    ok = stacgit(repo, "publish", "--to", f"file://{mirror}", "--prune", "--allow-deletes")
    assert ok.exit_code == 0, ok.stderr
    assert not any(p.startswith("synthetic/hls-s30-00/") and p.endswith(".json") and "collection" not in p for p in tree(mirror))


def test_failed_records_are_refused_unless_allowed(live):
    repo, mirror = live
    before = tree(mirror)
    rows = (repo / CSV).read_text().splitlines(keepends=True)
    rows[2] = rows[2].replace(rows[2].split(",")[6], "wide", 1)  # pixel_size_m is not a number
    (repo / CSV).write_text("".join(rows))
    res = stacgit(repo, "build")
    assert res.exit_code == 1 and "failed 1" in res.stdout + res.stderr
    pub = stacgit(repo, "publish", "--to", f"file://{mirror}", "--prune")
    assert pub.exit_code == 1 and "guard: failed records" in pub.stderr and "build/shift/failed.ndjson" in pub.stderr
    assert tree(mirror) == before
    assert stacgit(repo, "publish", "--to", f"file://{mirror}", "--prune", "--allow-failures").exit_code == 0


_KILL_PUBLISH = """
import os, signal, sys
from stacgit import stores
n, mode = int(sys.argv[1]), sys.argv[2]
count = [0]
replace = os.replace
def killing_replace(src, dst):
    count[0] += 1
    if mode == "before-rename" and count[0] >= n:
        os.kill(os.getpid(), signal.SIGKILL)  # the object's bytes are written, not yet in place
    replace(src, dst)
    if mode == "after-rename" and count[0] >= n:
        os.kill(os.getpid(), signal.SIGKILL)
stores.os.replace = killing_replace
from stacgit.cli import main
sys.argv = ["stacgit", *sys.argv[3:]]
main()
"""


@pytest.mark.parametrize("n, mode", [(1, "before-rename"), (2, "after-rename"), (6, "before-rename"), (11, "after-rename")])
def test_killed_file_publish_leaves_no_temp_file_and_no_orphan(live, n, mode):
    """Killed while its journal is written, or before or after an object is renamed into place
    (objects go up in path order: the new flight lines first)."""
    import sys

    repo, mirror = live
    v1 = tree(repo / "build/shift")
    rows = (repo / CSV).read_text().splitlines(keepends=True)
    extra = [r.replace("ang2022", "ang2021", 1) for r in rows[1:9]]  # eight new flight lines
    (repo / CSV).write_text("".join(rows + extra))
    assert stacgit(repo, "build").exit_code == 0
    args = ["publish", "shift", "--to", f"file://{mirror}", "--concurrency", "1"]
    proc = subprocess.run([sys.executable, "-c", _KILL_PUBLISH, str(n), mode, *args], cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    v2 = tree(repo / "build/shift")
    live_files = {rel for rel in tree(mirror / "shift") if not rel.startswith((".stacgit/", "changes/"))}
    assert live_files <= set(v1) | set(v2)  # no temporary file under the live tree
    assert bool(live_files - set(v1)) == (n > 1)  # after the journal, new objects went up

    # the build changes again before the rerun: the new flight lines are withdrawn
    (repo / CSV).write_text("".join(rows))
    assert stacgit(repo, "build").exit_code == 0
    rerun = stacgit(repo, *args, "--prune")
    assert rerun.exit_code == 0, rerun.stderr
    live_files = {rel for rel in tree(mirror / "shift") if not rel.startswith((".stacgit/", "changes/"))}
    assert live_files == set(tree(repo / "build/shift")) - {"manifest.json"}  # no orphan remains
    assert not (mirror / "shift/.stacgit/pending.json").exists()
