"""`stacgit publish --to postgresql://...` against a real PostgreSQL + PostGIS + pgstac (a cluster
started on 127.0.0.1 by the session fixture): after each publish, pgstac's search() by collection
returns exactly the built items; other writers are refused, then repaired; kill -9 half way never
leaves a collection half published; the password is never shown."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psycopg

from conftest import add_synthetic, copy_examples, stacgit, stacgit_proc
from pg_server import PASSWORD

CSV = "catalogs/shift/sources/flightlines.csv"


def without_nulls(value):
    """pgstac drops fields whose value is null (``"datetime": null`` beside a range): its search()
    gives each built item back without them."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def built_items(repo: Path) -> dict[str, dict[str, dict]]:
    """Collection -> id -> item, from the build's pgstac files (as pgstac gives them back)."""
    out: dict[str, dict[str, dict]] = {}
    for cat in sorted((repo / "build").iterdir()):
        for piece in sorted((cat / "pgstac").glob("*/*.ndjson")):
            for line in piece.read_bytes().splitlines():
                item = without_nulls(orjson.loads(line))
                out.setdefault(item["collection"], {})[item["id"]] = item
    return out


def database_items(dsn: str, collections) -> dict[str, dict[str, dict]]:
    """Collection -> id -> item, as pgstac's search() returns them."""
    out: dict[str, dict[str, dict]] = {}
    with psycopg.connect(dsn) as con:
        con.execute("SET search_path TO pgstac, public")
        for coll in collections:
            res = con.execute("SELECT pgstac.search(%s::jsonb)", (json.dumps({"collections": [coll], "limit": 100000}),)).fetchone()[0]
            feats = res["features"]
            out[coll] = {f["id"]: f for f in feats}
            assert len(out[coll]) == len(feats), f"{coll}: an item appears twice"
            count = con.execute("SELECT count(*) FROM pgstac.items WHERE collection=%s", (coll,)).fetchone()[0]
            assert count == len(feats), f"{coll}: {count} rows for {len(feats)} items"
    return out


def assert_in_sync(repo: Path, dsn: str) -> dict:
    built = built_items(repo)
    assert database_items(dsn, built) == built
    return built


def build(repo: Path) -> dict:
    res = stacgit(repo, "build", "--json")
    assert res.exit_code == 0, res.stderr
    return res.json


def publish(repo: Path, dsn: str, *args: str) -> subprocess.CompletedProcess:
    return stacgit_proc(repo, "publish", "--to", dsn, "--json", *args)


def published(repo: Path, dsn: str, *args: str) -> dict:
    proc = publish(repo, dsn, *args)
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def totals(report: dict) -> dict:
    out = {"inserted": 0, "updated": 0, "deleted": 0}
    for c in report["catalogs"]:
        for k in out:
            out[k] += c["items"][k]
    return out


