"""Patch specs end to end: RFC 6902 semantics on real example items, CQL2 and id selection,
deletes, incremental re-application, reproducible `updated`, bad patches, authoring CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, add_synthetic, copy_examples, stacgit, stacgit_proc, tree

SHIFT = "build/shift/aviris-ng-l2a/{0}/{0}.json"
TILE = "USGS_LPC_CO_Eastern_B1_2018_w1030n4400"
SHIFT_ID = "ang20220224t183418"  # quality good, keywords [coastal, ocean]


def build(repo: Path, *args: str):
    return stacgit(repo, "build", "--json", "-j", "1", *args)


def item(repo: Path, item_id: str = SHIFT_ID) -> dict:
    return json.loads((repo / SHIFT.format(item_id)).read_text())


def write_patch(repo: Path, name: str, text: str) -> Path:
    (repo / "patches").mkdir(exist_ok=True)
    p = repo / "patches" / name
    p.write_text(text)
    return p


def with_examples(repo: Path) -> Path:
    shutil.copytree(REPO / "patches", repo / "patches")
    return repo


def test_example_patches_update_by_cql2_and_delete_by_id(repo):
    res = build(with_examples(repo))
    assert res.exit_code == 0, res.stderr
    s = res.json
    assert s["patches"]["patches/0001-shift-fair-quality-note.yaml"] | {"committed": None} == {
        "documents": 1, "matched": 11, "patched": 11, "deleted": 0, "failed": 0, "committed": None
    }
    assert s["patches"]["patches/0002-3dep-withdraw-tile.yaml"]["deleted"] == 1
    fair = [json.loads(p.read_text()) for p in (repo / "build/shift").rglob("ang*.json")]
    fair = [i for i in fair if i["properties"]["quality"] == "fair"]
    assert len(fair) == 11
    for i in fair:
        assert i["properties"]["keywords"][-1] == "sun-glint" and "quality_note" in i["properties"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", i["properties"]["updated"])
    assert "quality_note" not in item(repo)["properties"]  # a good one is untouched
    # the deleted tile is gone from every output
    assert not list((repo / "build").rglob(f"{TILE}*"))
    everything = b"".join(tree(repo / "build").values())
    assert TILE.encode() not in everything
    assert s["items"]["written"] == 60  # 61 mapped, 1 deleted


def test_rfc6902_ops_in_sequence_on_a_real_item(repo):
    build(repo)
    before = item(repo)
    write_patch(repo, "ops.yaml", f"""
description: every op, in order
target: {{catalog: shift, collection: aviris-ng-l2a}}
select: {{ids: [{SHIFT_ID}]}}
ops:
  - {{op: test, path: /properties/quality, value: good}}
  - {{op: add, path: /properties/keywords/0, value: first}}          # [first, coastal, ocean]
  - {{op: remove, path: /properties/keywords/1}}                     # [first, ocean]: indexes shift
  - {{op: replace, path: /properties/keywords/1, value: sea}}        # [first, sea]
  - {{op: add, path: /properties/keywords/-, value: last}}           # [first, sea, last]
  - {{op: copy, from: /properties/site_code, path: /properties/site_copy}}
  - {{op: move, from: /properties/altitude_m, path: /properties/flight_altitude_m}}
  - {{op: replace, path: /assets/reflectance/title, value: Reflectance}}
  - {{op: test, path: /properties/keywords, value: [first, sea, last]}}
""")
    res = build(repo)
    assert res.exit_code == 0, res.stderr
    assert res.json["items"]["written"] == 1 and res.json["records"]["mapped"] == 0
    after = item(repo)
    p = after["properties"]
    assert p["keywords"] == ["first", "sea", "last"]
    assert p["site_copy"] == p["site_code"] == before["properties"]["site_code"]
    assert "altitude_m" not in p and p["flight_altitude_m"] == before["properties"]["altitude_m"]
    assert after["assets"]["reflectance"]["title"] == "Reflectance"
    assert after["links"] == before["links"] and after["geometry"] == before["geometry"]


def test_collection_document_patch(repo):
    build(repo)
    write_patch(repo, "coll.yaml", """
description: Add a keyword and a DOI to the collection
target: {catalog: shift, collection: aviris-ng-l2a, document: collection}
ops:
  - {op: add, path: /keywords/-, value: imaging spectroscopy}
  - {op: add, path: /sci:doi, value: 10.3334/ORNLDAAC/2183}
