"""stacgit publish against a real S3 API (moto in server mode) and a local mirror."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import stacgit, tree
from s3_server import CREDENTIALS, MotoServer, ThrottlingProxy

CSV = "catalogs/shift/sources/flightlines.csv"
PREFIX = "stac"


@pytest.fixture(scope="module")
def moto():
    server = MotoServer()
    yield server
    server.close()


@pytest.fixture
def s3_env(monkeypatch):
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


_BUCKETS = iter(range(10_000))


@pytest.fixture
def bucket(moto, s3_env) -> str:
    name = f"bucket-{os.getpid()}-{next(_BUCKETS)}"
    moto.client().create_bucket(Bucket=name)
    return name


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, env=env).stdout.strip()


@pytest.fixture
def built(repo: Path) -> Path:
    """The example repository, committed to git and built."""
    (repo / ".gitignore").write_text("/build/\n/.stacgit/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "examples")
    assert stacgit(repo, "build").exit_code == 0
    return repo


def commit_and_build(repo: Path, message: str) -> None:
    git(repo, "commit", "-q", "-am", message)
    res = stacgit(repo, "build")
    assert res.exit_code == 0, res.stderr


def publish(repo: Path, moto: MotoServer, bucket: str, *args: str, endpoint: str | None = None):
    return stacgit(repo, "publish", "--to", f"s3://{bucket}/{PREFIX}", "--endpoint-url", endpoint or moto.url, "--json", *args)


def remote_tree(moto: MotoServer, bucket: str, catalog: str, feed: bool = False) -> dict[str, bytes]:
    """Every published object of a catalog except the publish manifest (and the change feed,
    which publish writes beside the build's files, unless ``feed``)."""
    client, prefix = moto.client(), f"{PREFIX}/{catalog}/"
    return {
        k[len(prefix):]: client.get_object(Bucket=bucket, Key=k)["Body"].read()
        for k in moto.objects(bucket, prefix)
        if not k[len(prefix):].startswith(".stacgit/") and (feed or not k[len(prefix):].startswith("changes/"))
    }


def build_files(repo: Path, catalog: str) -> dict[str, bytes]:
    """What a publish must put live besides the change feed: the manifest's files."""
    out = repo / "build" / catalog
    files = json.loads((out / "manifest.json").read_text())["files"]
    return {rel: (out / rel).read_bytes() for rel in files}


def feed_files(moto: MotoServer, bucket: str, catalog: str) -> dict[str, bytes]:
    """The change feed as published: records and index."""
    return {rel: data for rel, data in remote_tree(moto, bucket, catalog, feed=True).items() if rel.startswith("changes/")}


def without_feed(files: dict[str, bytes]) -> dict[str, bytes]:
    return {rel: data for rel, data in files.items() if not rel.startswith("changes/")}


def dangling(moto: MotoServer, bucket: str, catalog: str) -> list[str]:
    """Links reachable from the live root whose target object is missing."""
    client, prefix = moto.client(), f"{PREFIX}/{catalog}/"
    keys = set(moto.objects(bucket, prefix))
    if prefix + "catalog.json" not in keys:
        return []
    missing, seen, todo = [], set(), [prefix + "catalog.json"]
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        doc = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        for link in doc.get("links", []):
            href = link["href"]
            if "://" in href or href.endswith("/"):
                continue
            target = posixpath.normpath(posixpath.join(posixpath.dirname(key), href))
            if target not in keys:
                missing.append(f"{key} -> {href}")
            elif link["rel"] in ("child", "item") and target.endswith(".json"):
                todo.append(target)
    return missing


def edit_rows(repo: Path, n: int, drop: int = 0) -> None:
    """Change the quality of the first ``n`` flight lines; drop the last ``drop`` rows."""
    lines = (repo / CSV).read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    rows = [r.replace(",good,", ",fair,") if k < n and ",good," in r else r.replace(",fair,", ",good,") if k < n else r for k, r in enumerate(rows)]
    (repo / CSV).write_text(header + "".join(rows[: len(rows) - drop]))


def test_first_publish_second_no_op_change_uploads_exactly_it(built, moto, bucket):
    res = publish(built, moto, bucket)
    assert res.exit_code == 0, res.stderr
    first = res.json
    expected = {c: build_files(built, c) for c in ("3dep", "shift")}
    feeds = {c: feed_files(moto, bucket, c) for c in expected}
    assert all(len(f) == 2 for f in feeds.values())  # a first publish: one feed record (a snapshot) and the index
    assert first["uploaded"] == sum(len(v) + len(feeds[c]) for c, v in expected.items()) and first["unchanged"] == 0
    assert first["bytes"] == sum(len(b) for v in (*expected.values(), *feeds.values()) for b in v.values())
    client = moto.client()
    for cat, files in expected.items():
        assert remote_tree(moto, bucket, cat) == files  # byte-identical, nothing else
    heads = {rel: client.head_object(Bucket=bucket, Key=f"{PREFIX}/shift/{rel}") for rel in (*expected["shift"], *feeds["shift"])}
    for rel, head in heads.items():
        assert head["Metadata"]["stacgit-sha256"] == hashlib.sha256({**expected["shift"], **feeds["shift"]}[rel]).hexdigest()
    kinds = {
        "catalog.json": ("application/json", "public, max-age=60"),
        "aviris-ng-l2a/collection.json": ("application/json", "public, max-age=60"),
        "aviris-ng-l2a/ang20220224t183418/ang20220224t183418.json": ("application/geo+json", "public, max-age=3600"),
        "aviris-ng-l2a/parquet/2022-02.parquet": ("application/vnd.apache.parquet", "public, max-age=3600"),
        "pgstac/aviris-ng-l2a/2022-02.ndjson": ("application/x-ndjson", "public, max-age=3600"),
        "changes/index.json": ("application/json", "public, max-age=60"),
    }
    for rel, (ctype, cache) in kinds.items():
        assert (heads[rel]["ContentType"], heads[rel]["CacheControl"]) == (ctype, cache), rel
    feed = next(rel for rel in heads if rel.startswith("changes/") and rel.endswith(".ndjson"))
    assert heads[feed]["CacheControl"] == "public, max-age=31536000, immutable"
    manifest = json.loads(client.get_object(Bucket=bucket, Key=f"{PREFIX}/shift/.stacgit/manifest.json")["Body"].read())
    assert manifest["generation"] == 1 and manifest["commit"] == git(built, "rev-parse", "HEAD")
    assert set(manifest["files"]) == set(expected["shift"]) | set(feeds["shift"])

    before = moto.objects(bucket)
    again = publish(built, moto, bucket)
    assert again.exit_code == 0 and (again.json["uploaded"], again.json["deleted"], again.json["bytes"]) == (0, 0, 0)
    assert again.json["unchanged"] == first["uploaded"]
    assert moto.objects(bucket) == before  # not even the manifest was rewritten

    old = build_files(built, "shift")
    edit_rows(built, 3)
    commit_and_build(built, "three flight lines rated fair")
    new = build_files(built, "shift")
    changed = {rel for rel, data in new.items() if old.get(rel) != data}
    assert len([r for r in changed if r.endswith(".json") and r.count("/") == 2]) == 3  # three items
    dry = publish(built, moto, bucket, "shift", "--dry-run")
    assert dry.exit_code == 0
    uploads = set(dry.json["catalogs"][0]["upload_paths"])
    feed = uploads - changed  # a feed record, its pgstac form and the index
    assert changed < uploads and len(feed) == 3 and "changes/index.json" in feed
    assert moto.objects(bucket) == before  # --dry-run changed nothing
    res = publish(built, moto, bucket, "shift")
    assert res.exit_code == 0 and res.json["uploaded"] == len(uploads) and res.json["deleted"] == 0
    assert remote_tree(moto, bucket, "shift") == new
    after = moto.objects(bucket, f"{PREFIX}/shift/")
    untouched = {k for k in after if k[len(PREFIX) + 7:] not in uploads and not k.endswith(".stacgit/manifest.json")}
    assert all(after[k]["etag"] == before[k]["etag"] for k in untouched)


def test_prune_deletes_exactly_the_removed_after_the_root(built, moto, bucket):
    assert publish(built, moto, bucket, "shift").exit_code == 0
    old = build_files(built, "shift")
    edit_rows(built, 0, drop=2)
    yaml = built / "catalogs/shift/catalog.yaml"
    yaml.write_text(yaml.read_text().replace("title: SBG SHIFT AVIRIS-NG", "title: SBG SHIFT AVIRIS-NG (2022)", 1))
    commit_and_build(built, "two flight lines withdrawn; title")
    new = build_files(built, "shift")
    removed = set(old) - set(new)
    assert len(removed) == 2 and new["catalog.json"] != old["catalog.json"]

    res = publish(built, moto, bucket, "shift")  # without --prune the removed items stay, tracked
    assert res.exit_code == 0 and res.json["deleted"] == 0 and res.json["orphans"] == 2
    assert removed <= set(remote_tree(moto, bucket, "shift"))

    proxy = ThrottlingProxy(moto.url)
    try:
        res = publish(built, moto, bucket, "shift", "--prune", endpoint=proxy.url)
    finally:
        proxy.close()
    assert res.exit_code == 0, res.stderr
    assert (res.json["deleted"], res.json["orphans"], res.json["uploaded"]) == (2, 0, 0)
    assert remote_tree(moto, bucket, "shift") == new
    log = [(m, p) for m, p, _ in proxy.log]
    delete = next(k for k, (m, p) in enumerate(log) if m == "POST" and "delete" in p)
    manifest = max(k for k, (m, p) in enumerate(log) if m == "PUT" and p.endswith(".stacgit/manifest.json"))
    assert delete < manifest


def test_prune_runs_only_once_the_new_root_is_live(built, moto, bucket):
    assert publish(built, moto, bucket, "shift").exit_code == 0
    edit_rows(built, 2, drop=1)
    yaml = built / "catalogs/shift/catalog.yaml"
    yaml.write_text(yaml.read_text().replace("title: SBG SHIFT AVIRIS-NG", "title: SHIFT", 1))
    commit_and_build(built, "edit, withdraw, retitle")
    proxy = ThrottlingProxy(moto.url)
    try:
        res = publish(built, moto, bucket, "shift", "--prune", endpoint=proxy.url)
    finally:
        proxy.close()
    assert res.exit_code == 0 and res.json["deleted"] == 1
    log = [(m, p.split("?")[0]) for m, p, _ in proxy.log]
    puts = [p for m, p in log if m == "PUT"]
    root = next(k for k, (m, p) in enumerate(log) if m == "PUT" and p.endswith(f"/{PREFIX}/shift/catalog.json"))
    delete = next(k for k, (m, p) in enumerate(log) if m == "POST")
    collection = next(k for k, (m, p) in enumerate(log) if m == "PUT" and p.endswith("/collection.json"))
    items = [k for k, (m, p) in enumerate(log) if m == "PUT" and p.count("/") == 6]
    assert max(items) < collection < root < delete  # leaves, collection, root, then deletes
    assert puts[-1].endswith(".stacgit/manifest.json")


def test_kill_mid_publish_then_rerun(built, moto, bucket):
    env = {**os.environ, **CREDENTIALS, "PYTHONWARNINGS": "ignore"}
    base = [sys.executable, "-m", "stacgit", "publish", "shift", "--to", f"s3://{bucket}/{PREFIX}", "--json"]
    assert subprocess.run([*base, "--endpoint-url", moto.url], cwd=built, env=env, capture_output=True, timeout=300).returncode == 0
    old = build_files(built, "shift")
    edit_rows(built, 20, drop=3)
    yaml = built / "catalogs/shift/catalog.yaml"
    yaml.write_text(yaml.read_text().replace("title: SBG SHIFT AVIRIS-NG", "title: SHIFT flight lines", 1))
    commit_and_build(built, "rerate twenty, withdraw three")

    proxy = ThrottlingProxy(moto.url, delay=0.05)
    try:
        proc = subprocess.Popen([*base, "--endpoint-url", proxy.url, "--prune", "--concurrency", "1"], cwd=built, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        checks = 0
        deadline = time.monotonic() + 120
        while proxy.puts < 12 and proc.poll() is None and time.monotonic() < deadline:
            assert dangling(moto, bucket, "shift") == []
            checks += 1
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close(), proc.stderr.close()
    finally:
        proxy.close()
    assert proc.returncode == -signal.SIGKILL and checks > 0
    partial = remote_tree(moto, bucket, "shift")
    assert partial != build_files(built, "shift")  # it really stopped part-way
    assert dangling(moto, bucket, "shift") == []
    manifest = json.loads(moto.client().get_object(Bucket=bucket, Key=f"{PREFIX}/shift/.stacgit/manifest.json")["Body"].read())
    assert manifest["generation"] == 1  # the old manifest is still the live one

    rerun = subprocess.run([*base, "--endpoint-url", moto.url, "--prune"], cwd=built, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert remote_tree(moto, bucket, "shift") == build_files(built, "shift")
    assert dangling(moto, bucket, "shift") == []
    removed = set(old) - set(build_files(built, "shift"))
    assert json.loads(rerun.stdout)["deleted"] == len(removed) >= 3  # three items and any partition left empty


def test_stale_base_is_refused_and_force_overrides(built, moto, bucket, tmp_path):
    assert publish(built, moto, bucket, "shift").exit_code == 0
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(built), str(other))  # a second clone still at commit 1
    assert stacgit(other, "build").exit_code == 0
    edit_rows(built, 1)
    commit_and_build(built, "newer")
    assert publish(built, moto, bucket, "shift").json["uploaded"] > 0  # generation 2, from commit 2
    live = remote_tree(moto, bucket, "shift")

    res = publish(other, moto, bucket, "shift")
    assert res.exit_code == 1 and "this clone does not have" in res.stderr
    git(other, "fetch", "-q", "origin")  # now it knows the newer commit, which is not in its history
    res = publish(other, moto, bucket, "shift")
    assert res.exit_code == 1
    assert "last published from commit" in res.stderr and "not an ancestor" in res.stderr and "--force" in res.stderr
    assert "Traceback" not in res.stderr
    assert remote_tree(moto, bucket, "shift") == live  # nothing uploaded

    forced = publish(other, moto, bucket, "shift", "--force")
    assert forced.exit_code == 0 and forced.json["catalogs"][0]["generation"] == 3
    live = remote_tree(moto, bucket, "shift", feed=True)
    assert without_feed(live) == build_files(other, "shift")
    assert set(build_files(other, "shift")) < set(live)  # feed records published earlier stay: history

    edit_rows(other, 5)  # after --force, commit 1's line is what is live: it moves on from there
    commit_and_build(other, "continues")
    assert publish(other, moto, bucket, "shift").exit_code == 0


def test_a_publish_that_finishes_first_wins_the_manifest(built, moto, bucket):
    """Two publishes read generation 1; the second to write the manifest is refused (If-Match)."""
    from stacgit.project import Project
    from stacgit.publishing import execute, plan_catalog
    from stacgit.stores import Target, open_store

    assert publish(built, moto, bucket, "shift").exit_code == 0
    edit_rows(built, 1)
    commit_and_build(built, "one")
    project = Project.discover(built)
    store = open_store(Target.parse(f"s3://{bucket}/{PREFIX}"), "shift", moto.url)
    slow = plan_catalog(project, "shift", store, None, force=False)
    assert publish(built, moto, bucket, "shift").json["catalogs"][0]["generation"] == 2  # the other one
    with pytest.raises(Exception) as err:
        execute(project, slow, prune=False, force=False, concurrency=4, progress=False)
    assert "another publish finished while this one ran" in str(err.value)


def test_verify_repairs_drift(built, moto, bucket):
    assert publish(built, moto, bucket, "shift").exit_code == 0
    client = moto.client()
    item = "aviris-ng-l2a/ang20220224t183418/ang20220224t183418.json"
    client.delete_object(Bucket=bucket, Key=f"{PREFIX}/shift/{item}")
    body = client.get_object(Bucket=bucket, Key=f"{PREFIX}/shift/catalog.json")["Body"].read()
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/shift/catalog.json", Body=body.replace(b"SBG", b"XYZ"))  # same size, other bytes
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/shift/stray.json", Body=b"{}")
    assert publish(built, moto, bucket, "shift").json["uploaded"] == 0  # the manifest alone cannot see drift
    res = publish(built, moto, bucket, "shift", "--verify")
    assert res.exit_code == 0 and (res.json["repaired"], res.json["uploaded"], res.json["orphans"]) == (2, 2, 1)
    res = publish(built, moto, bucket, "shift", "--verify", "--prune")
    assert (res.json["repaired"], res.json["deleted"]) == (0, 1)
    assert remote_tree(moto, bucket, "shift") == build_files(built, "shift")


def test_throttled_requests_are_retried(built, moto, bucket):
    proxy = ThrottlingProxy(moto.url, every=3)
    try:
        res = publish(built, moto, bucket, "shift", endpoint=proxy.url)
    finally:
        proxy.close()
    assert res.exit_code == 0, res.stderr
    assert sum(1 for _, _, status in proxy.log if status == 503) > 10
    assert remote_tree(moto, bucket, "shift") == build_files(built, "shift")


def test_credentials_appear_in_no_output_or_file(built, moto, bucket):
    env = {**os.environ, **CREDENTIALS, "PYTHONWARNINGS": "ignore"}
    runs = [
        ["--to", f"s3://{bucket}/{PREFIX}", "--endpoint-url", moto.url],
        ["--to", f"s3://{bucket}/{PREFIX}", "--endpoint-url", moto.url, "--json", "--verify", "--prune"],
        ["--to", f"s3://{bucket}/{PREFIX}", "--endpoint-url", moto.url, "--dry-run"],
        ["--to", f"s3://no-such-bucket-{bucket}/{PREFIX}", "--endpoint-url", moto.url],  # fails
        ["--to", f"s3://{bucket}/{PREFIX}", "--endpoint-url", "http://127.0.0.1:9"],  # cannot connect
    ]
    outputs = []
    for args in runs:
        p = subprocess.run([sys.executable, "-m", "stacgit", "publish", "shift", *args], cwd=built, env=env, capture_output=True, text=True, timeout=300)
        outputs.append(p.stdout + p.stderr)
    assert "0 unchanged" in outputs[0] and "error:" in outputs[3] and "error:" in outputs[4]
    assert all("Traceback" not in o for o in outputs)
    secrets = [CREDENTIALS["AWS_SECRET_ACCESS_KEY"], CREDENTIALS["AWS_ACCESS_KEY_ID"]]
    for o in outputs:
        assert not any(s in o for s in secrets)
    for path in built.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            data = path.read_bytes()
            assert not any(s.encode() in data for s in secrets), path
    for key in moto.objects(bucket):
        data = moto.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert not any(s.encode() in data for s in secrets), key


def test_local_mirror_with_absolute_links(built, tmp_path):
    mirror = tmp_path / "mirror"
    res = stacgit(built, "publish", "--to", f"file://{mirror}", "--base-url", "https://data.example.org/stac", "--json")
    assert res.exit_code == 0, res.stderr
    item_rel = "aviris-ng-l2a/ang20220224t183418/ang20220224t183418.json"
    published = json.loads((mirror / "shift" / item_rel).read_text())
    url = f"https://data.example.org/stac/shift/{item_rel}"
    assert published["links"][0] == {"href": url, "rel": "self", "type": "application/geo+json"}
    assert {link["rel"]: link["href"] for link in published["links"]}["root"] == "https://data.example.org/stac/shift/catalog.json"
    built_item = json.loads((built / "build/shift" / item_rel).read_text())
    assert all(not link["href"].startswith("http") for link in built_item["links"])  # the build stays relative
    assert {k: v for k, v in published.items() if k != "links"} == {k: v for k, v in built_item.items() if k != "links"}
    root = json.loads((mirror / "shift/catalog.json").read_text())
    assert all(link["href"].startswith("https://") for link in root["links"])
    index = json.loads((mirror / "shift/changes/index.json").read_text())
    assert index["feeds"][0]["href"].startswith("https://data.example.org/stac/shift/changes/")
    live = set(tree(mirror / "shift")) - {".stacgit/manifest.json", ".stacgit/publish.lock"}
    assert {rel for rel in live if not rel.startswith("changes/")} == set(build_files(built, "shift"))
    assert len(live - set(build_files(built, "shift"))) == 2  # the feed: a record and its index

    again = stacgit(built, "publish", "--to", f"file://{mirror}", "--base-url", "https://data.example.org/stac", "--json")
    assert again.json["uploaded"] == 0
    moved = stacgit(built, "publish", "shift", "--to", f"file://{mirror}", "--base-url", "https://cdn.example.org/", "--json")
    n_stac = sum(1 for rel in build_files(built, "shift") if rel.endswith(".json"))
    assert moved.json["uploaded"] == n_stac + 1  # a new base URL rewrites every STAC document and the feed index, nothing else


@pytest.mark.parametrize(
    "args, message",
    [
        (["--to", "http://example.org/x"], "expected s3://bucket[/prefix] or file:///absolute/path"),
        (["--to", "ftp://example.org/x"], "expected s3://bucket[/prefix] or file:///absolute/path"),
        (["--to", "s3://b/../etc"], "unsafe object path"),
        (["--to", "file:///tmp/x", "--endpoint-url", "http://127.0.0.1:1"], "--endpoint-url applies to s3:// targets"),
        (["--to", "file:///tmp/x", "--base-url", "ftp://x/"], "must be an http(s) URL"),
        (["nope", "--to", "file:///tmp/x"], "unknown catalog 'nope'"),
    ],
)
def test_bad_arguments(repo, args, message):
    res = stacgit(repo, "publish", *args)
    assert res.exit_code == 2 and message in res.stderr and "Traceback" not in res.stderr  # usage or configuration


def test_bad_build_and_bad_remote_manifest(built, tmp_path):
    mirror = tmp_path / "m"
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(built), str(fresh))
    res = stacgit(fresh, "publish", "--to", f"file://{mirror}")
    assert res.exit_code == 1 and "no build of catalog" in res.stderr and "run stacgit build first" in res.stderr

    item = built / "build/shift/aviris-ng-l2a/ang20220224t183418/ang20220224t183418.json"
    item.write_text(item.read_text().replace("SB", "XX"))
    res = stacgit(built, "publish", "shift", "--to", f"file://{mirror}")
    assert res.exit_code == 1 and "changed since the build wrote it" in res.stderr and str(item) in res.stderr
    assert not (mirror / "shift/catalog.json").exists()  # the root never went up over a broken leaf
    assert stacgit(built, "build", "--full").exit_code == 0
    assert stacgit(built, "publish", "shift", "--to", f"file://{mirror}").exit_code == 0

    manifest = mirror / "shift/.stacgit/manifest.json"
    doc = json.loads(manifest.read_text())
    doc["orphans"] = {"../../outside.json": {"sha256": "0" * 64, "size": 1}}
    manifest.write_text(json.dumps(doc))
    res = stacgit(built, "publish", "shift", "--to", f"file://{mirror}", "--prune")
    assert res.exit_code == 1 and "unsafe object path '../../outside.json'" in res.stderr and str(manifest.parent.parent) in res.stderr
    manifest.write_text("{not json")
    res = stacgit(built, "publish", "shift", "--to", f"file://{mirror}")
    assert res.exit_code == 1 and ".stacgit/manifest.json" in res.stderr and "--force" in res.stderr
    forced = stacgit(built, "publish", "shift", "--to", f"file://{mirror}", "--force", "--json")
    assert forced.exit_code == 0 and forced.json["uploaded"] == len(build_files(built, "shift")) + 2  # and a snapshot feed, and its index

