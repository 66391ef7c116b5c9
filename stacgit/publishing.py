"""``stacgit publish``: put a build on S3 (or a local mirror), uploading only what changed.

What to upload comes from comparing the build's ``manifest.json`` with the manifest of the last
publish, kept in the target at ``<catalog>/.stacgit/manifest.json``; nothing lists the bucket
unless ``--verify`` asks for an audit. Each object carries the sha256 of its bytes in its
metadata, because ETags are not content hashes (LESSONS S3-1, S3-2).

Order (LESSONS S3-5): items, parquet partitions and pgstac files first; then sub-catalogs and
collections, deepest first; then the change feed's index; then the root ``catalog.json``; then,
with ``--prune``, the deletes; the manifest last, with a conditional write. Every phase finishes
before the next starts, so at any moment the live root points at complete content, and a publish
that dies part-way is finished by running it again. (The feed index goes before the root, not
after: the root links it, and on a first publish it would otherwise point at a missing object.)

A target that was last published from a commit outside this build's history is refused unless
``--force`` (someone else published; LESSONS S3-6).
"""

from __future__ import annotations

import hashlib
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urljoin, urlsplit

import orjson

from stacgit import gitinfo
from stacgit.errors import ConfigError, PublishError, StacgitError, StalePublishError
from stacgit.hashing import pretty_json, sha256_bytes, sha256_file
from stacgit.project import Project
from stacgit.stores import LARGE, Conflict, Store, Target, check_rel, open_store
from stacgit.exports import pgstac_line
from stacgit.feed import FEED_DIR, FEED_INDEX, Change, compute_changes, counts, feed_name, item_key, render_feed, render_pgstac_feed
from stacgit.stac import GEOJSON, JSON, PARQUET
from stacgit.writers import read_manifest

MANIFEST = ".stacgit/manifest.json"
FORMAT = 1

NDJSON = "application/x-ndjson"

SHORT = "public, max-age=60"  # the root, catalogs, collections, the feed index: they move on every publish
MEDIUM = "public, max-age=3600"  # items and partitions: stable paths whose content changes now and then
IMMUTABLE = "public, max-age=31536000, immutable"  # change-feed records: named by their digest
NO_CACHE = "no-cache"  # the publish manifest


@dataclass(frozen=True)
class FileClass:
    """How one kind of published file is served and when it goes up."""

    content_type: str
    cache_control: str
    phase: int  # 0 leaves, 1 catalogs and collections (deepest first), 2 feed index, 3 root
    stac: bool  # a STAC document: hrefs become absolute under a base URL


CONTENT_TYPES: tuple[tuple[str, FileClass], ...] = (
    ("catalog.json (the root)", FileClass(JSON, SHORT, 3, True)),
    ("changes/index.json", FileClass(JSON, SHORT, 2, False)),
    ("changes/*.ndjson", FileClass(NDJSON, IMMUTABLE, 0, False)),
    ("*/catalog.json, */collection.json", FileClass(JSON, SHORT, 1, True)),
    ("*.json (items)", FileClass(GEOJSON, MEDIUM, 0, True)),
    ("*.parquet", FileClass(PARQUET, MEDIUM, 0, False)),
    ("*.ndjson (pgstac)", FileClass(NDJSON, MEDIUM, 0, False)),
)
"""The explicit table (never ``mimetypes``; LESSONS S3-3), in the order :func:`classify` checks it."""

_ROOT, _INDEX, _FEED, _NODE, _ITEM, _PARQUET, _PGSTAC = (c for _, c in CONTENT_TYPES)
_MANIFEST_CLASS = FileClass(JSON, NO_CACHE, 4, False)


def classify(rel: str) -> FileClass:
    name = rel.rsplit("/", 1)[-1]
    if rel == "catalog.json":
        return _ROOT
    if rel == FEED_INDEX:
        return _INDEX
    if rel.startswith(FEED_DIR) and name.endswith(".ndjson"):
        return _FEED
    if name in ("catalog.json", "collection.json"):
        return _NODE
    if name.endswith(".json"):
        return _ITEM
    if name.endswith(".parquet"):
        return _PARQUET
    if name.endswith(".ndjson"):
        return _PGSTAC
    raise PublishError(f"{rel}: no content type for this kind of file (stacgit does not guess one)")


