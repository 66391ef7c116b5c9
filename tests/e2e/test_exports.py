"""GeoParquet partitions, pgstac NDJSON and the change feed, through the CLI."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import rustac
import stac_geoparquet.arrow as sga

from conftest import add_synthetic, stacgit, tree
from stacgit.exports import pgstac_line

CSV = "catalogs/shift/sources/flightlines.csv"
SHIFT = "shift/aviris-ng-l2a"


def build(repo: Path, *args: str):
    res = stacgit(repo, "build", "--json", "-j", "1", *args)
    assert res.exit_code == 0, res.stderr
    return res


def parquet_files(build_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(build_dir).as_posix(): p.read_bytes() for p in sorted(build_dir.rglob("*.parquet"))}


def json_items(build_dir: Path) -> dict[tuple[str, str], dict]:
    items = {}
    for p in build_dir.rglob("*.json"):
        doc = orjson.loads(p.read_bytes())
        if doc.get("type") == "Feature":
            items[(doc["collection"], doc["id"])] = doc
    return items


# Known, documented differences of JSON -> GeoParquet -> JSON (README "GeoParquet"):
# absent keys come back as null; datetimes are microsecond timestamps and stac-geoparquet
# writes them back without fractional seconds; columns typed `json` come back as JSON text;
# bbox and numbers come back as floats.
def normalise(doc):
    if isinstance(doc, dict):
        return {k: normalise(v) for k, v in doc.items() if v is not None}
    if isinstance(doc, list):
        return [normalise(v) for v in doc]
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        return float(doc)
    return doc


def _dt_to_z(value):
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, str) and value.endswith("Z") and "." in value:
        value = value.split(".")[0] + "Z"
    return value


def decode_json_text(parquet_side, json_side):
    """Fields typed ``json`` (no fixed shape, e.g. dgeo:cid_profile) come back as JSON text."""
    if isinstance(parquet_side, dict) and isinstance(json_side, dict):
        return {k: decode_json_text(v, json_side.get(k)) for k, v in parquet_side.items()}
    if isinstance(parquet_side, str) and isinstance(json_side, (dict, list)):
        return json.loads(parquet_side)
    return parquet_side


def comparable(item: dict) -> dict:
    item = json.loads(json.dumps(item, default=str))
    for k in ("datetime", "start_datetime", "end_datetime", "created", "updated"):
        if item["properties"].get(k) is not None:
            item["properties"][k] = _dt_to_z(item["properties"][k].replace(" ", "T").replace("+00:00", "Z"))
    return normalise(item)


def test_every_example_item_round_trips_through_geoparquet(repo):
    add_synthetic(repo, 400)
    build(repo)
    out = repo / "build"
    items = json_items(out)
    files = sorted(out.rglob("*.parquet"))
    assert files, "no GeoParquet written"
    seen: dict[tuple[str, str], dict] = {}
    for f in files:
        table = pq.read_table(f)
        meta = json.loads(table.schema.metadata[b"stac-geoparquet"])
        collection_id = f.parent.parent.name
        assert meta["version"] == "1.0.0" and list(meta["collections"]) == [collection_id]  # pinned metadata layout
        assert table.num_rows > 0
        rows = list(sga.stac_table_to_items(table))
        keys = [(r["properties"].get("start_datetime") or r["properties"]["datetime"], r["id"]) for r in rows]
        assert keys == sorted(keys), f"{f}: rows not sorted by datetime, id"
        for r in rows:
            seen[(r["collection"], r["id"])] = r
        # rustac reads the same file (the Rust implementation of stac-geoparquet)
        via_rustac = rustac.read_sync(str(f))
        assert [i["id"] for i in via_rustac["features"]] == [r["id"] for r in rows]
    assert set(seen) == set(items)
    for key, item in items.items():
        back = decode_json_text(json.loads(json.dumps(seen[key], default=str)), item)
        assert comparable(back) == comparable(item), key


def test_duckdb_reads_the_partitions(repo):
    import duckdb

    add_synthetic(repo, 400)
    build(repo)
    pattern = str(repo / "build" / "synthetic" / "*" / "parquet" / "*.parquet")
    n, ids = duckdb.sql(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{pattern}')").fetchall()[0]
    manifest_items = sum(1 for p in (repo / "build" / "synthetic").rglob("*.json") if orjson.loads(p.read_bytes()).get("type") == "Feature")
    assert n == ids == manifest_items


def test_tiny_batches_give_the_same_rows(repo, monkeypatch):
    """Partitions written a few items at a time (many Arrow batches, changed items spilled to
    SQLite while the build state is being read) hold the same rows as one batch does."""
    import shutil

    from stacgit.exports import changes, partition

    add_synthetic(repo, 400)
    build(repo)
    out = repo / "build" / "synthetic"
    def rows():
        return {p.relative_to(out).as_posix(): pq.read_table(p).to_pylist() for p in sorted(out.rglob("*.parquet"))}
    expected, pgstac = rows(), sorted(out.glob("pgstac/*/*.ndjson"))
    expected_pgstac = [p.read_bytes() for p in pgstac]
    assert len(pgstac) == len(expected)  # one pgstac piece per parquet partition
    monkeypatch.setattr(partition, "BATCH", 7)
    monkeypatch.setattr(changes, "SPILL", 5)
    for d in out.glob("*/parquet"):
        shutil.rmtree(d)
    for d in out.glob("pgstac/*/"):
        shutil.rmtree(d)
    res = build(repo)
    assert res.json["exports"]["partitions_written"] == len(expected)
    got = rows()
    assert got == expected and sum(len(v) for v in got.values()) == 400
    assert [p.read_bytes() for p in pgstac] == expected_pgstac
    assert max(pq.ParquetFile(out / p).metadata.num_row_groups for p in got) > 1  # the small batches were used


def test_one_changed_row_rewrites_one_partition(repo):
    first = build(repo)
    assert first.json["exports"]["partitions_written"] > 3
    before = parquet_files(repo / "build")
    lines = (repo / CSV).read_text().splitlines(keepends=True)
    target = lines[5].split(",")[0]
    lines[5] = lines[5].replace(",good", ",fair") if ",good" in lines[5] else lines[5].replace(",fair", ",good")
    (repo / CSV).write_text("".join(lines))
    res = build(repo)
    assert res.json["exports"] == {"partitions_written": 1, "partitions_deleted": 0}
    after = parquet_files(repo / "build")
    changed = sorted(p for p in after if before.get(p) != after[p])
    assert changed == [f"{SHIFT}/parquet/{target[3:7]}-{target[7:9]}.parquet"]
    assert set(after) == set(before)
    again = build(repo)
    assert again.json["exports"] == {"partitions_written": 0, "partitions_deleted": 0}


def test_unchanged_rows_are_reused_and_give_the_same_bytes_as_converting_all(repo, monkeypatch):
    """A rewritten partition takes its unchanged rows from the previous parquet file and
    pgstac piece, in batches that mix reused and converted rows, and the files are byte for
    byte what converting every item again gives."""
    import shutil

    from stacgit.exports import geoparquet, partition, pgstac

    monkeypatch.setattr(partition, "BATCH", 2)
    monkeypatch.setattr(pgstac, "CHECK_EVERY", 1)
    build(repo)
    lines = (repo / CSV).read_text().splitlines(keepends=True)
    may = [i for i, l in enumerate(lines) if l.startswith("ang202205")]
    assert len(may) == 9
    for i in (may[2], may[5]):
        lines[i] = lines[i].replace(",good", ",fair") if ",good" in lines[i] else lines[i].replace(",fair", ",good")
    (repo / CSV).write_text("".join(lines))
    converted = []
    row = geoparquet.Prepared.row
    monkeypatch.setattr(geoparquet.Prepared, "row", lambda self, item: converted.append(item["id"]) or row(self, item))
    res = build(repo)
    assert res.json["exports"] == {"partitions_written": 1, "partitions_deleted": 0}
    assert sorted(converted) == sorted(lines[i].split(",")[0] for i in (may[2], may[5]))  # the other 7 were reused
    part = repo / "build" / f"{SHIFT}/parquet/2022-05.parquet"
    piece = repo / "build/shift/pgstac/aviris-ng-l2a/2022-05.ndjson"
    reused = (part.read_bytes(), piece.read_bytes())
    assert pq.ParquetFile(part).metadata.num_row_groups == 5  # batches of 2
    piece.unlink()  # the previous files are not usable: everything is converted again
    converted.clear()
    assert build(repo).json["exports"]["partitions_written"] == 1
    assert len(converted) == 9
    assert (part.read_bytes(), piece.read_bytes()) == reused
    shutil.copy(part, part.with_suffix(".bak"))
    lines[may[0]] = lines[may[0]].replace(",good", ",fair") if ",good" in lines[may[0]] else lines[may[0]].replace(",fair", ",good")
    (repo / CSV).write_text("".join(lines))
    part.write_bytes(part.read_bytes()[:-10])  # a damaged previous file is not reused either
    converted.clear()
    build(repo)
    assert len(converted) == 9
    # a piece edited by hand (two lines swapped) is noticed while its lines are reused
    lines[may[1]] = lines[may[1]].replace(",good", ",fair") if ",good" in lines[may[1]] else lines[may[1]].replace(",fair", ",good")
    (repo / CSV).write_text("".join(lines))
    old = piece.read_bytes().splitlines(keepends=True)
    piece.write_bytes(b"".join([old[1], old[0], *old[2:]]))
    converted.clear()
    build(repo)
    # the changed item is converted before the piece is rewritten, then all nine
    assert converted[0] == lines[may[1]].split(",")[0] and sorted(converted[1:]) == sorted(l.split(",")[0] for l in map(lines.__getitem__, may))
    result = (part.read_bytes(), piece.read_bytes())
    edited = next((repo / "build/shift").rglob(lines[may[1]].split(",")[0] + ".json"))
    assert pgstac_line(orjson.loads(edited.read_bytes())) in result[1]  # the piece holds the item as built now
    piece.unlink()
    converted.clear()
    build(repo)
    assert len(converted) == 9 and (part.read_bytes(), piece.read_bytes()) == result


_KILL_IN_PLACE = """
import os, signal, sys
from stacgit.exports import pgstac
finish = pgstac.Piece.finish
def killed(self):
    self._flush()  # every new line is in the file; the old piece's tail is not cut off yet
    if self.in_place:
        os.kill(os.getpid(), signal.SIGKILL)
    return finish(self)
