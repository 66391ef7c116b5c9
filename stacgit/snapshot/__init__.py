"""``stacgit snapshot``: bring upstream STAC API items into the repository as reviewed files.

For each collection with ``source: {type: stac-api, ...}``:

1. split the query's datetime range into windows, fetched concurrently (``sources.stacapi``);
   each finished window is a checkpoint under ``.stacgit/snapshots/`` (items + a ``.done``
   marker), so a rerun after a crash or failure fetches only the windows still missing;
2. normalise items (time-zone-less datetimes -> UTC ``Z``, numeric strings of declared
   ``numeric`` fields -> numbers) and quarantine invalid ones to a report instead of aborting;
3. only when every window completed: write ``catalogs/<c>/snapshots/<collection>/<YYYY-MM>.ndjson``
   (canonical JSON, one item per line, sorted by id; undated items in ``undated-<h>`` by a hash
   of the id) and ``snapshot.json`` (query, counts, per-partition digests, no wall-clock time),
   each only when its bytes change, and remove partitions that became empty. An incomplete
   snapshot leaves the previous files untouched and records the failed windows (URL, error).

Unchanged upstream -> byte-identical files -> empty git diff.

``items``: normalising and keying items; ``partitions``: writing the files; ``http_json``: plain
JSON APIs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import orjson

from stacgit.errors import ConfigError, SourceError
from stacgit.hashing import digest_obj, pretty_json
from stacgit.project import CollectionSpec, Project
from stacgit.sources.stacapi import ApiQuery, FetchError, Http, Window, WindowTooBig, fetch_window, probe_method, split_windows
from stacgit.snapshot.http_json import snapshot_http_json
from stacgit.snapshot.items import CHECKPOINT_FORMAT, CollectionReport, SnapshotReport, format_summary, dirs, finish_incomplete, item_id, keyed_line, normalise, partition_of
from stacgit.snapshot.partitions import Spool, write_if_changed, write_partitions


def snapshot_collections(project: Project, catalog: str | None = None, collection: str | None = None) -> list[CollectionSpec]:
    colls = [c for c in project.iter_collections() if c.source.is_snapshot]
    if catalog is not None:
        project.catalog(catalog)
        colls = [c for c in colls if c.catalog_id == catalog]
    if collection is not None:
        project.catalog(catalog).collection(collection)
        colls = [c for c in colls if c.id == collection]
        if not colls:
            raise ConfigError(f"collection '{catalog}/{collection}' is not a stac-api source")
    return colls


def run_snapshot(project: Project, catalog: str | None = None, collection: str | None = None, env: dict | None = None, transport=None) -> SnapshotReport:
    """Snapshot the selected collections (``stacgit snapshot --json`` prints ``to_json()``)."""
    env = dict(os.environ) if env is None else env
    out = SnapshotReport()
    for coll in snapshot_collections(project, catalog, collection):
        out.collections[coll.key] = asyncio.run(snapshot_collection(project, coll, env, transport))
    return out


async def snapshot_collection(project: Project, coll: CollectionSpec, env: dict, transport=None) -> CollectionReport:
    if coll.source.type == "http-json":
        return await snapshot_http_json(project, coll, env, transport)
    q = ApiQuery.from_source(coll.source.api or {})
    qdigest = digest_obj([CHECKPOINT_FORMAT, q.describe()])
    out_dir, ck = dirs(project, coll, qdigest)
    ck.mkdir(parents=True, exist_ok=True)
    for other in ck.parent.iterdir():  # checkpoints of an older query are useless
        if other.is_dir() and other != ck:
            shutil.rmtree(other, ignore_errors=True)
    report = CollectionReport()
    windows = split_windows(q.datetime, q.window)
    http = Http(q, env, transport)
    try:
        try:
            report.method = await probe_method(http, q, windows[0])
        except FetchError as exc:
            report.complete = False
            report.failed_windows.append({"window": "probe", "url": q.url, "error": str(exc)})
            return finish_incomplete(ck, report)
        queue: asyncio.Queue[Window] = asyncio.Queue()
        for w in windows:
            queue.put_nowait(w)

        async def worker() -> None:
            while True:
                try:
                    w = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                if (ck / f"{w.key}.done").exists():
                    report.windows += 1
                    report.windows_resumed += 1
                    continue
                part = ck / f"{w.key}.part"
                try:
                    with open(part, "wb") as f:

                        def sink(items: list[dict]) -> None:
                            f.writelines(keyed_line(it, q.numeric) for it in items)

                        got = await fetch_window(http, q, w, report.method, sink)
                        report.notes += [n for n in got.notes if n not in report.notes]
                except WindowTooBig:
                    part.unlink(missing_ok=True)
                    a, b = w.halves()
                    queue.put_nowait(a)
                    queue.put_nowait(b)
                    continue
                except SourceError as exc:
                    part.unlink(missing_ok=True)
                    report.complete = False
                    report.failed_windows.append({"window": w.datetime or "all", "url": getattr(exc, "url", "") or q.url, "error": str(exc)})
                    continue
                os.replace(part, ck / f"{w.key}.ndjson")
                (ck / f"{w.key}.done").write_bytes(b"")
                report.windows += 1

        await asyncio.gather(*(worker() for _ in range(max(1, q.concurrency))))
    finally:
        report.requests = http.requests
        await http.close()
    if not report.complete:
        return finish_incomplete(ck, report)
    _write_snapshot(coll, q, report, ck, out_dir)
    shutil.rmtree(ck, ignore_errors=True)
    (ck.parent / "report.json").unlink(missing_ok=True)
    return report


def _write_snapshot(coll: CollectionSpec, q: ApiQuery, report: CollectionReport, ck: Path, out_dir: Path) -> None:
    """Split the checkpointed window lines into per-partition files, then write each partition
    sorted by id (``write_partitions``) and ``snapshot.json``."""
    tmp = ck / "partitions"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with Spool(tmp) as spool:
        for wfile in sorted(ck.glob("*.ndjson")):
            with open(wfile, "rb") as f:
                for line in f:
                    name, rest = line.split(b"\t", 1)
                    if name == b"!":
                        why = orjson.loads(rest[1:])
                        report.quarantine(why["id"], why["reason"])
                    else:
                        spool.add(name.decode(), rest)
    partitions = write_partitions(tmp, out_dir, report, item_id)
    meta = {
        "source": {"type": coll.source.type, **q.describe()},
        "method": report.method,
        "counts": {"items": report.records, "partitions": len(partitions), "quarantined": report.quarantined},
        "partitions": partitions,
        "quarantined": report.quarantined_examples,
    }
    write_if_changed(out_dir / "snapshot.json", pretty_json(meta))


__all__ = ["CollectionReport", "SnapshotReport", "format_summary", "normalise", "partition_of", "run_snapshot", "snapshot_collection", "snapshot_collections"]
