"""The change feed, computed at publish time from the last published manifest and the build:
the build holds no history, two clones publishing the same commit publish the same feed, and
a feed applied to the previous publish gives exactly the new catalog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import yaml

from stacgit.feed import apply_feed, item_key
from test_publish import built, git  # noqa: F401 - built is a fixture

CSV = "catalogs/shift/sources/flightlines.csv"


def commit_build_publish(repo: Path, mirror: Path, message: str) -> dict:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    from conftest import stacgit

    assert stacgit(repo, "build").exit_code == 0
    res = stacgit(repo, "publish", "--to", f"file://{mirror}", "--json", "--prune", "--allow-deletes")
    assert res.exit_code == 0, res.stderr
    return res.json


def feeds(mirror: Path, catalog: str) -> list[dict]:
    return json.loads((mirror / catalog / "changes/index.json").read_text())["feeds"]


def records(mirror: Path, catalog: str, entry: dict, key: str = "href") -> list[dict]:
    return [orjson.loads(l) for l in (mirror / catalog / "changes" / entry[key][2:]).read_bytes().splitlines()]


def built_items(repo: Path, catalog: str) -> dict[tuple[str, str], str]:
    files = json.loads((repo / "build" / catalog / "manifest.json").read_text())["files"]
    return {item_key(rel): f"sha256:{e['sha256']}" for rel, e in files.items() if item_key(rel)}


def test_feed_is_computed_at_publish_and_applies_exactly(built: Path, tmp_path: Path):
    mirror = tmp_path / "public"
    assert not (built / "build/shift/changes").exists() and not (built / "build/shift/pgstac/changes.ndjson").exists()
    commit_build_publish(built, mirror, "first publish")
    first = feeds(mirror, "shift")
    assert len(first) == 1 and first[0]["snapshot"] is True and first[0]["added"] == len(built_items(built, "shift")) == 33
    assert "pgstac" not in first[0]  # a first publish loads the pgstac/ files whole
    consumer = apply_feed({}, (mirror / "shift/changes" / first[0]["href"][2:]).read_bytes())
    assert consumer == built_items(built, "shift")

    # move one flight line's datetime (its id encodes the time), change another, delete a third
    lines = (built / CSV).read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    moved_old = rows[0].split(",")[0]
    moved_new = moved_old[:-2] + ("00" if moved_old[-2:] != "00" else "01")
    rows[0] = rows[0].replace(moved_old, moved_new, 1)
    deleted = rows[1].split(",")[0]
    edited = rows[3].split(",")[0]
    rows[3] = rows[3].replace(",good", ",fair") if ",good" in rows[3] else rows[3].replace(",fair", ",good")
    del rows[1]
    (built / CSV).write_text(header + "".join(rows))
    commit_build_publish(built, mirror, "moved, edited, deleted")
    index = feeds(mirror, "shift")
    assert len(index) == 2 and index[1] == first[0]  # newest first; earlier records stay
    assert {k: index[0][k] for k in ("added", "updated", "deleted")} == {"added": 1, "updated": 1, "deleted": 2}
    feed = records(mirror, "shift", index[0])
    assert [(r["op"], r["id"]) for r in feed] == sorted([("add", moved_new), ("delete", moved_old), ("delete", deleted), ("update", edited)], key=lambda r: r[1])
    for r in feed:
        if r["op"] != "delete":  # the href leads to the item as published
            assert orjson.loads((mirror / "shift/changes" / r["href"]).read_bytes())["id"] == r["id"]
    consumer = apply_feed(consumer, (mirror / "shift/changes" / index[0]["href"][2:]).read_bytes())
    assert consumer == built_items(built, "shift")
    # the pgstac form: deletes (and updates) first, then inserts of the items in pgstac form
    pg = records(mirror, "shift", index[0], "pgstac")
    ops = [(c["op"], c.get("id") or c["item"]["id"]) for c in pg]
    assert ops == [*sorted([("delete", moved_old), ("delete", deleted), ("delete", edited)], key=lambda r: r[1]), *sorted([("insert", moved_new), ("insert", edited)], key=lambda r: r[1])]
    item = next(c["item"] for c in pg if c.get("item", {}).get("id") == edited)
    assert not any(l["rel"] in ("root", "parent", "collection") for l in item["links"])

    # a publish that changes no item adds no record
    commit_build_publish(built, mirror, "nothing")
    assert feeds(mirror, "shift") == index

    # a collection removed from catalog.yaml: its items are deletions
    path = built / "catalogs/3dep/catalog.yaml"
    before = built_items(built, "3dep")
    doc = yaml.safe_load(path.read_text())
    doc["collections"] = [c for c in doc["collections"] if c["id"] != "MN_RedRiver_2019"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    commit_build_publish(built, mirror, "drop a collection")
    gone = sorted(i for c, i in before if c == "MN_RedRiver_2019")
    latest = feeds(mirror, "3dep")[0]
    assert [(r["collection"], r["id"], r["op"]) for r in records(mirror, "3dep", latest)] == [("MN_RedRiver_2019", i, "delete") for i in gone]
    assert [(c["op"], c["id"]) for c in records(mirror, "3dep", latest, "pgstac")] == [("delete", i) for i in gone]


def test_two_clones_publish_the_same_feed(built: Path, tmp_path: Path):
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(built), str(other))
    shutil.copytree(built / "schemas", other / "schemas", dirs_exist_ok=True)
    mirrors = [tmp_path / "a", tmp_path / "b"]
    from conftest import stacgit

    for repo, mirror in zip((built, other), mirrors):
        assert stacgit(repo, "build").exit_code == 0
        assert stacgit(repo, "publish", "--to", f"file://{mirror}").exit_code == 0
    a, b = ({p.relative_to(m).as_posix(): p.read_bytes() for p in (m / "shift/changes").iterdir()} for m in mirrors)
    assert a == b and len(a) == 2
