"""Carrying out a publish plan: uploads in parallel and in order (items, then catalogs, then the
root, the feed index and the manifest last), a journal of what is in flight (``PENDING``, read by the plan) so that an
interrupted publish is resumed, and ``--verify``."""

from __future__ import annotations

import hashlib
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson

from stacgit import gitinfo
from stacgit.errors import PublishError, StalePublishError, TargetWarning
from stacgit.hashing import sha256_bytes, sha256_file
from stacgit.project import Project
from stacgit.stores import LARGE, Conflict, Store, Target
from stacgit.stac import JSON
from stacgit.publishing.plan import CatalogPlan, Entry, FORMAT, MANIFEST, MANIFEST_CLASS, NO_CACHE, PENDING, read_pending, render_absolute


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
            plan.warnings.append(TargetWarning(f"{plan.store.url}{rel}: a change-feed record published earlier is missing or altered, and this build does not have it", rel))
    tracked = set(plan.carried) | set(plan.desired) | set(plan.deletes)
    plan.deletes = sorted(set(plan.deletes) | {rel for rel in listing if rel not in tracked and not rel.startswith(".stacgit/")})


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
    cls = MANIFEST_CLASS
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


def record_file(project: Project, target: Target) -> Path:
    return project.state_dir / "published" / (hashlib.sha256(target.url().encode()).hexdigest()[:16] + ".json")