# -- absolute links ---------------------------------------------------------------------------


def _absolute(url: str, href: Any) -> Any:
    if not isinstance(href, str) or urlsplit(href).scheme or href.startswith("/"):
        return href
    return urljoin(url, href)


def render_absolute(data: bytes, rel: str, base_url: str) -> bytes:
    """The published form of a STAC document at ``base_url + rel``: a ``self`` link first and
    every relative link and asset href made absolute (the build itself stays relative)."""
    doc = orjson.loads(data)
    url = base_url + rel
    links = [dict(link, href=_absolute(url, link.get("href"))) for link in doc.get("links", ()) if link.get("rel") != "self"]
    media = GEOJSON if doc.get("type") == "Feature" else JSON
    doc["links"] = [{"href": url, "rel": "self", "type": media}, *links]
    for asset in (doc.get("assets") or {}).values():
        if isinstance(asset, dict) and "href" in asset:
            asset["href"] = _absolute(url, asset["href"])
            for alt in (asset.get("alternate") or {}).values() if isinstance(asset.get("alternate"), dict) else ():
                if isinstance(alt, dict) and "href" in alt:
                    alt["href"] = _absolute(url, alt["href"])
    return pretty_json(doc)


def _check_base_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{where}: base URL {url!r} must be an http(s) URL without query or fragment")
    return url if url.endswith("/") else url + "/"


# -- plan -------------------------------------------------------------------------------------


@dataclass
class Entry:
    """One file of the published catalog."""

    rel: str
    key: str  # sha256 that decides whether it changed: of the built file, or of generated bytes
    size: int
    cls: FileClass
    source: Path | bytes


@dataclass
class CatalogPlan:
    catalog: str
    store: Store
    base_url: str | None
    remote: dict | None  # the target's manifest as read
    tag: str | None  # its version (ETag), for the conditional write
    uploads: list[Entry] = field(default_factory=list)
    carried: dict[str, dict] = field(default_factory=dict)  # unchanged: path -> remote entry
    deletes: list[str] = field(default_factory=list)  # removed since the last publish, or orphans found
    feeds: list[dict] = field(default_factory=list)
    desired: dict[str, Entry] = field(default_factory=dict)  # every file this publish should leave live
    changes: list[Change] = field(default_factory=list)  # items added, updated, deleted since the last publish
    repaired: int = 0
    sent_bytes: int = 0
    warnings: list[str] = field(default_factory=list)


def _read_build_manifest(out_dir: Path, catalog: str) -> dict[str, dict]:
    path = out_dir / "manifest.json"
    try:
        files = read_manifest(out_dir)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise PublishError(f"{path}: not a stacgit build manifest: run stacgit build") from None
    if files is None:
        raise PublishError(f"{path}: no build of catalog '{catalog}': run stacgit build first")
    for rel in files:
        check_rel(rel, str(path))
    return files


def read_remote(store: Store, force: bool) -> tuple[dict | None, str | None]:
    """The target's publish manifest and its version tag; (None, None) for a fresh target."""
    got = store.read(MANIFEST)
    if got is None:
        return None, None
    data, tag = got
    where = store.url + MANIFEST
    try:
        doc = orjson.loads(data)
        if not isinstance(doc, dict) or doc.get("stacgit_publish") != FORMAT or not isinstance(doc.get("files"), dict):
            raise ValueError("not a stacgit publish manifest (format 1)")
        for section in ("files", "orphans"):
            for rel, e in (doc.get(section) or {}).items():
                check_rel(rel, where)
                if not isinstance(e, dict) or not isinstance(e.get("sha256"), str) or not isinstance(e.get("size"), int):
                    raise ValueError(f"{section}.{rel}: expected {{sha256, size}}")
    except (orjson.JSONDecodeError, ValueError, PublishError) as exc:
        if force:
            return None, tag
        raise PublishError(f"{where}: {exc}; --force publishes over it as if the target were empty") from None
    return doc, tag


