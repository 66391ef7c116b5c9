"""Snapshots of a real STAC API (rustac serve) through a fault-injecting proxy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import stacgit, tree
from stac_server import FaultProxy, StacServer, make_items

pytestmark = pytest.mark.integration

SNAP = "catalogs/remote/snapshots/c1"


@pytest.fixture
def api(tmp_path):
    proxy = FaultProxy()
    server = StacServer(tmp_path / "server", proxy)
    server.serve(make_items(240))
    yield server
    server.stop()
    proxy.close()


def make_repo(root: Path, url: str, **source) -> Path:
    cat = root / "catalogs" / "remote"
    cat.mkdir(parents=True)
    src = {"type": "stac-api", "url": url, "collection": "c1", "datetime": "2020-01-01/2020-12-31", "page_size": 15,
           "window": "month", "timeout": 1.5, "retries": 4, "backoff": 0.05, "concurrency": 3, **source}
    (cat / "catalog.yaml").write_text(json.dumps({
        "id": "remote", "description": "Snapshots of a STAC API", "license": "CC0-1.0",
        "collections": [{"id": "c1", "description": "mirrored", "source": src}],
    }))
    return root


def snap(repo: Path, *args: str):
    return stacgit(repo, "snapshot", "--json", *args)


def snapshot_items(repo: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((repo / SNAP).glob("*.ndjson")) for line in p.read_text().splitlines()]


def test_snapshot_writes_sorted_partitions_and_builds(api, tmp_path):
    repo = make_repo(tmp_path / "repo", api.proxy.url)
    res = snap(repo)
    assert res.exit_code == 0, res.stdout + res.stderr
    summary = res.json["collections"]["remote/c1"]
    assert summary | {"requests": 0, "quarantined_examples": []} == summary | {
        "records": 240, "added": 240, "changed": 0, "removed": 0, "complete": True, "requests": 0, "quarantined_examples": []}
    assert summary["method"] == "GET" and summary["windows"] == 12
    items = snapshot_items(repo)
    assert sorted(i["id"] for i in items) == [f"item-{k:04d}" for k in range(240)]  # each exactly once
    parts = sorted(p.name for p in (repo / SNAP).glob("*.ndjson"))
    assert parts == [f"2020-{m:02d}.ndjson" for m in range(1, 13)]
    for p in (repo / SNAP).glob("*.ndjson"):
        ids = [json.loads(x)["id"] for x in p.read_text().splitlines()]
        assert ids == sorted(ids)
    meta = json.loads((repo / SNAP / "snapshot.json").read_text())
    assert meta["counts"] == {"items": 240, "partitions": 12, "quarantined": 0}
    build = stacgit(repo, "build", "--json", "-j", "1")
    assert build.exit_code == 0, build.stderr
    assert build.json["items"]["written"] == 240
    one = json.loads(next((repo / "build/remote/c1").rglob("item-0007.json")).read_text())
    assert one["collection"] == "c1" and one["stac_version"] == "1.1.0"
    assert [l["rel"] for l in one["links"]] == ["root", "parent", "collection", "license"]


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, env=env).stdout


def test_unchanged_upstream_gives_empty_diff_and_changes_give_exact_lines(api, tmp_path):
    repo = make_repo(tmp_path / "repo", api.proxy.url)
    assert snap(repo).exit_code == 0
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "snapshot")
    again = snap(repo)
    assert again.json["collections"]["remote/c1"] | {"requests": 0, "quarantined_examples": [], "windows": 0} == again.json["collections"]["remote/c1"] | {
        "records": 240, "added": 0, "changed": 0, "removed": 0, "requests": 0, "quarantined_examples": [], "windows": 0}
    assert _git(repo, "status", "--porcelain") == ""
    items = make_items(240)
    items[10]["properties"]["eo:cloud_cover"] = 77  # item-0010 changed
    del items[5]  # item-0005 removed upstream
    items += make_items(242)[240:]  # item-0240, item-0241 added
    api.serve(items)
    res = snap(repo)
    c = res.json["collections"]["remote/c1"]
    assert (c["added"], c["changed"], c["removed"], c["records"]) == (2, 1, 1, 241)
    diff = _git(repo, "diff", "-U0", "--", SNAP)
    changed = [l for l in diff.splitlines() if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    ids = sorted((l[0], json.loads(l[1:])["id"]) for l in changed if l[1:].startswith("{"))
    assert ids == [("+", "item-0010"), ("+", "item-0240"), ("+", "item-0241"), ("-", "item-0005"), ("-", "item-0010")]


def test_transient_faults_are_retried_and_every_item_arrives_once(api, tmp_path):
    repo = make_repo(tmp_path / "repo", api.proxy.url)
    api.proxy.plan = ["ok", "429", "503", "drop", "truncate", "slow", "ok", "503", "truncate", "429"]
    started = time.monotonic()
    res = snap(repo)
    assert res.exit_code == 0, res.stdout
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
    assert sorted(i["id"] for i in snapshot_items(repo)) == [f"item-{k:04d}" for k in range(240)]
    faults = [e["fault"] for e in api.proxy.log]
    for f in ("429", "503", "drop", "truncate", "slow"):
        assert f in faults


def test_post_search_with_next_link_bodies(api, tmp_path):
    repo = make_repo(tmp_path / "repo", api.proxy.url, method="POST", window="none", page_size=50)
    res = snap(repo)
    assert res.exit_code == 0, res.stdout
    assert res.json["collections"]["remote/c1"]["method"] == "POST"
    assert len(snapshot_items(repo)) == 240
    assert {e["method"] for e in api.proxy.log} == {"POST"} and len(api.proxy.log) >= 5


def test_a_failing_window_keeps_the_previous_snapshot(api, tmp_path):
    repo = make_repo(tmp_path / "repo", api.proxy.url)
    assert snap(repo).exit_code == 0
    before = tree(repo / "catalogs")
    api.proxy.rules = [(lambda path, body: "2020-03-01" in path, "503")]
    res = stacgit(repo, "snapshot", "--json")
    assert res.exit_code == 1
    c = res.json["collections"]["remote/c1"]
    assert c["complete"] is False and len(c["failed_windows"]) == 1
    w = c["failed_windows"][0]
    assert w["window"] == "2020-03-01T00:00:00Z/2020-03-31T23:59:59Z"
    assert "HTTP 503 after 5 attempts" in w["error"] and "/collections/c1/items" in w["error"]
    assert tree(repo / "catalogs") == before
    report = json.loads((repo / ".stacgit/snapshots/remote/c1/report.json").read_text())
    assert report["failed_windows"] == c["failed_windows"]
    # looping next links are detected, not followed forever
    api.proxy.rules = [(lambda path, body: "2020-03-01" in path, "loop")]
    res = stacgit(repo, "snapshot", "--json")
    assert res.exit_code == 1
    assert "looping next links" in res.json["collections"]["remote/c1"]["failed_windows"][0]["error"]
    assert tree(repo / "catalogs") == before
    # the windows that completed are checkpoints: the rerun fetches only the failed one
    api.proxy.rules = []
    api.proxy.log.clear()
    res = snap(repo)
    assert res.exit_code == 0 and res.json["collections"]["remote/c1"]["windows_resumed"] == 11
    windows = {e["path"].split("datetime=")[1][:10] for e in api.proxy.log if "datetime=" in e["path"] and "limit=15" in e["path"]}
    assert windows == {"2020-03-01"}
    assert tree(repo / "catalogs") == before


def test_killed_snapshot_resumes_from_checkpoints(api, tmp_path):
    repo = make_repo(tmp_path / "repo", api.proxy.url, concurrency=1)
    api.proxy.latency = 0.15
    proc = subprocess.Popen([sys.executable, "-m", "stacgit", "snapshot"], cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ck = repo / ".stacgit/snapshots/remote/c1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(ck.rglob("*.done"))) < 4:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.stem for p in ck.rglob("*.done"))
    assert 4 <= len(done) < 12
    assert not (repo / SNAP).exists()  # nothing written before the snapshot is complete
    api.proxy.latency = 0
    api.proxy.log.clear()
    res = snap(repo)
    assert res.exit_code == 0
    assert res.json["collections"]["remote/c1"]["windows_resumed"] == len(done)
    fetched = {e["path"].split("datetime=")[1][:10] for e in api.proxy.log if "datetime=" in e["path"] and "limit=15" in e["path"]}
    assert fetched and not fetched & {key[:10] for key in done}  # e.g. 2020-01-01T000000Z_...
    assert len(fetched) == 12 - len(done)
    assert sorted(i["id"] for i in snapshot_items(repo)) == [f"item-{k:04d}" for k in range(240)]


def test_secrets_are_sent_but_never_written_or_printed(api, tmp_path, monkeypatch):
    secret = "s3cr3t-token-value-42"
    monkeypatch.setenv("STACGIT_TEST_TOKEN", secret)
    repo = make_repo(tmp_path / "repo", api.proxy.url, headers={"Authorization": {"env": "STACGIT_TEST_TOKEN"}})
    res = snap(repo)
    assert res.exit_code == 0
    assert all(e["headers"].get("Authorization") == secret for e in api.proxy.log)
    api.proxy.rules = [(lambda path, body: True, "401")]
    bad = stacgit(repo, "snapshot")
    assert bad.exit_code == 1
    stacgit(repo, "build", "-j", "1")
    for text in (res.stdout, res.stderr, bad.stdout, bad.stderr):
        assert secret not in text
    for p in repo.rglob("*"):
        if p.is_file():
            assert secret.encode() not in p.read_bytes(), p
    monkeypatch.delenv("STACGIT_TEST_TOKEN")
    missing = stacgit(repo, "snapshot")
    assert missing.exit_code == 1 and "environment variable STACGIT_TEST_TOKEN" in missing.stderr


def test_invalid_items_are_quarantined_and_datetimes_normalised(api, tmp_path):
    items = make_items(24)
    items[0]["properties"]["datetime"] = "2020-01-01T10:00:00"  # no time zone -> UTC
    items[1]["properties"]["eo:cloud_cover"] = "12.5"  # numeric string of a declared field
    items[2]["id"] = "../escape"  # unsafe id: quarantined
    api.serve(items)
    repo = make_repo(tmp_path / "repo", api.proxy.url, numeric=["eo:cloud_cover"])
    res = snap(repo)
    assert res.exit_code == 0
    c = res.json["collections"]["remote/c1"]
    assert c["quarantined"] == 1 and c["records"] == 23
    assert c["quarantined_examples"] == [{"id": "../escape", "reason": "item id '../escape' contains a path separator"}]
    by_id = {i["id"]: i for i in snapshot_items(repo)}
    assert by_id["item-0000"]["properties"]["datetime"] == "2020-01-01T10:00:00Z"
    assert by_id["item-0001"]["properties"]["eo:cloud_cover"] == 12.5


def test_discover_lists_filters_and_adds_collections(api, tmp_path):
    repo = make_repo(tmp_path / "repo", api.proxy.url)
    res = stacgit(repo, "discover", api.proxy.url, "--json", "--ids", "c*", "--datetime", "2020-06-01/2020-07-01")
    assert res.exit_code == 0, res.stderr
    assert [r["id"] for r in res.json["collections"]] == ["c1"]
    none = stacgit(repo, "discover", api.proxy.url, "--json", "--ids", "landsat-*")
    assert none.json["collections"] == []
    before = (repo / "catalogs/remote/catalog.yaml").read_text()
    # the example catalog already has c1: a second catalog gets it through --add-to
    (repo / "catalogs/mirror").mkdir()
    (repo / "catalogs/mirror/catalog.yaml").write_text("# a mirror\nid: mirror\ndescription: mirror\ncollections:\n  - id: old\n    description: kept\n    source: {type: stac-api, url: 'http://127.0.0.1:9/', collection: old}\n")
    add = stacgit(repo, "discover", api.proxy.url, "--add-to", "mirror", "--json")
    assert add.exit_code == 0, add.stderr
    assert add.json["added"] == ["c1"]
    text = (repo / "catalogs/mirror/catalog.yaml").read_text()
    assert text.startswith("# a mirror\n") and "collection: c1" in text
    assert (repo / "catalogs/remote/catalog.yaml").read_text() == before
    res = stacgit(repo, "snapshot", "mirror", "c1", "--json")
    assert res.exit_code == 0 and res.json["collections"]["mirror/c1"]["records"] == 240


def test_http_json_source_pages_records_and_etags(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from conftest import REPO
    from stac_server import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    records = json.loads((REPO / "catalogs/3dep/sources/CO_Eastern_B1_2018.json").read_text())
    for r in records:
        r["lpc_link"] = f"{base}/laz"
    etags = {r["tile"]: '"v1"' for r in records}
    heads = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            page = int(self.path.split("page=")[1]) if "page=" in self.path else 1
            chunk = records[(page - 1) * 10 : page * 10]
            body = json.dumps({"items": chunk, "next": f"/wesm?page={page + 1}" if page * 10 < len(records) else None}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self):
            tile = self.path.rsplit("_", 1)[1].removesuffix(".laz")
            heads.append(tile)
            self.send_response(200)
            self.send_header("ETag", etags[tile])
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        repo = tmp_path / "repo"
        (repo / "catalogs/wesm").mkdir(parents=True)
        shutil_copy = __import__("shutil").copytree
        shutil_copy(REPO / "mappings", repo / "mappings")
        src = {"type": "http-json", "url": f"{base}/wesm?page=1", "records": "items", "next": "next", "key": "tile",
               "head": "join('', [lpc_link, '/USGS_LPC_', project, '_', tile, '.laz'])", "backoff": 0.01}
        (repo / "catalogs/wesm/catalog.yaml").write_text(json.dumps({
            "id": "wesm", "description": "WESM index", "license": "CC0-1.0",
            "collections": [{"id": "co", "description": "CO Eastern", "source": src, "mapping": "mappings/3dep-wesm.yaml"}]}))
        res = stacgit(repo, "snapshot", "--json")
        assert res.exit_code == 0, res.stdout + res.stderr
        c = res.json["collections"]["wesm/co"]
        assert (c["records"], c["added"], c["complete"]) == (16, 16, True) and len(heads) == 16
        build = stacgit(repo, "build", "--json", "-j", "1")
        assert build.exit_code == 0 and build.json["items"]["written"] == 16
        etags["w1000n4400"] = '"v2"'  # one LAZ file changed upstream
        res = stacgit(repo, "snapshot", "--json")
        c = res.json["collections"]["wesm/co"]
        assert (c["added"], c["changed"], c["removed"]) == (0, 1, 0)
        build = stacgit(repo, "build", "--json", "-j", "1")
        assert build.json["records"]["mapped"] == 1  # only the record whose file changed
        bad = (repo / "catalogs/wesm/catalog.yaml")
        bad.write_text(bad.read_text().replace('"records": "items"', '"records": "items[?"'))
        res = stacgit(repo, "snapshot")
        assert res.exit_code == 2 and "source.records: invalid JMESPath" in res.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_an_item_moving_to_another_month_counts_as_changed(api, tmp_path):
    repo = make_repo(tmp_path / "repo", api.proxy.url)
    assert snap(repo).exit_code == 0
    items = make_items(240)
    items[20]["properties"]["datetime"] = "2020-12-30T00:00:00Z"  # from September to December
    api.serve(items)
    c = snap(repo).json["collections"]["remote/c1"]
    assert (c["added"], c["changed"], c["removed"], c["records"]) == (0, 1, 0, 240)
    dec = (repo / SNAP / "2020-12.ndjson").read_text()
    assert '"id":"item-0020"' in dec and '"id":"item-0020"' not in (repo / SNAP / "2020-09.ndjson").read_text()


def test_partitions_sorted_on_disk_in_small_runs_give_the_same_files_and_counts(api, tmp_path, monkeypatch):
    import stacgit.fileio

    whole = make_repo(tmp_path / "whole", api.proxy.url)
    runs = make_repo(tmp_path / "runs", api.proxy.url)
    assert snap(whole).exit_code == 0
    monkeypatch.setattr(stacgit.fileio, "RUN_BYTES", 600)  # 20 items a month: several runs each, merged
    first = snap(runs)
    assert first.exit_code == 0 and first.json["collections"]["remote/c1"]["added"] == 240
    assert tree(runs / SNAP) == tree(whole / SNAP)
    items = make_items(243)
    items[10]["properties"]["eo:cloud_cover"] = 77  # changed
    items[20]["properties"]["datetime"] = "2020-12-30T00:00:00Z"  # moved to another month: changed
    del items[5]  # removed
    api.serve(items)  # item-0240..0242 added
    c = snap(runs).json["collections"]["remote/c1"]
    assert (c["added"], c["changed"], c["removed"], c["records"]) == (3, 2, 1, 242)
    assert sorted(i["id"] for i in snapshot_items(runs)) == sorted(i["id"] for i in items)
    monkeypatch.undo()
    assert snap(whole).exit_code == 0
    assert tree(runs / SNAP) == tree(whole / SNAP)


def test_a_hand_edited_snapshot_file_is_named_and_nothing_is_changed(api, tmp_path):
    repo = make_repo(tmp_path / "repo", api.proxy.url)
    assert snap(repo).exit_code == 0
    items = make_items(240)
    items[0]["properties"]["eo:cloud_cover"] = 55  # January changes upstream
    items[5]["properties"]["eo:cloud_cover"] = 56  # June too
    api.serve(items)
    june = repo / SNAP / "2020-06.ndjson"
    lines = june.read_bytes().splitlines(keepends=True)
    june.write_bytes(b"".join(reversed(lines)))  # out of order
    before = tree(repo / SNAP)
    res = snap(repo)
    assert res.exit_code == 1
    assert f"{june}:2: lines are not sorted by id" in res.stderr and "Traceback" not in res.stderr
    assert tree(repo / SNAP) == before  # January was not rewritten either
    june.write_bytes(b"".join(lines[:3]) + b"not json\n" + b"".join(lines[3:]))
    res = snap(repo)
    assert res.exit_code == 1 and f"{june}:4: not a record of this snapshot" in res.stderr
    june.write_bytes(b"".join(lines))
    res = snap(repo)  # fixed: the rerun resumes from the checkpointed windows
    c = res.json["collections"]["remote/c1"]
    assert res.exit_code == 0 and c["windows_resumed"] == 12 and (c["changed"], c["records"]) == (2, 240)