def test_publish_keeps_pgstac_exactly_in_sync_through_edits(tmp_path, pgstac_dsn):
    repo = copy_examples(tmp_path / "repo")
    add_synthetic(repo, 300)
    build(repo)
    dry = published(repo, pgstac_dsn, "--dry-run")
    assert totals(dry)["inserted"] > 300 and database_items(pgstac_dsn, ["aviris-ng-l2a"]) == {"aviris-ng-l2a": {}}
    first = published(repo, pgstac_dsn)
    assert totals(first) == totals(dry)
    built = assert_in_sync(repo, pgstac_dsn)
    assert totals(published(repo, pgstac_dsn)) == {"inserted": 0, "updated": 0, "deleted": 0}

    # an edit, a removed record, a withdrawal by patch, and a datetime moved to another month
    lines = (repo / CSV).read_text().splitlines(keepends=True)
    edited, removed = lines[3].split(",")[0], lines[4].split(",")[0]
    lines[3] = lines[3].replace(",good,", ",fair,") if ",good," in lines[3] else lines[3].replace(",fair,", ",good,")
    del lines[4]
    (repo / CSV).write_text("".join(lines))
    withdrawn = lines[6].split(",")[0]
    (repo / "patches").mkdir()
    (repo / "patches" / "0001-withdraw.yaml").write_text(
        f"description: withdraw one flight line\ntarget: {{catalog: shift, collection: aviris-ng-l2a}}\nselect:\n  ids: [{withdrawn}]\ndelete: true\n"
    )
    source = sorted((repo / "catalogs" / "synthetic" / "sources").rglob("*.ndjson"))[0]
    recs = [json.loads(x) for x in source.read_text().splitlines()]
    moved = recs[0]["granule_ur"]
    old_month = recs[0]["begin"][:7]
    year = int(old_month[:4])
    recs[0]["begin"] = f"{year + 1}{recs[0]['begin'][4:]}"  # a year later: another partition
    recs[0]["end"] = f"{year + 1}{recs[0]['end'][4:]}"
    source.write_text("".join(json.dumps(r) + "\n" for r in recs))
    build(repo)
    after = published(repo, pgstac_dsn)
    got = totals(after)
    assert got["deleted"] == 2 and got["updated"] >= 2 and got["inserted"] == 0, got
    now = assert_in_sync(repo, pgstac_dsn)
    assert removed not in now["aviris-ng-l2a"] and withdrawn not in now["aviris-ng-l2a"]
    assert now["aviris-ng-l2a"][edited] != built["aviris-ng-l2a"][edited]
    moved_coll = next(c for c, items in now.items() if moved in items)
    assert now[moved_coll][moved]["properties"]["start_datetime"][:4] == str(year + 1)
    with psycopg.connect(pgstac_dsn) as con:  # one row for the moved item, in its new partition
        rows = con.execute("SELECT tableoid::regclass::text FROM pgstac.items WHERE id=%s", (moved,)).fetchall()
    assert len(rows) == 1 and str(year + 1) in rows[0][0]


def test_another_writer_is_refused_then_repaired(repo, pgstac_dsn):
    build(repo)
    published(repo, pgstac_dsn)
    with psycopg.connect(pgstac_dsn) as con:
        con.execute("SET search_path TO pgstac, public")
        victim = con.execute("SELECT id, collection FROM pgstac.items ORDER BY id LIMIT 1").fetchone()
        con.execute("SELECT pgstac.delete_item(%s, %s)", victim)
        item = con.execute("SELECT pgstac.content_hydrate(i) FROM pgstac.items i ORDER BY id DESC LIMIT 1").fetchone()[0]
        item["properties"]["edited_by_hand"] = True
        con.execute("SELECT pgstac.upsert_item(%s::jsonb)", (json.dumps(item),))
    refused = publish(repo, pgstac_dsn)
    assert refused.returncode == 1 and "another writer" in refused.stderr and "Traceback" not in refused.stderr
    assert PASSWORD not in refused.stderr
    repaired = published(repo, pgstac_dsn, "--verify")
    assert totals(repaired) == {"inserted": 1, "updated": 1, "deleted": 0}
    assert_in_sync(repo, pgstac_dsn)
    assert totals(published(repo, pgstac_dsn)) == {"inserted": 0, "updated": 0, "deleted": 0}
    with psycopg.connect(pgstac_dsn) as con:
        con.execute("SET search_path TO pgstac, public")
        con.execute("SELECT pgstac.delete_item(%s, %s)", victim)
    assert publish(repo, pgstac_dsn).returncode == 1
    assert totals(published(repo, pgstac_dsn, "--force"))["inserted"] == 1
    assert_in_sync(repo, pgstac_dsn)


def test_the_password_is_never_shown(repo, pgstac_dsn, tmp_path):
    build(repo)
    wrong = pgstac_dsn.replace(PASSWORD, "Wr0ng-" + PASSWORD[::-1])
    for dsn in (wrong, pgstac_dsn):
        proc = stacgit_proc(repo, "publish", "--to", dsn)
        secret = dsn.split(":")[2].split("@")[0]
        assert secret not in proc.stdout + proc.stderr
    assert proc.returncode == 0 and "postgres@127.0.0.1" in proc.stdout
    bad = stacgit_proc(repo, "publish", "--to", wrong)
    assert bad.returncode == 2 and "cannot connect" in bad.stderr and "Traceback" not in bad.stderr
    for f in repo.rglob("*"):
        if f.is_file():
            assert PASSWORD.encode() not in f.read_bytes(), f