""")
    res = build(repo)
    assert res.exit_code == 0, res.stderr
    coll = json.loads((repo / "build/shift/aviris-ng-l2a/collection.json").read_text())
    assert coll["keywords"][-1] == "imaging spectroscopy" and coll["sci:doi"] == "10.3334/ORNLDAAC/2183"
    assert res.json["items"]["written"] == 0


def test_adding_then_removing_patches_restores_identical_output(repo):
    build(repo)
    clean = tree(repo / "build")
    with_examples(repo)
    write_patch(repo, "0003-move.yaml", f"""
description: The collect of this tile started a year earlier (moves it to another sub-catalog)
target: {{catalog: 3dep, collection: '*'}}
select: {{ids: [USGS_LPC_CO_Eastern_B1_2018_w1000n4410]}}
ops:
  - {{op: replace, path: /properties/start_datetime, value: '2017-03-01T00:00:00Z'}}
""")
    res = build(repo)
    assert res.exit_code == 0, res.stderr
    patched = tree(repo / "build")
    moved = [p for p in patched if p.endswith("w1000n4410.json")]
    assert moved and moved[0].startswith("3dep/CO_Eastern_B1_2018/2017/")
    coll = json.loads(patched["3dep/CO_Eastern_B1_2018/collection.json"])
    assert coll["extent"]["temporal"]["interval"][0][0] == "2017-03-01T00:00:00Z"
    assert build(repo).json["files_written"] == 0  # stable
    shutil.rmtree(repo / "patches")
    res = build(repo)
    assert res.exit_code == 0 and res.json["records"]["mapped"] == 0
    assert tree(repo / "build") == clean


def test_id_and_cql2_patches_touch_only_what_they_select(tmp_path):
    repo = copy_examples(tmp_path / "repo", catalogs=())
    add_synthetic(repo, 1200)
    build(repo)
    before = tree(repo / "build")
    ids = sorted(p.stem for p in (repo / "build/synthetic/hls-s30-00").rglob("HLS*.json"))[:3]
    write_patch(repo, "0001-ids.yaml", f"""
description: three granules were reprocessed
target: {{catalog: synthetic, collection: hls-s30-00}}
select: {{ids: {json.dumps(ids)}}}
ops: [{{op: add, path: /properties/processing_version, value: '2.1'}}]
""")
    res = build(repo)
    assert res.json["items"]["written"] == 3 and res.json["records"]["mapped"] == 0
    after = tree(repo / "build")
    exports = ("/parquet/", "/pgstac/")  # the GeoParquet partitions and pgstac NDJSON holding them
    changed = sorted(p for p in after if before.get(p) != after[p] and not any(e in p for e in exports))
    assert len(changed) == 4 and changed[-1] == "synthetic/manifest.json"
    assert all(any(i in p for i in ids) for p in changed[:-1])
    write_patch(repo, "0002-cql2.yaml", """
description: cloudy granules get a flag
target: {catalog: synthetic, collection: '*'}
select: {cql2: "eo:cloud_cover >= 95"}
ops: [{op: add, path: /properties/cloudy, value: true}]
""")
    res = build(repo)
    cloudy = [json.loads(b) for p, b in tree(repo / "build").items() if "/HLS" in p and b'"cloudy": true' in b]
    assert cloudy and all(i["properties"]["eo:cloud_cover"] >= 95 for i in cloudy)
    assert res.json["items"]["written"] == len(cloudy) and res.json["records"]["mapped"] == 0
    assert res.json["patches"]["patches/0002-cql2.yaml"]["patched"] == len(cloudy)
    # a source change: only the changed record is re-mapped and re-evaluated against CQL2
    src = sorted((repo / "catalogs/synthetic/sources/hls-l30-00").glob("*.ndjson"))[0]
    lines = src.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["cloud_cover"] = 99
    lines[0] = json.dumps(rec, sort_keys=True)
    src.write_text("\n".join(lines) + "\n")
    res = build(repo)
    assert res.json["records"]["mapped"] == 1 and res.json["items"]["written"] == 1
    granule = next(b for p, b in tree(repo / "build").items() if p.endswith(rec["granule_ur"] + ".json"))
    assert b'"cloudy": true' in granule


def _git(repo: Path, *args: str, env: dict | None = None) -> str:
    base = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, env={**os.environ, **base, **(env or {})})
    return out.stdout


def test_updated_is_the_commit_time_in_every_clone(tmp_path):
    origin = with_examples(copy_examples(tmp_path / "origin"))
    _git(origin, "init", "-q", "-b", "main")
    _git(origin, "add", ".")
    _git(origin, "commit", "-q", "-m", "data", env={"GIT_COMMITTER_DATE": "2024-05-06T07:08:09Z", "GIT_AUTHOR_DATE": "2024-05-06T07:08:09Z"})
    _git(origin, "add", "-A")
    _git(origin, "commit", "-q", "--allow-empty", "-m", "later", env={"GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z"})
    a, b = tmp_path / "a", tmp_path / "b"
    _git(tmp_path, "clone", "-q", str(origin), str(a))
    _git(tmp_path, "clone", "-q", str(origin), str(b))
    assert stacgit_proc(a, "build", "-j", "1").returncode == 0
    time.sleep(1.2)
    res = stacgit_proc(b, "build", "-j", "1")
    assert res.returncode == 0 and "not committed" not in res.stderr + res.stdout
    assert tree(a / "build") == tree(b / "build")
    fair = [json.loads(x) for p, x in tree(a / "build").items() if p.endswith(".json") and b"quality_note" in x]
    assert fair and {i["properties"]["updated"] for i in fair} == {"2024-05-06T07:08:09Z"}
    # an uncommitted patch: the build's time, and the summary says so
    write_patch(b, "0003-local.yaml", f"""