pgstac.Piece.finish = killed
from stacgit.cli import main
sys.argv = ["stacgit", "build", "-j", "1"]
main()
"""


def test_a_build_killed_while_a_piece_is_rewritten_in_place_is_repaired(repo, tmp_path):
    """A partition's pgstac piece is rewritten in its own file; kill -9 half way leaves it
    neither old nor new. The next status reports the export, and the next build converts the
    partition again: the result equals a clean build."""
    import shutil
    import subprocess
    import sys

    build(repo)
    piece = repo / "build/shift/pgstac/aviris-ng-l2a/2022-05.ndjson"
    lines = (repo / CSV).read_text().splitlines(keepends=True)
    may = [i for i, l in enumerate(lines) if l.startswith("ang202205")]
    lines[may[5]] = lines[may[5]].replace(",good", ",fair") if ",good" in lines[may[5]] else lines[may[5]].replace(",fair", ",good")
    del lines[may[2]]  # the piece gets shorter
    (repo / CSV).write_text("".join(lines))
    before = piece.read_bytes()
    killed = subprocess.run([sys.executable, "-c", _KILL_IN_PLACE], cwd=repo, capture_output=True)
    assert killed.returncode == -9, killed.stderr
    assert piece.read_bytes() != before and list((repo / ".stacgit/rewriting").rglob("2022-05"))
    status = stacgit(repo, "status")
    assert status.exit_code == 1 and "export:shift/aviris-ng-l2a" in status.stdout
    build(repo)
    assert not list((repo / ".stacgit/rewriting").rglob("*-*"))
    clean = tmp_path / "clean"
    shutil.copytree(repo, clean, ignore=shutil.ignore_patterns("build", ".stacgit"))
    build(clean)
    ours, theirs = tree(repo / "build"), tree(clean / "build")
    assert ours["shift/pgstac/aviris-ng-l2a/2022-05.ndjson"] == theirs["shift/pgstac/aviris-ng-l2a/2022-05.ndjson"]
    assert {p: d for p, d in ours.items() if "changes" not in p} == {p: d for p, d in theirs.items() if "changes" not in p}
    assert stacgit(repo, "status").exit_code == 0


def test_exports_read_the_queue_and_notice_what_it_missed(repo):
    """Writing or deleting an item's output queues it (a trigger on ``outputs``); the export
    compares only the queued items and empties the queue when it commits. When the counts show
    the queue missed an item, it compares every item."""
    from stacgit import exports
    from stacgit import state as st
    from stacgit.project import Project
    from stacgit.state import outputs, queues

    build(repo)
    con = st.connect(repo / ".stacgit")
    queued = lambda: queues.queued(con, "export_queue")  # noqa: E731
    assert queued() == 0
    lines = (repo / CSV).read_text().splitlines(keepends=True)
    target = lines[5].split(",")[0]
    lines[5] = lines[5].replace(",good", ",fair") if ",good" in lines[5] else lines[5].replace(",fair", ",good")
    (repo / CSV).write_text("".join(lines))
    assert build(repo).json["exports"] == {"partitions_written": 1, "partitions_deleted": 0}
    assert queued() == 0
    queues.enqueue_export(con, "shift", "aviris-ng-l2a", target)  # queued, but not changed
    project = Project.load(repo)
    coll = project.catalogs["shift"].collections[0]
    assert exports.export_collection(project, coll)["items_changed"] == 0  # queued, but the same

    # the export state lost an item and the queue does not say so: the counts differ
    piece = repo / "build/shift/pgstac/aviris-ng-l2a" / f"{target[3:7]}-{target[7:9]}.ndjson"
    whole = piece.read_bytes()
    outputs.forget_exported(con, "shift", target)
    piece.write_bytes(b"".join(l for l in whole.splitlines(keepends=True) if target.encode() not in l))
    report = exports.export_collection(project, coll)
    assert report["items_changed"] == 1 and report["partitions_written"] == 1
    assert piece.read_bytes() == whole
    assert outputs.exported_count(con, target) == 1
    assert build(repo).json["exports"] == {"partitions_written": 0, "partitions_deleted": 0}  # up to date: no export ran


def test_schema_drift_names_item_and_field_and_keeps_outputs(repo):
    build(repo)
    before = tree(repo / "build")
    # the mapping reads project with a bare path (a string); one source record has a number
    src = repo / "catalogs" / "3dep" / "sources" / "CO_Eastern_B1_2018.json"
    records = json.loads(src.read_text())
    records[3]["project"] = 42
    records[0]["project"] += "_reflown"  # an earlier line of the same partition grows: the lines after it move
    src.write_text(json.dumps(records, indent=1))
    drifting = f"USGS_LPC_CO_Eastern_B1_2018_{records[3]['tile']}"
    res = stacgit(repo, "build")
    assert res.exit_code == 1
    assert f"3dep/CO_Eastern_B1_2018: GeoParquet schema drift: item '{drifting}'" in res.stderr
    assert "properties.project: is int 42, the schema says string" in res.stderr
    assert "Traceback" not in res.stderr
    after = tree(repo / "build")
    for path, data in before.items():
        if path.endswith(".parquet") or "/pgstac/" in path:  # pieces are rewritten in place: not begun
            assert after[path] == data, f"{path} changed by a failed export"
    # typing the field in the mapping fixes the build
    mapping = repo / "mappings" / "3dep-wesm.yaml"
    mapping.write_text(mapping.read_text().replace("project: {path: project}", "project: {path: project, type: str}"))
    build(repo)


def test_drift_of_a_type_names_the_field(repo):
    mapping = repo / "mappings" / "aviris-ng.yaml"
    # gsd is a float in the mapping; geoparquet.columns claims bool: every item drifts
    cat = repo / "catalogs" / "shift" / "catalog.yaml"
    cat.write_text(cat.read_text().replace("columns: {quality_note: string}", "columns: {quality_note: string, gsd: bool}"))
    res = stacgit(repo, "build")
    assert res.exit_code == 1
    assert "properties.gsd" in res.stderr and "the schema says bool" in res.stderr
    assert mapping.exists()


def test_pgstac_ndjson_is_loadable(repo):
    add_synthetic(repo, 400)
    build(repo)
    out = repo / "build" / "synthetic"
    pg = out / "pgstac"
    collections = [orjson.loads(l) for l in (pg / "collections.ndjson").read_bytes().splitlines()]
    assert [c["id"] for c in collections] == ["hls-s30-00", "hls-l30-00"]
    assert all(not any(l["href"].startswith(".") for l in c["links"]) for c in collections)
    manifest = orjson.loads((out / "manifest.json").read_bytes())["files"]
    total = 0
    for c in collections:
        # one piece per GeoParquet partition, holding the same items in the same order
        pieces = sorted((pg / c["id"]).iterdir())
        parts = sorted((out / c["id"] / "parquet").glob("*.parquet"))
        assert [p.stem for p in pieces] == [p.stem for p in parts] and len(pieces) > 1
        ids = []
        for piece, part in zip(pieces, parts):
            lines = piece.read_bytes().splitlines()
            for line in lines:
                item = orjson.loads(line)
                assert item["collection"] == c["id"]
                start = item["properties"].get("start_datetime") or item["properties"]["datetime"]
                assert start.startswith(piece.stem)  # the partition's year
                assert not any(l["rel"] in ("root", "parent", "collection", "self") for l in item["links"])
                ids.append(item["id"])
            assert [orjson.loads(l)["id"] for l in lines] == pq.read_table(part, columns=["id"]).column("id").to_pylist()
            rel = piece.relative_to(out).as_posix()
            assert manifest[rel] == {"sha256": hashlib.sha256(piece.read_bytes()).hexdigest(), "size": piece.stat().st_size}
        assert len(set(ids)) == len(ids)
        total += len(ids)
    assert total == 400
    assert "pgstac/collections.ndjson" in manifest
    assert not (out / "changes").exists() and not (out / "pgstac/changes.ndjson").exists()  # history is publish's
    assert not (repo / ".stacgit" / "exports" / "synthetic").exists()  # published pieces are not kept twice


def test_pgstac_pieces_follow_the_partitions_and_the_setting(repo):
    """A change rewrites only its partition's piece; ``pgstac: false`` takes the pieces out of
    the build and the manifest, and turning it on again brings them back."""
    build(repo)
    pg = repo / "build" / "shift" / "pgstac" / "aviris-ng-l2a"
    before = {p.name: p.read_bytes() for p in pg.iterdir()}
    assert "2022-05.ndjson" in before and len(before) > 3
    lines = (repo / CSV).read_text().splitlines(keepends=True)
    i = next(i for i, l in enumerate(lines) if l.startswith("ang202205"))
    lines[i] = lines[i].replace(",good", ",fair") if ",good" in lines[i] else lines[i].replace(",fair", ",good")
    (repo / CSV).write_text("".join(lines))
    build(repo)
    after = {p.name: p.read_bytes() for p in pg.iterdir()}
    assert set(after) == set(before)
    assert [n for n in sorted(after) if after[n] != before[n]] == ["2022-05.ndjson"]
    manifest = orjson.loads((repo / "build" / "shift" / "manifest.json").read_bytes())["files"]
    assert manifest["pgstac/aviris-ng-l2a/2022-05.ndjson"]["sha256"] == hashlib.sha256(after["2022-05.ndjson"]).hexdigest()

    cfg = repo / "catalogs" / "shift" / "catalog.yaml"
    text = cfg.read_text()
    cfg.write_text("pgstac: false\n" + text)
    build(repo)
    manifest = orjson.loads((repo / "build" / "shift" / "manifest.json").read_bytes())["files"]
    assert not pg.exists() and not any(p.startswith("pgstac/") for p in manifest)
    # the change feed still gets its lines (from the pieces kept under .stacgit)
    assert sorted(p.name for p in (repo / ".stacgit/exports/shift/aviris-ng-l2a").iterdir()) == sorted(before)
    cfg.write_text(text)
    build(repo)
    assert {p.name: p.read_bytes() for p in pg.iterdir()} == after
    assert not (repo / ".stacgit/exports/shift").exists() or not any((repo / ".stacgit/exports/shift").iterdir())
    # a published piece emptied by hand is stale, and written again
    (pg / "2022-02.ndjson").write_bytes(b"")
    assert build(repo).json["exports"] == {"partitions_written": 1, "partitions_deleted": 0}
    assert {p.name: p.read_bytes() for p in pg.iterdir()} == after


def test_the_pgstac_files_load_with_pypgstac(repo, pgstac_dsn):
    """The build's pgstac NDJSON is what `pypgstac load` takes (into a real pgstac on 127.0.0.1)."""
    import subprocess
    import sys

    import psycopg

    add_synthetic(repo, 400)
    build(repo)
    pg = repo / "build" / "synthetic" / "pgstac"
    pypgstac = [str(Path(sys.executable).parent / "pypgstac"), "load"]
    subprocess.run([*pypgstac, "collections", str(pg / "collections.ndjson"), "--dsn", pgstac_dsn, "--method", "upsert"], check=True, capture_output=True)
    for coll in ("hls-s30-00", "hls-l30-00"):
        pieces = sorted((pg / coll).glob("*.ndjson"))
        for piece in pieces:  # one chunk per partition
            subprocess.run([*pypgstac, "items", str(piece), "--dsn", pgstac_dsn, "--method", "upsert"], check=True, capture_output=True)
        with psycopg.connect(pgstac_dsn) as con:
            n = con.execute("SELECT count(*) FROM pgstac.items WHERE collection=%s", (coll,)).fetchone()[0]
        assert n == sum(len(p.read_bytes().splitlines()) for p in pieces) > 100