def check_base(project: Project, plan: CatalogPlan, record: dict, force: bool) -> None:
    """Refuse a target whose last publish is not in this build's history (someone else
    published since), unless ``force``."""
    remote = plan.remote
    if remote is None or force:
        return
    where = f"{plan.store.url} (generation {remote.get('generation')})"
    theirs = remote.get("commit")
    head, _dirty = gitinfo.head_commit(project.root)
    if theirs and head:
        ok = theirs == head or gitinfo.is_ancestor(project.root, theirs, head)
        if ok:
            return
        why = (
            "which this clone does not have (fetch it; a shallow checkout needs fetch-depth: 0)" if ok is None else "which is not an ancestor of this build's commit"
        )
        raise StalePublishError(
            f"{where}: last published from commit {theirs[:12]}, {why} ({head[:12]}): someone else published since this "
            "branch was based. Merge or rebase onto it, rebuild and publish again, or pass --force to publish over it"
        )
    known = record.get(plan.catalog)
    if known is not None and known.get("generation") != remote.get("generation"):
        raise StalePublishError(
            f"{where}: changed since this machine last published it (generation {known.get('generation')}): "
            "someone else published. Rebuild from their commit, or pass --force to publish over it"
        )


def _feed_files(project: Project, plan: CatalogPlan, files: dict[str, dict], base_url: str | None) -> tuple[list[Entry], list[dict], bytes | None]:
    """The change-feed record of this publish (and its pgstac form), the feed list (newest
    first) and the feed index. See :mod:`stacgit.feed`."""
    catalog, remote = plan.catalog, plan.remote
    changes = compute_changes((remote or {}).get("files"), files)
    plan.changes = changes
    published = list((remote or {}).get("feeds") or [])
    entries, new = [], []
    if changes:
        data = render_feed(changes)
        name = feed_name(data)
        entry: dict[str, Any] = {"href": f"./{name}.ndjson", **counts(changes), **({"snapshot": True} if remote is None else {})}
        entries.append(_generated(f"{FEED_DIR}{name}.ndjson", data))
        pg = _pgstac_changes(project, catalog, changes)
        if pg and remote is not None:  # a first publish loads the pgstac/ files whole
            out_dir = project.build_dir / catalog
            data = render_pgstac_feed(pg, lambda rel: orjson.loads((out_dir / rel).read_bytes()), pgstac_line)
            entries.append(_generated(f"{FEED_DIR}{name}.pgstac.ndjson", data))
            entry["pgstac"] = f"./{name}.pgstac.ndjson"
        if entry["href"] not in {e.get("href") for e in published}:
            new.append(entry)
    feeds = new + published
    if not feeds:
        return entries, feeds, None
    shown = [dict(e, **{k: urljoin(base_url + FEED_INDEX, e[k]) for k in ("href", "pgstac") if k in e}) for e in feeds] if base_url else feeds
    return entries, feeds, pretty_json({"feeds": shown})


def _generated(rel: str, data: bytes) -> Entry:
    return Entry(rel, sha256_bytes(data), len(data), classify(rel), data)


def _pgstac_changes(project: Project, catalog: str, changes: list[Change]) -> list[Change]:
    """The changes of collections with pgstac output, and the deletes of collections gone from
    catalog.yaml (their items are still in the database)."""
    colls = project.catalog(catalog).collections
    pg = {c.id for c in colls if c.pgstac}
    known = {c.id for c in colls}
    return [c for c in changes if c.collection in pg or (c.op == "delete" and c.collection not in known)] if pg else []