description: local experiment
target: {{catalog: shift, collection: aviris-ng-l2a}}
select: {{ids: [{SHIFT_ID}]}}
ops: [{{op: add, path: /properties/note, value: draft}}]
""")
    res = stacgit(b, "build", "--json", "-j", "1")
    assert any("0003-local.yaml is not committed" in w for w in res.json["warnings"])
    updated = item(b)["properties"]["updated"]
    assert updated > "2025-01-01T00:00:00Z"


BAD = {
    "malformed_yaml": ("description: [oops\n", 2, r"patches/bad\.yaml:\d+:\d+: invalid YAML"),
    "unknown_op": (
        "description: x\ntarget: {catalog: shift, collection: aviris-ng-l2a}\nselect: {ids: [%s]}\nops:\n  - {op: rename, path: /properties/a, value: 1}\n" % SHIFT_ID,
        2,
        r"patches/bad\.yaml:5: ops\[0\]\.op: must be one of add, remove, replace, move, copy, test, got 'rename'",
    ),
    "bad_pointer": (
        "description: x\ntarget: {catalog: shift, collection: aviris-ng-l2a}\nselect: {ids: [%s]}\nops:\n  - {op: remove, path: properties/quality}\n" % SHIFT_ID,
        2,
        r"patches/bad\.yaml:5: ops\[0\]\.path: invalid JSON Pointer 'properties/quality'",
    ),
    "bad_cql2": (
        "description: x\ntarget: {catalog: shift, collection: aviris-ng-l2a}\nselect:\n  cql2: \"quality ==== 'fair'\"\nops:\n  - {op: remove, path: /properties/quality}\n",
        2,
        r"patches/bad\.yaml:4: select\.cql2: invalid CQL2",
    ),
    "changes_id": (
        "description: x\ntarget: {catalog: shift, collection: aviris-ng-l2a}\nselect: {ids: [%s]}\nops:\n  - {op: replace, path: /id, value: other}\n" % SHIFT_ID,
        2,
        r"patches/bad\.yaml:5: ops\[0\]\.path: a patch may not change /id",
    ),
    "unknown_collection": (
        "description: x\ntarget: {catalog: shift, collection: aviris-ng-l2b}\nselect: {ids: [a]}\ndelete: true\n",
        2,
        r"patches/bad\.yaml:1 \(document 1\): target\.collection: no collection 'aviris-ng-l2b' in catalog 'shift' \(did you mean 'aviris-ng-l2a'\?\)",
    ),
    "id_matches_nothing": (
        "description: x\ntarget: {catalog: shift, collection: aviris-ng-l2a}\nselect: {ids: [%s, ang20990101t000000]}\ndelete: true\n" % SHIFT_ID,
        1,
        r"patches/bad\.yaml:1 \(document 1\): select\.ids: no item 'ang20990101t000000' in shift/aviris-ng-l2a",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_patch_fails_cleanly_and_keeps_the_build(repo, case):
    text, code, pattern = BAD[case]
    assert stacgit_proc(repo, "build", "-j", "1").returncode == 0
    before = tree(repo / "build")
    write_patch(repo, "bad.yaml", text)
    res = stacgit_proc(repo, "build", "-j", "1")
    assert res.returncode == code, res.stderr
    assert re.search(pattern, res.stderr), res.stderr
    assert "Traceback" not in res.stderr
    after = tree(repo / "build")
    if case == "id_matches_nothing":  # the rest of the patch still applies: only that item is gone
        assert set(before) - set(after) == {"shift/aviris-ng-l2a/{0}/{0}.json".format(SHIFT_ID)}
    else:
        assert after == before


CONFLICT = f"""
description: first rates the line fair
target: {{catalog: shift, collection: aviris-ng-l2a}}
select: {{ids: [{SHIFT_ID}]}}
ops: [{{op: replace, path: /properties/quality, value: fair}}]
---
description: second expects it to be good
target: {{catalog: shift, collection: aviris-ng-l2a}}
select: {{ids: [{SHIFT_ID}]}}
ops:
  - {{op: add, path: /properties/reviewed, value: true}}
  - {{op: test, path: /properties/quality, value: good}}
  - {{op: add, path: /properties/approved, value: true}}
