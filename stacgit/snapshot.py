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
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from urllib.parse import urljoin

import orjson

from stacgit.errors import ConfigError, SourceError
from stacgit.hashing import canonical_json, digest_obj, pretty_json, sha256_bytes
from stacgit.mapping import format_datetime, parse_rfc3339
from stacgit.project import CollectionSpec, Project, check_id
from stacgit.sources.stacapi import ApiQuery, FetchError, Http, Window, WindowTooBig, fetch_window, probe_method, split_windows

_TIME_FIELDS = ("datetime", "start_datetime", "end_datetime", "created", "updated")


@dataclass
class CollectionReport:
    records: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    complete: bool = True
    quarantined: list[dict] = field(default_factory=list)
    failed_windows: list[dict] = field(default_factory=list)
    windows: int = 0
    windows_resumed: int = 0
    requests: int = 0
    method: str = ""

    def to_dict(self) -> dict:
        return {
            "records": self.records,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "complete": self.complete,
            "quarantined": len(self.quarantined),
            "quarantined_examples": self.quarantined[:10],
            "failed_windows": self.failed_windows,
            "windows": self.windows,
            "windows_resumed": self.windows_resumed,
            "requests": self.requests,
            "method": self.method,
        }


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


def run_snapshot(project: Project, catalog: str | None = None, collection: str | None = None, env: dict | None = None, transport=None) -> dict:
    """Snapshot the selected collections; the summary ``stacgit snapshot --json`` prints."""
    env = dict(os.environ) if env is None else env
    out: dict[str, dict] = {}
    for coll in snapshot_collections(project, catalog, collection):
        report = asyncio.run(snapshot_collection(project, coll, env, transport))
        out[coll.key] = report.to_dict()
    return {"collections": out, "complete": all(r["complete"] for r in out.values())}


# --------------------------------------------------------------------------- normalising


def _normal_time(value):
    if not isinstance(value, str):
        return value
    try:
        return format_datetime(parse_rfc3339(value, default_tz=timezone.utc))
    except ValueError:
        return value


def _number(value):
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                continue
    return value


def normalise(item, numeric: tuple[str, ...]) -> tuple[dict | None, str | None]:
    """(item, None) or (None, why it is quarantined)."""
    if not isinstance(item, dict):
        return None, "not a JSON object"
    why = check_id(item.get("id"), "item id")
    if why is not None:
        return None, why
    props = item.get("properties")
    if not isinstance(props, dict):
        return None, "no properties object"
    for key in _TIME_FIELDS:
        if key in props:
            props[key] = _normal_time(props[key])
    for key in numeric:
        if key in props:
            props[key] = _number(props[key])
    start = props.get("datetime") or props.get("start_datetime")
    if not start and not (props.get("start_datetime") and props.get("end_datetime")):
        return None, "no datetime (nor start_datetime and end_datetime)"
    if start and not (isinstance(start, str) and start.endswith("Z") and start[:4].isdigit()):
        return None, f"datetime {start!r} is not an RFC 3339 time"
    if "geometry" not in item:
        return None, "no geometry"
    return item, None


def partition_of(item: dict) -> str:
    props = item["properties"]
    when = props.get("datetime") or props.get("start_datetime")
    if isinstance(when, str) and len(when) >= 7:
        return when[:7]
    return "undated-" + hashlib.blake2b(item["id"].encode(), digest_size=1).hexdigest()


# --------------------------------------------------------------------------- one collection


def _dirs(project: Project, coll: CollectionSpec, qdigest: str) -> tuple[Path, Path]:
    out_dir = project.catalogs[coll.catalog_id].dir / "snapshots" / coll.id
    ck_root = project.state_dir / "snapshots" / coll.catalog_id / coll.id
    return out_dir, ck_root / qdigest[:16]


async def snapshot_collection(project: Project, coll: CollectionSpec, env: dict, transport=None) -> CollectionReport:
    if coll.source.type == "http-json":
        return await snapshot_http_json(project, coll, env, transport)
    q = ApiQuery.from_source(coll.source.api or {})
    qdigest = digest_obj(q.describe())
    out_dir, ck = _dirs(project, coll, qdigest)
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
            return _finish_incomplete(ck, report)
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
                            for it in items:
                                f.write(canonical_json(it) + b"\n")

                        await fetch_window(http, q, w, report.method, sink)
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
        return _finish_incomplete(ck, report)
    _write_snapshot(project, coll, q, report, ck, out_dir)
    shutil.rmtree(ck, ignore_errors=True)
    (ck.parent / "report.json").unlink(missing_ok=True)
    return report


