"""End to end: incremental behaviour, determinism, outputs valid STAC with safe links."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import add_synthetic, copy_examples, stacgit, stacgit_proc, tree
from helpers_stac import core_errors

CSV = "catalogs/shift/sources/flightlines.csv"
SHIFT_ITEM = "build/shift/aviris-ng-l2a/{0}/{0}.json"


def build(repo: Path, *args: str):
    res = stacgit(repo, "build", "--json", "-j", "1", *args)
    return res


def test_two_clean_builds_are_byte_identical(tmp_path):
    a = copy_examples(tmp_path / "a")
    b = copy_examples(tmp_path / "b")
    add_synthetic(a, 800)
    add_synthetic(b, 800)
    assert build(a).exit_code == 0
    assert stacgit(b, "build", "--json", "-j", "2").exit_code == 0  # parallel build, same bytes
    ta, tb = tree(a / "build"), tree(b / "build")
    assert len(ta) > 900
    assert ta == tb


def test_second_build_writes_nothing_and_status_is_clean(repo):
    first = build(repo)
    assert first.exit_code == 0, first.stderr
    assert first.json["items"] == {"written": 61, "unchanged": 0, "deleted": 0, "failed": 0}
    before = {p: p.stat().st_mtime_ns for p in (repo / "build").rglob("*") if p.is_file()}
    second = build(repo)
    assert second.json["files_written"] == 0
    assert second.json["items"] == {"written": 0, "unchanged": 61, "deleted": 0, "failed": 0}
    after = {p: p.stat().st_mtime_ns for p in (repo / "build").rglob("*") if p.is_file()}
    assert before == after
    assert stacgit(repo, "status").exit_code == 0


def test_changing_one_row_rewrites_one_item(repo):
    build(repo)
    before = tree(repo / "build")
    lines = (repo / CSV).read_text().splitlines(keepends=True)
    target = lines[5].split(",")[0]
    lines[5] = lines[5].replace(",good", ",fair") if ",good" in lines[5] else lines[5].replace(",fair", ",good")
    (repo / CSV).write_text("".join(lines))
    assert stacgit(repo, "status").exit_code == 1
    res = build(repo)
    assert res.json["items"]["written"] == 1
    assert res.json["records"]["mapped"] == 1  # the other 32 rows were not re-mapped
    after = tree(repo / "build")
    changed = sorted(p for p in after if before.get(p) != after[p])
    item = f"shift/aviris-ng-l2a/{target}/{target}.json"
    # the item, the manifest that lists its new digest, and the exports holding the item:
    # one GeoParquet partition (its month) and the same month's pgstac NDJSON; extents did not move
    month = target[3:7] + "-" + target[7:9]
    exports = [f"shift/aviris-ng-l2a/parquet/{month}.parquet", f"shift/pgstac/aviris-ng-l2a/{month}.ndjson"]
    assert changed == sorted(["shift/manifest.json", item, *exports])
    assert res.json["files_written"] == 2


def test_deleting_a_row_deletes_exactly_that_item(repo):
    build(repo)
    before = tree(repo / "build")
    lines = (repo / CSV).read_text().splitlines(keepends=True)
    gone = lines[3].split(",")[0]
    del lines[3]
    (repo / CSV).write_text("".join(lines))
    res = build(repo)
    assert res.json["items"]["deleted"] == 1 and res.json["items"]["written"] == 0
    after = tree(repo / "build")
    assert sorted(set(before) - set(after)) == [f"shift/aviris-ng-l2a/{gone}/{gone}.json"]
    assert not (repo / "build" / "shift" / "aviris-ng-l2a" / gone).exists()
    coll = json.loads((repo / "build/shift/aviris-ng-l2a/collection.json").read_text())
    assert f"./{gone}/{gone}.json" not in [l["href"] for l in coll["links"]]
    manifest = json.loads((repo / "build/shift/manifest.json").read_text())
    assert f"aviris-ng-l2a/{gone}/{gone}.json" not in manifest["files"]


def test_editing_a_mapping_rebuilds_only_that_collection(repo):
    build(repo)
    before = tree(repo / "build")
    mapping = repo / "mappings/3dep-wesm.yaml"
    mapping.write_text(mapping.read_text().replace("quality_level: {path: ql}", "quality_level: {path: ql, lookup: {'QL 2': quality level 2}}"))
    res = build(repo)
    assert res.json["records"]["mapped"] == 16  # only CO_Eastern_B1_2018 records
    after = tree(repo / "build")
    changed = {p for p in after if before.get(p) != after[p]}
    assert changed and all(p.startswith(("3dep/CO_Eastern_B1_2018/", "3dep/pgstac/CO_Eastern_B1_2018/")) or p == "3dep/manifest.json" for p in changed)
    assert len([p for p in changed if p.endswith(".json") and "USGS_LPC" in p]) == 16
    # a comment-only edit changes nothing
    mapping.write_text("# a comment\n" + mapping.read_text())
    again = build(repo)
    assert again.json["records"]["mapped"] == 0 and again.json["files_written"] == 0


def test_outputs_validate_and_links_stay_inside(tmp_path):
    repo = copy_examples(tmp_path / "r")
    add_synthetic(repo, 600)
    assert build(repo).exit_code == 0
    out = repo / "build"
    docs = list(out.rglob("*.json"))
    kinds = set()
    for path in docs:
        if path.name == "manifest.json" or path.parent.name == "changes":  # the change feed's index
            continue
        doc = json.loads(path.read_text())
        kinds.add(doc["type"])
        assert core_errors(doc) == [], path
        for l in doc["links"]:
            href = l["href"]
            if l["rel"] in ("about",):
                continue
            assert "://" not in href and not href.startswith("/"), (path, href)
            target = (path.parent / href).resolve()
            assert target.is_relative_to(out.resolve()) and target.exists(), (path, href)
    assert kinds == {"Feature", "Catalog", "Collection"}
    # bounded fan-out: the synthetic catalog allows at most 100 item links per file
    for path in (out / "synthetic").rglob("*.json"):
        doc = json.loads(path.read_text())
        if doc.get("type") in ("Catalog", "Collection"):
            assert sum(l["rel"] == "item" for l in doc["links"]) <= 100


def test_manifest_lists_every_output(repo):
    build(repo)
    import hashlib

    for cat in ("shift", "3dep"):
        root = repo / "build" / cat
        manifest = json.loads((root / "manifest.json").read_text())["files"]
        on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"manifest.json"}
        assert set(manifest) == on_disk
        for rel, entry in manifest.items():
            data = (root / rel).read_bytes()
            assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_collection_extent_is_computed_from_items(repo):
    build(repo)
    coll = json.loads((repo / "build/3dep/MN_RedRiver_2019/collection.json").read_text())
    assert coll["extent"]["temporal"]["interval"] == [["2019-04-20T00:00:00Z", "2019-05-15T00:00:00Z"]]
    items = [json.loads(p.read_text()) for p in (repo / "build/3dep/MN_RedRiver_2019").rglob("USGS_*.json")]
    assert len(items) == 12
    bb = coll["extent"]["spatial"]["bbox"][0]
    assert bb == [min(i["bbox"][0] for i in items), min(i["bbox"][1] for i in items), max(i["bbox"][2] for i in items), max(i["bbox"][3] for i in items)]


def test_doit_build_runs_the_same_build(tmp_path):
    a = copy_examples(tmp_path / "a")
    b = copy_examples(tmp_path / "b")
    proc = __import__("subprocess").run([str(Path(__import__("sys").executable).parent / "doit"), "build"], cwd=a, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert build(b).exit_code == 0
    assert tree(a / "build") == tree(b / "build")
    assert stacgit(a, "status").exit_code == 0


def test_only_and_full(repo):
    build(repo)
    (repo / "build/3dep/catalog.json").unlink()
    shift_csv = repo / CSV
    shift_csv.write_text(shift_csv.read_text().replace(",good", ",fair", 1))
    res = build(repo, "--only", "CO_Eastern_B1_2018")
    assert res.json["items"]["written"] == 0
    assert (repo / "build/3dep/catalog.json").exists()  # the catalog of the selection is refreshed
    assert stacgit(repo, "status").exit_code == 1  # shift is still stale: --only left it alone
    item_id = shift_csv.read_text().splitlines()[1].split(",")[0]
    res = build(repo, "--only", item_id)
    assert res.json["items"]["written"] == 1
    full = build(repo, "--full")
    assert full.json["items"]["written"] == 61
    assert stacgit(repo, "status").exit_code == 0


def test_status_names_reasons(repo):
    res = stacgit(repo, "status", "--json")
    assert res.exit_code == 1
    reasons = {s["unit"]: s["reason"] for s in res.json["stale"]}
    assert reasons["build:shift/aviris-ng-l2a/catalogs/shift/sources/flightlines.csv"] == "new"
    build(repo)
    (repo / "build/shift/aviris-ng-l2a/collection.json").write_text("{}")
    reasons = {s["unit"]: s["reason"] for s in stacgit(repo, "status", "--json").json["stale"]}
    assert reasons == {"collection:shift/aviris-ng-l2a": "output modified"}
    assert build(repo).json["files_written"] == 1  # repaired
    # a GeoParquet partition or pgstac file deleted by hand: the export is stale, and says which
    (repo / "build/shift/aviris-ng-l2a/parquet/2022-03.parquet").unlink()
    (repo / "build/shift/pgstac/aviris-ng-l2a/2022-05.ndjson").unlink()
    res = stacgit(repo, "status", "--json")
    assert res.exit_code == 1
    assert res.json["stale"] == [{"unit": "export:shift/aviris-ng-l2a", "reason": "output modified", "detail": "partition files missing or changed: 2022-03, 2022-05"}]
    assert build(repo).json["exports"]["partitions_written"] == 2
    assert stacgit(repo, "status").exit_code == 0
    (repo / "mappings/aviris-ng.yaml").write_text((repo / "mappings/aviris-ng.yaml").read_text().replace("aviris-ng}", "AVIRIS-NG}"))
    reasons = {s["unit"]: s["reason"] for s in stacgit(repo, "status", "--json").json["stale"]}
    assert reasons["build:shift/aviris-ng-l2a/catalogs/shift/sources/flightlines.csv"] == "mapping changed"
    assert reasons["export:shift/aviris-ng-l2a"] == reasons["collection:shift/aviris-ng-l2a"]  # its items follow


def test_removed_collection_and_catalog_are_cleaned_up(repo):
    build(repo)
    cfg = repo / "catalogs/3dep/catalog.yaml"
    text = cfg.read_text()
    cfg.write_text(text[: text.index("  - id: MN_RedRiver_2019")])
    res = build(repo)
    assert res.json["items"]["deleted"] == 12
    assert not (repo / "build/3dep/MN_RedRiver_2019").exists()
    shutil.rmtree(repo / "catalogs/3dep")
    build(repo)
    assert not (repo / "build/3dep").exists()
    assert sorted(p.name for p in (repo / "build").iterdir()) == ["shift"]


def test_ls_and_init(tmp_path, repo):
    build(repo)
    rows = stacgit(repo, "ls", "--json").json
    assert {(r["catalog"], r["collection"]): r["items"] for r in rows} == {
        ("shift", "aviris-ng-l2a"): 33, ("3dep", "CO_Eastern_B1_2018"): 16, ("3dep", "MN_RedRiver_2019"): 12,
    }
    new = tmp_path / "new"
    proc = stacgit_proc(tmp_path, "init", str(new))
    assert proc.returncode == 0, proc.stderr
    proc = stacgit_proc(new, "build", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["items"]["written"] == 2
    assert stacgit_proc(tmp_path, "init", str(new)).returncode == 2