def plan_catalog(project: Project, catalog: str, store: Store, base_url: str | None, force: bool) -> CatalogPlan:
    out_dir = project.build_dir / catalog
    files = _read_build_manifest(out_dir, catalog)
    remote, tag = read_remote(store, force)
    plan = CatalogPlan(catalog, store, base_url, remote, tag)
    plan.desired = desired = {rel: Entry(rel, e["sha256"], e["size"], classify(rel), out_dir / rel) for rel, e in files.items()}
    feed_entries, plan.feeds, index = _feed_files(project, plan, files, base_url)
    for e in feed_entries:
        desired[e.rel] = e
    if index is not None:
        desired[FEED_INDEX] = Entry(FEED_INDEX, sha256_bytes(index), len(index), classify(FEED_INDEX), index)

    rfiles = (remote or {}).get("files", {})
    relinked = remote is not None and remote.get("base_url") != base_url
    for rel, e in desired.items():
        r = rfiles.get(rel)
        if r is not None and r.get("build", r["sha256"]) == e.key and not (relinked and e.cls.stac):
            plan.carried[rel] = r
        else:
            plan.uploads.append(e)
    for rel, r in rfiles.items():  # feed records published earlier stay: they are history
        if rel not in desired and rel.startswith(FEED_DIR) and rel != FEED_INDEX:
            plan.carried[rel] = r
    gone = set(rfiles) - set(desired) - set(plan.carried)
    gone |= set((remote or {}).get("orphans") or {}) - set(desired)
    gone |= set(read_pending(store)) - set(desired) - set(plan.carried)
    plan.deletes = sorted(gone)
    return plan


def stale_units(project: Project) -> list:
    from stacgit.runner import compute_status

    try:
        return compute_status(project)
    except StacgitError as exc:  # a mapping or catalog.yaml that does not load: it cannot be what was built
        raise PublishError(f"{exc}: refusing to publish (guard: stale build); fix it and run stacgit build first") from exc


def check_fresh(stale: list, catalog: str) -> None:
    """Refuse to publish a build that is not the build of the working tree (an edit not built
    yet, a build that stopped half way, an output changed by hand): what goes live must be
    what was built and validated."""
    units = [u for u in stale if u.unit.partition(":")[2].split("/")[0] == catalog]
    if units:
        first = units[0]
        raise PublishError(
            f"catalog '{catalog}': the build is stale ({len(units)} unit(s), e.g. {first.unit}: {first.reason.value}"
            + (f", {first.detail}" if first.detail else "")
            + "): refusing to publish (guard: stale build); run stacgit build first"
        )


DEFAULT_MAX_DELETE_SHARE = 0.1
DEFAULT_MAX_DELETE_ITEMS = 10


def check_guards(project: Project, plan: CatalogPlan, allow_failures: bool, allow_deletes: bool) -> None:
    """Refuse what is almost always a mistake upstream of the publish (a mapping typo, a source
    that lost a column or its rows) before it reaches the live catalog: a build with failed
    records, or one that deletes more than ``max_delete_share`` of a published collection's
    items and at least ``max_delete_items`` of them (``publish:`` in catalog.yaml)."""
    failed = project.build_dir / plan.catalog / "failed.ndjson"
    if failed.is_file() and not allow_failures:
        n = failed.read_bytes().count(b"\n")
        raise PublishError(
            f"catalog '{plan.catalog}': the build has {n} failed record(s) ({project.shown(failed)}): "
            "refusing to publish (guard: failed records); fix them, or pass --allow-failures to publish without them"
        )
    if allow_deletes or plan.remote is None:
        return
    settings = project.catalog(plan.catalog).publish
    share = float(settings.get("max_delete_share", DEFAULT_MAX_DELETE_SHARE))
    least = int(settings.get("max_delete_items", DEFAULT_MAX_DELETE_ITEMS))
    published: dict[str, int] = {}
    for rel in plan.remote.get("files") or {}:
        key = item_key(rel)
        if key is not None:
            published[key[0]] = published.get(key[0], 0) + 1
    deleted: dict[str, int] = {}
    for c in plan.changes:
        if c.op == "delete":
            deleted[c.collection] = deleted.get(c.collection, 0) + 1
    for coll, n in sorted(deleted.items()):
        if n >= least and n > share * published.get(coll, 0):
            raise PublishError(
                f"catalog '{plan.catalog}', collection '{coll}': this publish would delete {n} of its {published.get(coll, 0)} "
                f"published items (more than {share:.0%} and at least {least}): refusing to publish (guard: deletes); "
                "check the build, or pass --allow-deletes if the deletions are meant"
            )