def _finish_incomplete(ck: Path, report: CollectionReport) -> CollectionReport:
    (ck.parent / "report.json").write_bytes(pretty_json({"complete": False, "failed_windows": report.failed_windows}))
    return report


def _write_snapshot(project: Project, coll: CollectionSpec, q: ApiQuery, report: CollectionReport, ck: Path, out_dir: Path) -> None:
    """Partition the checkpointed items by month (streaming through per-partition temp files),
    sort each partition by id, and write what changed."""
    tmp = ck / "partitions"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    handles: dict[str, object] = {}
    quarantine = []
    try:
        for wfile in sorted(ck.glob("*.ndjson")):
            with open(wfile, "rb") as f:
                for line in f:
                    raw = orjson.loads(line)
                    item, why = normalise(raw, q.numeric)
                    if item is None:
                        quarantine.append({"id": raw.get("id") if isinstance(raw, dict) else None, "reason": why})
                        continue
                    name = partition_of(item)
                    h = handles.get(name)
                    if h is None:
                        h = handles[name] = open(tmp / f"{name}.ndjson", "ab")
                    h.write(canonical_json(item) + b"\n")
    finally:
        for h in handles.values():
            h.close()
    report.quarantined = quarantine
    out_dir.mkdir(parents=True, exist_ok=True)
    old = {p.stem: p for p in out_dir.glob("*.ndjson")}
    partitions: dict[str, dict] = {}
    gone: set[str] = set()  # ids that left a partition; memory follows the change, not the snapshot
    new: set[str] = set()  # ids that entered a partition
    for name in sorted(set(old) | {p.stem for p in tmp.glob("*.ndjson")}):
        before = _lines_by_id(old[name]) if name in old else {}
        rows = _lines_by_id(tmp / f"{name}.ndjson") if (tmp / f"{name}.ndjson").exists() else {}
        for i, line in rows.items():
            prev = before.get(i)
            if prev is None:
                if old:  # on a first snapshot everything is new: no need to remember ids
                    new.add(i)
                else:
                    report.added += 1
            elif prev != line:
                report.changed += 1
        gone.update(i for i in before if i not in rows)
        report.records += len(rows)
        target = out_dir / f"{name}.ndjson"
        if not rows:
            target.unlink(missing_ok=True)
            continue
        data = b"".join(rows[i] + b"\n" for i in sorted(rows))
        _write_if_changed(target, data)
        partitions[name] = {"items": len(rows), "sha256": sha256_bytes(data)}
    moved = gone & new  # an item whose datetime moved it to another month: changed, not added/removed
    report.added += len(new - moved)
    report.removed, report.changed = len(gone - moved), report.changed + len(moved)
    meta = {
        "source": {"type": coll.source.type, **q.describe()},
        "method": report.method,
        "counts": {"items": report.records, "partitions": len(partitions), "quarantined": len(quarantine)},
        "partitions": partitions,
        "quarantined": quarantine[:100],
    }
    data = pretty_json(meta)
    target = out_dir / "snapshot.json"
    _write_if_changed(target, data)