def test_every_geoparquet_asset_opens_in_stock_tools(repo):
    """Each GeoParquet asset of a collection is a file (a folder is a 404 over HTTP), listed for
    each partition, that rustac and DuckDB read; together they hold every item. pgstac's
    collections keep those assets; alternates carry their names."""
    import duckdb

    add_synthetic(repo, 300)
    build(repo)
    for coll_doc in (repo / "build").glob("*/*/collection.json"):
        assets = {k: a for k, a in json.loads(coll_doc.read_text())["assets"].items() if a["type"] == "application/vnd.apache.parquet"}
        files = sorted(f.resolve() for f in (coll_doc.parent / "parquet").glob("*.parquet"))
        assert sorted((coll_doc.parent / a["href"]).resolve() for a in assets.values()) == files and files
        ids = []
        for asset in assets.values():
            path = (coll_doc.parent / asset["href"]).resolve()
            ids += [i["id"] for i in rustac.read_sync(str(path))["features"]]
            assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchall()[0][0] > 0
        items = [p for p in coll_doc.parent.rglob("*.json") if json.loads(p.read_text()).get("type") == "Feature"]
        assert sorted(ids) == sorted(p.stem for p in items)
    pg = {json.loads(l)["id"]: json.loads(l) for l in (repo / "build/shift/pgstac/collections.ndjson").read_text().splitlines()}
    assert set(pg["aviris-ng-l2a"]["assets"]) == {k for k in json.loads((repo / "build/shift/aviris-ng-l2a/collection.json").read_text())["assets"]}
    item = json.loads(next((repo / "build/shift").rglob("ang*.json")).read_text())
    reflectance = item["assets"]["reflectance"]
    assert reflectance["alternate:name"] == "S3" and reflectance["alternate"]["https"]["alternate:name"] == "HTTPS"
