"""Incremental builds at the item level: many kinds of edit in a row, then the tree must equal
a clean build of the same sources (items that moved between sub-catalogs, shards that went
away, cache files compacted), and duplicate ids across source files are named by line."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from conftest import add_synthetic, stacgit, tree
from stacgit import state as st
from stacgit.state import outputs, queues, shards

SRC = "catalogs/synthetic/sources"


def build(repo: Path):
    res = stacgit(repo, "build", "--json", "-j", "1")
    assert res.exit_code == 0, res.stderr
    return res.json


def _files(repo: Path) -> list[Path]:
    return sorted((repo / SRC).rglob("*.ndjson"))


def _edit(repo: Path, rng: random.Random, round_no: int) -> None:
    """Modify, remove, add records and move some to another day, month or year."""
    files = _files(repo)
    for f in rng.sample(files, min(6, len(files))):
        lines = f.read_text().splitlines()
        recs = [json.loads(x) for x in lines]
        for i in rng.sample(range(len(recs)), min(3, len(recs))):
            recs[i]["cloud_cover"] = (recs[i]["cloud_cover"] + 7) % 101
        if len(recs) > 4:
            del recs[rng.randrange(len(recs))]
        moved = recs[rng.randrange(len(recs))]
        year = 2021 + (round_no % 3)
        moved["begin"] = f"{year}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}{moved['begin'][10:]}"
        moved["end"] = f"{year}-12-31T23:59:59Z"
        new = dict(recs[0], granule_ur=f"{recs[0]['granule_ur']}.r{round_no}")
        recs.append(new)
        f.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in recs))


def test_many_edit_rounds_equal_a_clean_build(tmp_path, monkeypatch):
    from stacgit.engine import shard

    monkeypatch.setattr(shard, "COMPACT_SLACK", 0)  # compact cache files as soon as they are half dead
    repo = tmp_path / "repo"
    (repo / "catalogs").mkdir(parents=True)
    shutil.copytree(Path(__file__).parents[2] / "mappings", repo / "mappings")
    add_synthetic(repo, 900)
    build(repo)
    rng = random.Random(5)
    for round_no in range(4):
        _edit(repo, rng, round_no)
        if round_no == 2:
            _files(repo)[-1].unlink()  # a whole source file goes away
        summary = build(repo)
        assert summary["items"]["written"] > 0 and summary["items"]["deleted"] > 0
        assert build(repo)["files_written"] == 0
    clean = tmp_path / "clean"
    shutil.copytree(repo, clean, ignore=shutil.ignore_patterns("build", ".stacgit"))
    build(clean)
    assert tree(repo / "build") == tree(clean / "build")
    # the cache holds one file per source file, no leftovers
    caches = list((repo / ".stacgit" / "cache" / "synthetic").iterdir())
    assert len(caches) == len(_files(repo))
    # appends leave dead bytes behind; compaction keeps them bounded
    live = shards.cache_live_bytes(st.connect(repo / ".stacgit"))
    assert all(c.stat().st_size <= 2 * live[c.name] + 8192 for c in caches)


def test_item_moving_to_another_sub_catalog_leaves_no_trace(tmp_path):
    repo = tmp_path / "repo"
    (repo / "catalogs").mkdir(parents=True)
    shutil.copytree(Path(__file__).parents[2] / "mappings", repo / "mappings")
    add_synthetic(repo, 1200)
    build(repo)
    f = _files(repo)[0]
    recs = [json.loads(x) for x in f.read_text().splitlines()]
    rec = recs[0]
    item_id = rec["granule_ur"]
    before = [p for p in (repo / "build").rglob(f"{item_id}.json")]
    assert len(before) == 1
    rec["begin"] = "2023-12-30" + rec["begin"][10:]
    rec["end"] = "2023-12-31T00:00:00Z"
    f.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in recs))
    summary = build(repo)
    assert summary["items"]["written"] == 1 and summary["items"]["deleted"] == 0
    after = [p for p in (repo / "build").rglob(f"{item_id}.json")]
    assert len(after) == 1 and after[0] != before[0]
    assert not before[0].parent.exists()
    item = json.loads(after[0].read_text())
    parent = (after[0].parent / next(l["href"] for l in item["links"] if l["rel"] == "parent")).resolve()
    hrefs = [(parent.parent / l["href"]).resolve() for l in json.loads(parent.read_text())["links"] if l["rel"] == "item"]
    assert after[0].resolve() in hrefs
    manifest = json.loads((repo / "build/synthetic/manifest.json").read_text())
    assert after[0].relative_to(repo / "build/synthetic").as_posix() in manifest["files"]
    assert before[0].relative_to(repo / "build/synthetic").as_posix() not in manifest["files"]


@pytest.mark.parametrize("built_first", [False, True])
def test_duplicate_id_across_source_files_names_both_lines(tmp_path, built_first):
    repo = tmp_path / "repo"
    (repo / "catalogs").mkdir(parents=True)
    shutil.copytree(Path(__file__).parents[2] / "mappings", repo / "mappings")
    add_synthetic(repo, 300)
    if built_first:
        build(repo)
    files = [f for f in _files(repo) if "hls-s30-00" in str(f)]
    a, b_ = files[0], files[1]
    dup = a.read_text().splitlines()[2]
    b_lines = b_.read_text().splitlines()
    b_.write_text("\n".join(b_lines + [dup]) + "\n")
    before = tree(repo / "build") if built_first else {}
    res = stacgit(repo, "build", "-j", "1")
    assert res.exit_code == 1
    item_id = json.loads(dup)["granule_ur"]
    rel_a, rel_b = a.relative_to(repo).as_posix(), b_.relative_to(repo).as_posix()
    expected = sorted([f"{rel_a}:3", f"{rel_b}:{len(b_lines) + 1}"])
    assert f"duplicate item id '{item_id}' in collection synthetic/hls-s30-00: {expected[0]} and {expected[1]}" in res.stderr
    assert "Traceback" not in res.stderr
    if built_first:
        assert tree(repo / "build") == before  # nothing already built is lost


def test_collection_tasks_read_the_item_queue_and_notice_what_it_missed(tmp_path):
    """Adding or removing a record queues its item (triggers on ``records``); the collection
    task compares only queued items with their outputs and empties the queue. When the counts
    show that the queue missed an item, every item is compared."""
    from conftest import copy_examples

    repo = copy_examples(tmp_path / "repo")
    build(repo)
    con = st.connect(repo / ".stacgit")
    assert queues.queued(con, "item_queue") == 0
    csv = repo / "catalogs/shift/sources/flightlines.csv"
    lines = csv.read_text().splitlines(keepends=True)
    changed, removed = lines[3].split(",")[0], lines[4].split(",")[0]
    lines[3] = lines[3].replace(",good", ",fair") if ",good" in lines[3] else lines[3].replace(",fair", ",good")
    del lines[4]
    csv.write_text("".join(lines))
    res = build(repo)
    assert (res["items"]["written"], res["items"]["deleted"]) == (1, 1)
    assert queues.queued(con, "item_queue") == 0
    assert outputs.item_output(con, "shift", removed) is None
    # an item's output row lost without a queue entry (the build thinks its file was never written)
    path = outputs.item_output(con, "shift", changed)
    outputs.forget_item_output(con, "shift", changed)
    before = (repo / "build/shift" / path).read_bytes()
    (repo / "build/shift" / path).unlink()
    csv.write_text(csv.read_text().replace(",good,", ",fair,", 1))  # another change, so the collection task runs
    res = build(repo)
    assert res["items"]["written"] == 2  # the edited one, and the lost one found through the counts
    assert (repo / "build/shift" / path).read_bytes() == before
    assert outputs.item_output(con, "shift", changed) == path