PENDING = ".stacgit/pending.json"
"""Objects a publish is about to upload that no manifest tracks yet, written before the first
upload: if the publish is killed, the next one knows them (and ``--prune`` deletes those the
build no longer has), whatever the build looks like by then."""


def read_pending(store: Store) -> list[str]:
    got = store.read(PENDING)
    if got is None:
        return []
    try:
        paths = orjson.loads(got[0])["uploading"]
        return [check_rel(p, store.url + PENDING) for p in paths]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise PublishError(f"{store.url}{PENDING}: not a stacgit publish journal ({exc}); delete it and publish with --verify") from None


def _write_pending(plan: CatalogPlan) -> bool:
    """Record the new objects of this publish (and those of an interrupted one) before any goes
    up; True when there is a journal to remove once the manifest tracks them."""
    tracked = set((plan.remote or {}).get("files") or {}) | set((plan.remote or {}).get("orphans") or {})
    paths = sorted({e.rel for e in plan.uploads if e.rel not in tracked} | set(read_pending(plan.store)))
    if not paths:
        return False
    data = orjson.dumps({"uploading": paths})
    plan.store.put(PENDING, data, content_type=JSON, cache_control=NO_CACHE, sha256=sha256_bytes(data))
    return True


def verify_catalog(plan: CatalogPlan, concurrency: int) -> None:
    """Audit the target against the manifest (LIST, then HEAD every object that should be
    unchanged) and move each object that is missing or differs into the uploads; objects no
    manifest tracks become deletes (carried out only with ``--prune``)."""
    listing = plan.store.list()
    suspects = {rel for rel, r in plan.carried.items() if listing.get(rel) != r["size"]}
    same_size = [rel for rel in plan.carried if rel not in suspects]
    for rel, sha in _parallel(lambda rel: (rel, plan.store.stored_sha256(rel)), same_size, concurrency):
        if sha != plan.carried[rel]["sha256"]:
            suspects.add(rel)
    for rel in sorted(suspects):
        del plan.carried[rel]
        if rel in plan.desired:
            plan.uploads.append(plan.desired[rel])
            plan.repaired += 1
        else:
            plan.warnings.append(f"{plan.store.url}{rel}: a change-feed record published earlier is missing or altered, and this build does not have it")
    tracked = set(plan.carried) | set(plan.desired) | set(plan.deletes)
    plan.deletes = sorted(set(plan.deletes) | {rel for rel in listing if rel not in tracked and not rel.startswith(".stacgit/")})


# -- execution --------------------------------------------------------------------------------


def _parallel(fn: Callable, items: Iterable, concurrency: int, on_done: Callable[[Any], None] | None = None) -> list:
    """``fn`` over ``items`` on a thread pool, at most a few batches in flight; the first
    error stops new work, waits for what is running, and is raised."""
    results, error = [], None
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending: set = set()

        def collect(done) -> None:
            nonlocal error
            for f in done:
                try:
                    r = f.result()
                except Exception as exc:  # noqa: BLE001 - re-raised below, after the pool drains
                    error = error or exc
                    continue
                results.append(r)
                if on_done is not None:
                    on_done(r)

        for item in items:
            if error is not None:
                break
            pending.add(pool.submit(fn, item))
            if len(pending) >= 4 * concurrency:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
        done, _ = wait(pending)
        collect(done)
    if error is not None:
        raise error
    return results


def _upload(store: Store, e: Entry, base_url: str | None) -> tuple[str, dict]:
    if isinstance(e.source, Path):
        path = e.source
        try:
            large = path.stat().st_size > LARGE and not e.cls.stac
            data: bytes | Path = path if large else path.read_bytes()
        except FileNotFoundError:
            raise PublishError(f"{path}: listed in the build manifest but missing: run stacgit build") from None
        got = sha256_file(str(path)) if large else sha256_bytes(data)  # type: ignore[arg-type]
        if got != e.key:
            raise PublishError(f"{path}: changed since the build wrote it (sha256 differs from manifest.json): run stacgit build")
    else:
        data = e.source
    sha, size = e.key, e.size
    if base_url and e.cls.stac:
        data = render_absolute(data, e.rel, base_url)  # type: ignore[arg-type]
        sha, size = sha256_bytes(data), len(data)
    store.put(e.rel, data, content_type=e.cls.content_type, cache_control=e.cls.cache_control, sha256=sha)
    return e.rel, {"sha256": sha, "size": size, **({"build": e.key} if sha != e.key else {})}