"""


def test_conflicting_patches_leave_the_item_at_its_last_good_state(repo):
    assert build(repo).exit_code == 0
    before = tree(repo / "build")
    write_patch(repo, "conflict.yaml", CONFLICT)
    strict = stacgit_proc(repo, "build", "--strict", "-j", "1")
    assert strict.returncode == 1
    assert f"patches/conflict.yaml (document 2, op 1): item '{SHIFT_ID}': test failed" in strict.stderr
    assert "Traceback" not in strict.stderr
    assert tree(repo / "build") == before
    res = build(repo)
    assert res.exit_code == 1
    assert tree(repo / "build")[f"shift/aviris-ng-l2a/{SHIFT_ID}/{SHIFT_ID}.json"] == before[f"shift/aviris-ng-l2a/{SHIFT_ID}/{SHIFT_ID}.json"]
    failed = [json.loads(x) for x in (repo / "build/shift/failed.ndjson").read_text().splitlines()]
    assert failed == [
        {"collection": "aviris-ng-l2a", "field": "patch", "item_id": SHIFT_ID, "location": "patches/conflict.yaml (document 2, op 1)",
         "reason": failed[0]["reason"], "source": "patches/conflict.yaml"}
    ]
    assert "test failed" in failed[0]["reason"]
    assert res.json["patches"]["patches/conflict.yaml"]["failed"] == 1


def test_patch_authoring_cli(repo):
    assert build(repo).exit_code == 0
    new = stacgit(repo, "patch", "new", "--collection", "aviris-ng-l2a", "--ids", f"{SHIFT_ID},ang20220224t195556",
                  "--set", "properties.quality=poor", "--set", "/properties/reviewed=true", "--remove", "properties.site", "-m", "Downgrade two lines")
    assert new.exit_code == 0, new.stderr
    path = repo / "patches" / "0001-downgrade-two-lines.yaml"
    assert new.stdout.strip() == f"wrote {path}"
    dele = stacgit(repo, "patch", "delete", "--collection", "3dep/CO_Eastern_B1_2018", "--ids", TILE)
    assert dele.exit_code == 0 and (repo / "patches").joinpath(dele.stdout.split("/")[-1].strip()).exists()
    check = stacgit(repo, "patch", "check", "--json")
    assert check.exit_code == 0, check.stdout
    report = check.json["patches"]["patches/0001-downgrade-two-lines.yaml#1"]
    assert report["matched"] == 2
    ops = {(o["op"], o["path"]) for o in report["changes"][0]["patch"]}
    assert ops == {("replace", "/properties/quality"), ("add", "/properties/reviewed"), ("remove", "/properties/site")}
    assert tree(repo / "build") == tree(repo / "build")  # check wrote nothing (sanity of the helper)
    assert item(repo)["properties"]["quality"] == "good"  # outputs untouched until a build
    ls = stacgit(repo, "patch", "ls", "--json")
    assert [r["patch"] for r in ls.json] == ["patches/0001-downgrade-two-lines.yaml#1", "patches/0002-delete-1-item-s-of-3dep-co-eastern-b1-2018.yaml#1"]
    res = build(repo)
    assert res.exit_code == 0
    assert item(repo)["properties"]["quality"] == "poor" and "site" not in item(repo)["properties"]
    bad = stacgit(repo, "patch", "new", "--collection", "nope", "--ids", "x", "--set", "a=1")
    assert bad.exit_code == 2 and "no collection 'nope'" in bad.stderr
    failing = write_patch(repo, "0009-typo.yaml", "description: x\ntarget: {catalog: shift, collection: aviris-ng-l2a}\nselect: {ids: [nope]}\ndelete: true\n")
    res = stacgit(repo, "patch", "check", str(failing))
    assert res.exit_code == 1 and "NO ITEM for id(s): nope" in res.stdout
