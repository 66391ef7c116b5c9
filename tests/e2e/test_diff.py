"""`stacgit diff` against a git ref built in a worktree, and against a build directory."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import copy_examples, stacgit

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def gitrepo(tmp_path: Path) -> Path:
    repo = copy_examples(tmp_path / "repo")
    (repo / ".gitignore").write_text("/build/\n/.stacgit/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def diff(repo: Path, *args: str):
    return stacgit(repo, "diff", "--base", "main", *args)


def test_a_branch_with_a_patch_deletions_and_a_mapping_change(gitrepo, tmp_path):
    repo = gitrepo
    git(repo, "switch", "-q", "-c", "change")
    # 1. a patch that edits 2 SHIFT flight lines
    rows = (repo / "catalogs/shift/sources/flightlines.csv").read_text().splitlines()
    ids = [rows[1].split(",")[0], rows[2].split(",")[0]]
    (repo / "patches").mkdir(exist_ok=True)
    (repo / "patches/0100-note.yaml").write_text(
        f"description: reviewer note\ntarget: {{catalog: shift, collection: aviris-ng-l2a}}\nselect: {{ids: {json.dumps(ids)}}}\n"
        "ops:\n  - {op: add, path: /properties/review, value: checked}\n"
    )
    # 2. delete 3 items of MN_RedRiver by a delete patch
    features = json.loads((repo / "catalogs/3dep/sources/MN_RedRiver_2019.geojson").read_text())["features"]
    gone = sorted(f"USGS_LPC_{f['properties']['project']}_{f['properties']['tile']}" for f in features[:3])
    (repo / "patches/0101-withdraw.yaml").write_text(
        f"description: withdrawn tiles\ntarget: {{catalog: 3dep, collection: MN_RedRiver_2019}}\nselect: {{ids: {json.dumps(gone)}}}\ndelete: true\n"
    )
    # 3. a mapping change: CO_Eastern's quality level gets a readable name
    mapping = repo / "mappings/3dep-wesm.yaml"
    mapping.write_text(mapping.read_text().replace("quality_level: {path: ql}", "quality_level: {path: ql, lookup: {'QL 2': quality level 2}, lookup_default: other}"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "change")
    assert stacgit(repo, "build").exit_code == 0

    res = diff(repo, "--format", "json", "--out", str(tmp_path / "out"), "--exit-code")
    assert res.exit_code == 1, res.stderr
    data = res.json
    co = data["collections"]["3dep/CO_Eastern_B1_2018"]
    n_co = co["modified"]
    assert n_co > 0 and co["added"] == co["deleted"] == 0
    assert [f["change"] for f in co["fields"]] == ["replace /properties/quality_level"]
    assert co["causes"] == ["mappings/3dep-wesm.yaml"]
    shift = data["collections"]["shift/aviris-ng-l2a"]
    assert (shift["added"], shift["modified"], shift["deleted"]) == (0, 2, 0)
    assert sorted(shift["items"]["modified"]) == sorted(ids)
    assert {f["change"] for f in shift["fields"]} >= {"add /properties/review"}
    assert shift["causes"] == ["patches/0100-note.yaml"]
    mn = data["collections"]["3dep/MN_RedRiver_2019"]
    assert (mn["added"], mn["modified"], mn["deleted"]) == (0, 0, 3)
    assert mn["items"]["deleted"] == gone
    assert data["totals"] == {"added": 0, "modified": n_co + 2, "deleted": 3}
    assert set(data["collections"]) == {"3dep/CO_Eastern_B1_2018", "shift/aviris-ng-l2a", "3dep/MN_RedRiver_2019"}

    geo = diff(repo, "--format", "geojson").json
    kinds = sorted((f["properties"]["change"], f["properties"]["stroke"]) for f in geo["features"])
    assert kinds.count(("deleted", "#d62728")) == 3 and kinds.count(("modified", "#ff7f0e")) == n_co + 2
    assert all(f["geometry"]["type"] == "Polygon" for f in geo["features"])

    md = diff(repo).stdout
    assert "**0 added, %d modified, 3 deleted**" % (n_co + 2) in md
    assert "`3dep/CO_Eastern_B1_2018`" in md and "`replace /properties/quality_level`" in md
    assert len(md) <= 65_000
    out = tmp_path / "out"
    assert json.loads((out / "summary.json").read_text()) == data
    assert (out / "summary.md").read_text().startswith("## stacgit change summary")
    assert json.loads((out / "changes.geojson").read_text())["type"] == "FeatureCollection"


def test_a_no_op_branch_reports_nothing(gitrepo):
    repo = gitrepo
    git(repo, "switch", "-q", "-c", "readme")
    (repo / "NOTES.md").write_text("docs only\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "docs")
    assert stacgit(repo, "build").exit_code == 0
    res = diff(repo, "--format", "json", "--exit-code")
    assert res.exit_code == 0, res.stderr
    assert res.json["totals"] == {"added": 0, "modified": 0, "deleted": 0} and res.json["collections"] == {}
    assert diff(repo, "--format", "geojson").json["features"] == []
    assert "No changes." in diff(repo).stdout
    # the base worktree is reused: a second diff builds nothing there
    work = repo / ".stacgit" / "diff-base" / "worktree"
    before = {p: p.stat().st_mtime_ns for p in (work / "build").rglob("*.json")}
    assert diff(repo, "--format", "json").exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in (work / "build").rglob("*.json")} == before


def test_old_build_dir_and_bad_inputs(gitrepo, tmp_path):
    repo = gitrepo
    assert stacgit(repo, "build").exit_code == 0
    shutil.copytree(repo / "build", tmp_path / "old")
    csv = repo / "catalogs/shift/sources/flightlines.csv"
    lines = csv.read_text().splitlines(keepends=True)
    del lines[4]
    csv.write_text("".join(lines))
    assert stacgit(repo, "build").exit_code == 0
    res = stacgit(repo, "diff", "--old", str(tmp_path / "old"), "--format", "json")
    assert res.json["totals"] == {"added": 0, "modified": 0, "deleted": 1}
    bad = stacgit(repo, "diff", "--base", "no-such-ref")
    assert bad.exit_code != 0 and "--base no-such-ref: not a commit" in bad.stderr and "Traceback" not in bad.stderr
    both = stacgit(repo, "diff")
    assert both.exit_code != 0 and "give one of --base" in both.stderr


def test_diff_describes_the_working_tree_not_a_stale_build(gitrepo):
    repo = gitrepo
    assert stacgit(repo, "build").exit_code == 0
    rows = (repo / "catalogs/shift/sources/flightlines.csv").read_text().splitlines()
    item_id = rows[1].split(",")[0]
    # a patch written but neither built nor added to git
    (repo / "patches").mkdir(exist_ok=True)
    (repo / "patches/0100-note.yaml").write_text(
        f"description: note\ntarget: {{catalog: shift, collection: aviris-ng-l2a}}\nselect: {{ids: [{item_id}]}}\n"
        "ops:\n  - {op: add, path: /properties/review, value: checked}\n"
    )
    as_is = diff(repo, "--format", "json", "--as-is", "--exit-code")
    assert as_is.exit_code == 0 and as_is.json["totals"] == {"added": 0, "modified": 0, "deleted": 0}  # build/ as it was
    res = diff(repo, "--format", "json", "--exit-code")
    assert res.exit_code == 1
    c = res.json["collections"]["shift/aviris-ng-l2a"]
    assert list(c["items"]["modified"]) == [item_id]
    assert c["causes"] == ["patches/0100-note.yaml (untracked)"]
    md = diff(repo).stdout
    assert "`patches/0100-note.yaml (untracked)`" in md and "```geojson" in md


def test_diff_after_a_build_that_stopped_half_way(gitrepo, monkeypatch):
    """Item files rewritten, manifest not: the diff still reports the real change."""
    from stacgit import engine as b
    from stacgit.errors import BuildError

    repo = gitrepo
    assert stacgit(repo, "build").exit_code == 0
    csv = repo / "catalogs/shift/sources/flightlines.csv"
    rows = csv.read_text().splitlines(keepends=True)
    rows[1] = rows[1].replace(",good", ",fair") if ",good" in rows[1] else rows[1].replace(",fair", ",good")
    csv.write_text("".join(rows))

    def stop(*args, **kwargs):
        raise BuildError("stopped before the catalog task")

    with monkeypatch.context() as m:
        m.setattr(b, "build_catalog", stop)
        assert stacgit(repo, "build", "-j", "1").exit_code != 0
    res = diff(repo, "--format", "json", "--exit-code")
    assert res.exit_code == 1, res.stderr
    assert list(res.json["collections"]["shift/aviris-ng-l2a"]["items"]["modified"]) == [rows[1].split(",")[0]]


def test_the_map_block_keeps_the_comment_under_githubs_limit():
    from stacgit.diffing import MD_LIMIT, summary_markdown

    ring = [[-120 + k / 1000, 34 + (k % 7) / 1000] for k in range(2000)]
    ring.append(ring[0])
    big = {"type": "Polygon", "coordinates": [ring]}
    geo = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": big, "properties": {"id": f"i{n}", "change": "modified", "stroke": "#ff7f0e"}} for n in range(3000)
    ]}
    data = {"base": "main", "totals": {"added": 0, "modified": 3000, "deleted": 0}, "collections": {
        "c/x": {"added": 0, "modified": 3000, "deleted": 0, "collection_changed": False, "collection_patch": None, "fields": [],
                "items": {"added": [], "deleted": [], "modified": {f"i{n}": [{"op": "replace", "path": "/properties/x", "value": "y" * 900}] for n in range(3000)}}, "causes": []}
    }}
    md = summary_markdown(data, geo)
    assert len(md) < MD_LIMIT < 65_536
    block = md.split("```geojson\n", 1)[1].split("\n```", 1)[0]
    shown = json.loads(block)["features"]
    assert 0 < len(shown) < 3000 and "changes.geojson` has them all" in md
    assert all(len(str(c).split(".")[-1].rstrip("]")) <= 4 for c in shown[0]["geometry"]["coordinates"][0][0])  # rounded
    assert shown[0]["properties"]["stroke"] == "#ff7f0e"