def _lines_by_id(path: Path) -> dict[str, bytes]:
    """A partition file's lines by item id (the same id twice, e.g. from two windows: one line)."""
    return {orjson.loads(line)["id"]: line for line in path.read_bytes().splitlines()}


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write atomically, and only when the bytes differ: an unchanged snapshot keeps its files."""
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- http-json


async def snapshot_http_json(project: Project, coll: CollectionSpec, env: dict, transport=None) -> CollectionReport:
    """Records of a plain JSON API (``records``/``next`` JMESPath), partitioned by a hash of
    their ``key`` (or of the whole record), sorted; with ``head``, each record gets the ETag of
    the remote file it points at, so an unchanged file leaves the record line unchanged and the
    build skips it, while a changed file re-maps it."""
    import jmespath

    api = dict(coll.source.api or {})
    spec = {k: api.pop(k) for k in ("records", "next", "params", "key", "head") if k in api}
    q = ApiQuery.from_source({**api, "collection": "", "window": "none"})
    out_dir, ck = _dirs(project, coll, digest_obj([q.describe(), spec]))
    report = CollectionReport(method="GET")
    records_expr = jmespath.compile(spec.get("records", "@"))
    next_expr = jmespath.compile(spec["next"]) if "next" in spec else None
    key_expr = jmespath.compile(spec["key"]) if "key" in spec else None
    head_expr = jmespath.compile(spec["head"]) if "head" in spec else None
    http = Http(q, env, transport)
    records: list[dict] = []
    try:
        url, params, seen = q.url, dict(spec.get("params") or {}), set()
        while True:
            if len(seen) >= q.max_pages:
                raise FetchError(f"{url}: more than {q.max_pages} pages")
            seen.add(url)
            page = await http.json("GET", url, params or None, allow_list=True)
            found = records_expr.search(page)
            if not isinstance(found, list):
                raise FetchError(f"{url}: 'records' ({spec.get('records', '@')}) is not a list in the response")
            records.extend(r for r in found if isinstance(r, dict))
            report.quarantined += [{"id": None, "reason": "not a JSON object"} for r in found if not isinstance(r, dict)]
            nxt = next_expr.search(page) if next_expr else None
            if not nxt:
                break
            nxt = urljoin(url, str(nxt))
            if nxt in seen:
                raise FetchError(f"{nxt}: next page repeats an earlier one (looping next links)")
            url, params = nxt, None
        if head_expr is not None:
            sem = asyncio.Semaphore(max(1, q.concurrency))

            async def stamp(rec: dict) -> None:
                target = head_expr.search(rec)
                if isinstance(target, str) and target.startswith(("http://", "https://")):
                    async with sem:
                        rec["_remote"] = {"href": target, "etag": await http.etag(target)}

            await asyncio.gather(*(stamp(r) for r in records))
    except SourceError as exc:
        report.complete = False
        report.failed_windows.append({"window": "all", "url": q.url, "error": str(exc)})
        ck.mkdir(parents=True, exist_ok=True)
        return _finish_incomplete(ck, report)
    finally:
        report.requests = http.requests
        await http.close()

    def key_of(rec: dict, line: bytes) -> str:
        k = key_expr.search(rec) if key_expr is not None else None
        return str(k) if k is not None else line.decode()

    by_part: dict[str, dict[str, bytes]] = {}
    for rec in records:
        line = canonical_json(rec)
        k = key_of(rec, line)
        part = "part-" + hashlib.blake2b(k.encode(), digest_size=1).hexdigest()[0]
        by_part.setdefault(part, {})[k] = line
    out_dir.mkdir(parents=True, exist_ok=True)
    old_lines: dict[str, bytes] = {}
    old = {p.stem: p for p in out_dir.glob("*.ndjson")}
    for p in old.values():
        for line in p.read_bytes().splitlines():
            old_lines[key_of(orjson.loads(line), line)] = line
    partitions = {}
    for part in sorted(by_part):
        rows = by_part[part]
        data = b"".join(rows[k] + b"\n" for k in sorted(rows))
        for k, line in rows.items():
            prev = old_lines.get(k)
            report.added += prev is None
            report.changed += prev is not None and prev != line
        report.records += len(rows)
        target = out_dir / f"{part}.ndjson"
        _write_if_changed(target, data)
        partitions[part] = {"items": len(rows), "sha256": sha256_bytes(data)}
    new_keys = {k for rows in by_part.values() for k in rows}
    report.removed = sum(1 for k in old_lines if k not in new_keys)
    for name, p in old.items():
        if name not in partitions:
            p.unlink()
    meta = {
        "source": {"type": "http-json", **q.describe(), **spec},
        "counts": {"records": report.records, "partitions": len(partitions), "quarantined": len(report.quarantined)},
        "partitions": partitions,
    }
    meta["source"].pop("collection", None)
    meta["source"].pop("window", None)
    data = pretty_json(meta)
    target = out_dir / "snapshot.json"
    _write_if_changed(target, data)
    (ck.parent / "report.json").unlink(missing_ok=True)
    return report