def _phases(uploads: list[Entry]) -> list[list[Entry]]:
    """Upload order: leaves; catalogs and collections deepest first; feed index; root."""
    keyed: dict[tuple[int, int], list[Entry]] = {}
    for e in uploads:
        depth = e.rel.count("/") if e.cls.phase == 1 else 0
        keyed.setdefault((e.cls.phase, -depth), []).append(e)
    return [sorted(keyed[k], key=lambda e: e.rel) for k in sorted(keyed)]


class _Progress:
    """A rich progress bar on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.bar = None
        if enabled and total and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)

    def advance(self, _result: Any = None, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def execute(project: Project, plan: CatalogPlan, *, prune: bool, force: bool, concurrency: int, progress: bool) -> dict:
    """Carry out a plan; returns the manifest written (or the old one when nothing changed)."""
    remote = plan.remote or {}
    files = dict(plan.carried)
    orphans = {} if prune else {rel: (remote.get("files") or {}).get(rel) or (remote.get("orphans") or {}).get(rel) or {"sha256": "", "size": 0} for rel in plan.deletes}
    bar = _Progress(progress, len(plan.uploads) + (len(plan.deletes) if prune else 0), f"publishing {plan.catalog}")
    sent = 0
    journal = _write_pending(plan)
    try:
        for phase in _phases(plan.uploads):
            for rel, entry in _parallel(lambda e: _upload(plan.store, e, plan.base_url), phase, concurrency, bar.advance):
                files[rel] = entry
                sent += entry["size"]
        if prune and plan.deletes:
            batches = [plan.deletes[i : i + 1000] for i in range(0, len(plan.deletes), 1000)]
            _parallel(plan.store.delete, batches, min(concurrency, 8))
            bar.advance(n=len(plan.deletes))
    finally:
        bar.close()
    plan.sent_bytes = sent
    changed = plan.uploads or (prune and plan.deletes) or orphans != (remote.get("orphans") or {}) or plan.remote is None
    if not changed:
        return remote
    head, dirty = gitinfo.head_commit(project.root, dirty=True)
    doc = {
        "base_url": plan.base_url,
        "catalog": plan.catalog,
        "commit": head,
        "dirty": dirty,
        "feeds": plan.feeds,
        "files": dict(sorted(files.items())),
        "generation": int(remote.get("generation") or 0) + 1,
        "orphans": dict(sorted(orphans.items())),
        "stacgit_publish": FORMAT,
    }
    data = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS) + b"\n"
    sha = sha256_bytes(data)
    cls = _MANIFEST_CLASS
    try:
        if force:
            plan.store.put(MANIFEST, data, content_type=cls.content_type, cache_control=cls.cache_control, sha256=sha)
        else:
            plan.store.put_if(MANIFEST, data, content_type=cls.content_type, cache_control=cls.cache_control, sha256=sha, tag=plan.tag)
    except Conflict:
        raise StalePublishError(
            f"{plan.store.url}{MANIFEST}: another publish finished while this one ran (this one started from generation "
            f"{remote.get('generation', 0)}); what this run uploaded may have replaced some of its files. Update to the newest commit, rebuild and publish again"
        ) from None
    if journal:  # the manifest tracks every object the journal named (as a file or an orphan)
        plan.store.delete([PENDING])
    return doc


# -- entry point ------------------------------------------------------------------------------


def _record_path(project: Project, target: Target) -> Path:
    return project.state_dir / "published" / (hashlib.sha256(target.url().encode()).hexdigest()[:16] + ".json")


def run_publish(
    project: Project,
    to: str,
    catalog: str | None = None,
    *,
    endpoint_url: str | None = None,
    base_url: str | None = None,
    prune: bool = False,
    dry_run: bool = False,
    force: bool = False,
    verify: bool = False,
    concurrency: int = 16,
    progress: bool = True,
    allow_failures: bool = False,
    allow_deletes: bool = False,
) -> dict:
    """Publish one catalog or every catalog of the project to ``to`` (``s3://bucket/prefix``
    or ``file:///path``; each catalog goes to ``<to>/<catalog-id>/``). Returns the summary."""
    target = Target.parse(to)
    if endpoint_url and target.scheme != "s3":
        raise ConfigError(f"--endpoint-url applies to s3:// targets, not {to}")
    catalogs = [project.catalog(catalog).id] if catalog else sorted(project.catalogs)
    stale: list | None = None
    record_path = _record_path(project, target)
    record = orjson.loads(record_path.read_bytes()) if record_path.exists() else {}
    totals = {"uploaded": 0, "unchanged": 0, "deleted": 0, "orphans": 0, "bytes": 0, "repaired": 0, "dry_run": dry_run, "catalogs": []}
    for cat_id in catalogs:
        cat = project.catalog(cat_id)
        if base_url:
            cat_base = _check_base_url(base_url, "--base-url").rstrip("/") + "/" + cat_id + "/"
        elif cat.publish.get("base_url"):
            cat_base = _check_base_url(cat.publish["base_url"], f"catalogs/{cat_id}/catalog.yaml: publish.base_url")
        else:
            cat_base = None
        store = open_store(target, cat_id, endpoint_url, concurrency)
        plan = plan_catalog(project, cat_id, store, cat_base, force)
        if stale is None:
            stale = stale_units(project)
        check_fresh(stale, cat_id)
        check_base(project, plan, record, force)
        check_guards(project, plan, allow_failures, allow_deletes)
        if verify:
            verify_catalog(plan, concurrency)
        summary = {
            "catalog": cat_id,
            "target": store.url,
            "uploaded": len(plan.uploads),
            "unchanged": len(plan.carried),
            "deleted": len(plan.deletes) if prune else 0,
            "orphans": 0 if prune else len(plan.deletes),
            "bytes": sum(e.size for e in plan.uploads),
            "repaired": plan.repaired,
            "warnings": plan.warnings,
        }
        if dry_run:
            summary.update(upload_paths=[e.rel for e in plan.uploads], delete_paths=plan.deletes if prune else [], generation=(plan.remote or {}).get("generation"))
        else:
            doc = execute(project, plan, prune=prune, force=force, concurrency=concurrency, progress=progress)
            summary.update(bytes=plan.sent_bytes, generation=doc.get("generation"), commit=doc.get("commit"))
            record[cat_id] = {"generation": doc.get("generation")}
            record_path.parent.mkdir(parents=True, exist_ok=True)
            record_path.write_bytes(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
        for k in ("uploaded", "unchanged", "deleted", "orphans", "bytes", "repaired"):
            totals[k] += summary[k]
        totals["catalogs"].append(summary)
    return totals


def format_summary(summary: dict) -> str:
    lines = []
    verb = "would upload" if summary["dry_run"] else "uploaded"
    for s in summary["catalogs"]:
        line = f"{s['catalog']} -> {s['target']}: {s['uploaded']:,} {verb} ({_size(s['bytes'])}), {s['unchanged']:,} unchanged, {s['deleted']:,} deleted"
        if s["orphans"]:
            line += f", {s['orphans']:,} removed from the build but left on the target (--prune deletes them)"
        if s["repaired"]:
            line += f", {s['repaired']:,} repaired"
        if s.get("generation") is not None and not summary["dry_run"]:
            line += f"; generation {s['generation']}" + (f" (commit {s['commit'][:12]})" if s.get("commit") else "")
        lines.append(line)
        for w in s["warnings"]:
            lines.append(f"warning: {w}")
        if summary["dry_run"]:
            for label, paths in (("upload", s["upload_paths"]), ("delete", s["delete_paths"])):
                lines += [f"  {label} {p}" for p in paths[:20]]
                if len(paths) > 20:
                    lines.append(f"  ... {len(paths) - 20:,} more to {label}")
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


__all__ = ["CONTENT_TYPES", "classify", "format_summary", "render_absolute", "run_publish"]