def test_kill_9_never_leaves_a_collection_half_published(tmp_path, pgstac_dsn):
    """Two builds (A, and B with changes in every collection) published alternately; each publish
    is killed at a random moment, the database checked (every collection is A's or B's, whole),
    then published again, which converges."""
    a, b = copy_examples(tmp_path / "a", ("shift",)), copy_examples(tmp_path / "b", ("shift",))
    for repo in (a, b):
        add_synthetic(repo, 3000)
    for source in sorted((b / "catalogs" / "synthetic" / "sources").rglob("*.ndjson"))[::2]:
        recs = [json.loads(x) for x in source.read_text().splitlines()]
        recs = [dict(r, cloud_cover=(r["cloud_cover"] + 1) % 101) for r in recs[1:]]  # one removed, the rest changed
        source.write_text("".join(json.dumps(r) + "\n" for r in recs))
    versions = {"a": build(a) and built_items(a), "b": build(b) and built_items(b)}
    started = time.monotonic()
    published(a, pgstac_dsn)
    full = time.monotonic() - started
    rng = random.Random(7)
    killed = 0
    for trial in range(10):
        repo, name = (b, "b") if trial % 2 == 0 else (a, "a")
        proc = subprocess.Popen([sys.executable, "-m", "stacgit", "publish", "--to", pgstac_dsn], cwd=repo,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.2, max(0.3, full)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        db = database_items(pgstac_dsn, versions["a"])
        for coll, items in db.items():
            assert items in (versions["a"][coll], versions["b"][coll]), f"trial {trial}: {coll} is neither build"
        published(repo, pgstac_dsn)
        assert database_items(pgstac_dsn, versions[name]) == versions[name]
    assert killed >= 5, f"only {killed} of 10 publishes were killed before they finished"


def test_serve_gives_clients_the_built_catalog(repo):
    """`stacgit serve`: a STAC API on 127.0.0.1 that pystac-client searches, holding every built item."""
    import socket

    from pystac_client import Client

    build(repo)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "stacgit", "serve", "--port", str(port)], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = Client.open(f"http://127.0.0.1:{port}/")
                break
            except Exception:  # noqa: BLE001 - not listening yet
                assert proc.poll() is None and time.monotonic() < deadline, "stacgit serve did not start"
                time.sleep(0.2)
        built = built_items(repo)
        assert sorted(c.id for c in client.get_collections()) == sorted(built)
        for coll, items in built.items():
            got = {i["id"] for i in client.search(collections=[coll], limit=100).items_as_dicts()}
            assert got == set(items)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_record_of_an_earlier_stacgit_is_checked_against_the_database(repo, pgstac_dsn):
    """A database published by an earlier stacgit holds digests of another kind (and no record
    format): the next publish compares with what the database holds, finds nothing to change,
    and writes the record again; the one after plans from it."""
    build(repo)
    published(repo, pgstac_dsn)
    with psycopg.connect(pgstac_dsn) as con:
        con.execute("UPDATE stacgit.items SET digest = 'a digest of another kind'")
        con.execute("UPDATE stacgit.publishes SET format = NULL")
    assert totals(published(repo, pgstac_dsn)) == {"inserted": 0, "updated": 0, "deleted": 0}
    with psycopg.connect(pgstac_dsn) as con:
        assert con.execute("SELECT count(*) FROM stacgit.items WHERE digest = 'a digest of another kind'").fetchone()[0] == 0
    assert totals(published(repo, pgstac_dsn)) == {"inserted": 0, "updated": 0, "deleted": 0}
    assert_in_sync(repo, pgstac_dsn)
