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
import re
import shutil
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from urllib.parse import urljoin

import orjson

from stacgit.errors import ConfigError, SourceError
from stacgit.fileio import sorted_unique
from stacgit.hashing import canonical_json, digest_obj, pretty_json
from stacgit.mapping import format_datetime, parse_rfc3339
from stacgit.project import CollectionSpec, Project, check_id
from stacgit.sources.stacapi import ApiQuery, FetchError, Http, Window, WindowTooBig, fetch_window, probe_method, split_windows

_TIME_FIELDS = ("datetime", "start_datetime", "end_datetime", "created", "updated")
_UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
QUARANTINE_EXAMPLES = 100
CHECKPOINT_FORMAT = 2
"""Bumped when the lines of a window checkpoint change shape: older checkpoints are refetched."""


@dataclass
class CollectionReport:
    records: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    complete: bool = True
    quarantined: int = 0
    quarantined_examples: list[dict] = field(default_factory=list)
    failed_windows: list[dict] = field(default_factory=list)
    windows: int = 0
    windows_resumed: int = 0
    requests: int = 0
    method: str = ""
    notes: list[str] = field(default_factory=list)  # workarounds for server quirks, as applied

    def quarantine(self, ident, why: str) -> None:
        """Count an invalid record; the first ``QUARANTINE_EXAMPLES`` are kept for the report."""
        self.quarantined += 1
        if len(self.quarantined_examples) < QUARANTINE_EXAMPLES:
            self.quarantined_examples.append({"id": ident, "reason": why})

    def to_dict(self) -> dict:
        return {
            "records": self.records,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "complete": self.complete,
            "quarantined": self.quarantined,
            "quarantined_examples": self.quarantined_examples[:10],
            "failed_windows": self.failed_windows,
            "windows": self.windows,
            "windows_resumed": self.windows_resumed,
            "requests": self.requests,
            "method": self.method,
            "notes": self.notes,
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
    if start and not (isinstance(start, str) and _UTC_TIME.fullmatch(start)):
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


def keyed_line(item: dict, numeric: tuple[str, ...]) -> bytes:
    """One checkpoint line for an upstream item: ``<partition>TAB<id>TAB<canonical JSON>LF``,
    normalised; or ``!TABTAB<{"id", "reason"}>LF`` when it is quarantined. Partitions and ids
    hold no control characters (``normalise`` checks), so the line splits unambiguously."""
    ident = item.get("id") if isinstance(item, dict) else None
    item, why = normalise(item, numeric)
    if item is None:
        return b"!\t\t" + orjson.dumps({"id": ident if isinstance(ident, str) else None, "reason": why}) + b"\n"
    return b"%s\t%s\t%s\n" % (partition_of(item).encode(), item["id"].encode(), canonical_json(item))


async def snapshot_collection(project: Project, coll: CollectionSpec, env: dict, transport=None) -> CollectionReport:
    if coll.source.type == "http-json":
        return await snapshot_http_json(project, coll, env, transport)
    q = ApiQuery.from_source(coll.source.api or {})
    qdigest = digest_obj([CHECKPOINT_FORMAT, q.describe()])
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
        return _finish_incomplete(ck, report)
    _write_snapshot(coll, q, report, ck, out_dir)
    shutil.rmtree(ck, ignore_errors=True)
    (ck.parent / "report.json").unlink(missing_ok=True)
    return report


def _finish_incomplete(ck: Path, report: CollectionReport) -> CollectionReport:
    (ck.parent / "report.json").write_bytes(pretty_json({"complete": False, "failed_windows": report.failed_windows}))
    return report


def _item_id(line: bytes) -> bytes:
    return orjson.loads(line)["id"].encode()


def _write_snapshot(coll: CollectionSpec, q: ApiQuery, report: CollectionReport, ck: Path, out_dir: Path) -> None:
    """Split the checkpointed window lines into per-partition files, then write each partition
    sorted by id (``write_partitions``) and ``snapshot.json``."""
    tmp = ck / "partitions"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with _Spool(tmp) as spool:
        for wfile in sorted(ck.glob("*.ndjson")):
            with open(wfile, "rb") as f:
                for line in f:
                    name, rest = line.split(b"\t", 1)
                    if name == b"!":
                        why = orjson.loads(rest[1:])
                        report.quarantine(why["id"], why["reason"])
                    else:
                        spool.add(name.decode(), rest)
    partitions = write_partitions(tmp, out_dir, report, _item_id)
    meta = {
        "source": {"type": coll.source.type, **q.describe()},
        "method": report.method,
        "counts": {"items": report.records, "partitions": len(partitions), "quarantined": report.quarantined},
        "partitions": partitions,
        "quarantined": report.quarantined_examples,
    }
    _write_if_changed(out_dir / "snapshot.json", pretty_json(meta))


class _Spool:
    """Per-partition files of ``key<TAB>line`` lines, appended to in any order."""

    def __init__(self, root: Path):
        self.root = root
        self.handles: dict[str, object] = {}

    def add(self, name: str, keyed: bytes) -> None:
        h = self.handles.get(name)
        if h is None:
            h = self.handles[name] = open(self.root / f"{name}.keyed", "wb")
        h.write(keyed)

    def __enter__(self) -> "_Spool":
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles.values():
            h.close()


def write_partitions(spool: Path, out_dir: Path, report: CollectionReport, key_of) -> dict[str, dict]:
    """Write ``out_dir/<name>.ndjson`` for each ``spool/<name>.keyed`` (lines sorted by key,
    one per key), remove partitions that are no longer there, and count records, added,
    changed and removed against the files already there. Returns ``{name: {"items", "sha256"}}``.

    Memory does not grow with the partition: the keyed lines are sorted on disk
    (``fileio.sorted_unique``), and the previous file is compared while the new one is
    written, line by line (``key_of(line)`` parses a previous line only where the two differ).
    An unchanged partition keeps its file untouched."""
    out_dir.mkdir(parents=True, exist_ok=True)
    old = {p.stem: p for p in out_dir.glob("*.ndjson")}
    new = {p.stem: p for p in spool.glob("*.keyed")}
    scratch = spool / "runs"
    scratch.mkdir(exist_ok=True)
    partitions: dict[str, dict] = {}
    gone: set[bytes] = set()  # keys that left a partition; memory follows the change, not the snapshot
    entered: set[bytes] = set()  # keys that entered a partition
    temps: list[Path] = []
    moves: list[tuple[Path, Path | None]] = []  # (file, its new name; None: delete it), applied at the end
    try:
        for name in sorted(set(old) | set(new)):
            target = out_dir / f"{name}.ndjson"
            rows = sorted_unique(new[name], scratch) if name in new else iter(())
            tmp = target.with_name(f".{target.name}.tmp")
            temps.append(tmp)
            digest, count = hashlib.sha256(), 0
            cmp = _Compare(old.get(name), key_of, remember=bool(old))  # on a first snapshot everything is new
            try:
                with open(tmp, "wb") as out:
                    for key, line in rows:
                        out.write(line)
                        digest.update(line)
                        count += 1
                        cmp.take(key, line)
                cmp.finish()
            finally:
                cmp.close()
            report.records += count
            report.changed += cmp.changed
            gone.update(cmp.gone)
            entered.update(cmp.added)
            if not old:
                report.added += cmp.n_added
            if count == 0 or cmp.same:
                moves.append((tmp, None))
            else:
                moves.append((tmp, target))
            if count == 0:
                moves.append((target, None))
            if count:
                partitions[name] = {"items": count, "sha256": digest.hexdigest()}
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    for path, target in moves:  # every partition is ready: now change the files
        if target is None:
            path.unlink(missing_ok=True)
        else:
            os.replace(path, target)
    moved = gone & entered  # e.g. an item whose datetime moved it to another month: changed, not added/removed
    report.added += len(entered - moved)
    report.removed, report.changed = len(gone - moved), report.changed + len(moved)
    return partitions


class _Compare:
    """Walks a partition's previous file alongside the new sorted lines."""

    def __init__(self, path: Path | None, key_of, remember: bool):
        self.key_of = key_of
        self.remember = remember  # keep the added keys (to tell moves from additions), or only count them
        self.n_added = 0
        self.f = open(path, "rb") if path is not None else None
        self.same = path is not None
        self.changed = 0
        self.added: list[bytes] = []
        self.gone: list[bytes] = []
        self.prev_key: bytes | None = None
        self.lineno = 0
        self._next_old()

    def _next_old(self) -> None:
        line = self.f.readline() if self.f is not None else b""
        self.lineno += 1
        if line and not line.endswith(b"\n"):
            line += b"\n"
        self.old, self.old_key = line, None

    def _old_key(self) -> bytes:
        if self.old_key is None:
            try:
                self.old_key = self.key_of(self.old)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise SourceError(f"{self.f.name}:{self.lineno}: not a record of this snapshot ({exc}); restore the file from git or remove it and snapshot again") from None
            if self.prev_key is not None and self.old_key < self.prev_key:
                raise SourceError(f"{self.f.name}:{self.lineno}: lines are not sorted by id; restore the file from git or remove it and snapshot again")
        return self.old_key

    def _pass_old(self, key: bytes) -> None:
        self.prev_key = key
        self._next_old()

    def take(self, key: bytes, line: bytes) -> None:
        while True:
            if not self.old:
                self._add(key)
                return
            if self.old == line:  # the same bytes: the same key
                self._pass_old(key)
                return
            self.same = False
            old_key = self._old_key()
            if old_key == key:
                self.changed += 1
                self._pass_old(key)
                return
            if old_key > key:
                self._add(key)
                return
            self.gone.append(old_key)
            self._pass_old(old_key)

    def _add(self, key: bytes) -> None:
        self.same = False
        self.n_added += 1
        if self.remember:
            self.added.append(key)

    def finish(self) -> None:
        while self.old:
            self.same = False
            self.gone.append(self._old_key())
            self._pass_old(self.old_key)

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


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
    build skips it, while a changed file re-maps it. Records stream to per-partition files as
    pages arrive; memory does not grow with their number."""
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

    def key_of(rec: dict, line: bytes) -> bytes:
        k = key_expr.search(rec) if key_expr is not None else None
        return str(k).encode() if k is not None else line

    http = Http(q, env, transport)
    sem = asyncio.Semaphore(max(1, q.concurrency))

    async def stamp(rec: dict) -> None:
        target = head_expr.search(rec)
        if isinstance(target, str) and target.startswith(("http://", "https://")):
            async with sem:
                rec["_remote"] = {"href": target, "etag": await http.etag(target)}

    shutil.rmtree(ck, ignore_errors=True)
    spool_dir = ck / "partitions"
    spool_dir.mkdir(parents=True)
    try:
        with _Spool(spool_dir) as spool:
            url, params, seen = q.url, dict(spec.get("params") or {}), set()
            while True:
                if len(seen) >= q.max_pages:
                    raise FetchError(f"{url}: more than {q.max_pages} pages")
                seen.add(url)
                page = await http.json("GET", url, params or None, allow_list=True)
                found = records_expr.search(page)
                if not isinstance(found, list):
                    raise FetchError(f"{url}: 'records' ({spec.get('records', '@')}) is not a list in the response")
                records = []
                for rec in found:
                    if isinstance(rec, dict):
                        records.append(rec)
                    else:
                        report.quarantine(None, "not a JSON object")
                if head_expr is not None:
                    await asyncio.gather(*(stamp(r) for r in records))
                for rec in records:
                    line = canonical_json(rec)
                    key = key_of(rec, line)
                    if any(b < 0x20 for b in key):
                        report.quarantine(key.decode(errors="replace")[:80], "key contains a control character")
                        continue
                    spool.add("part-" + hashlib.blake2b(key, digest_size=1).hexdigest()[0], key + b"\t" + line + b"\n")
                nxt = next_expr.search(page) if next_expr else None
                if not nxt:
                    break
                nxt = urljoin(url, str(nxt))
                if nxt in seen:
                    raise FetchError(f"{nxt}: next page repeats an earlier one (looping next links)")
                url, params = nxt, None
    except SourceError as exc:
        report.complete = False
        report.failed_windows.append({"window": "all", "url": q.url, "error": str(exc)})
        shutil.rmtree(spool_dir, ignore_errors=True)
        return _finish_incomplete(ck, report)
    finally:
        report.requests = http.requests
        await http.close()
    partitions = write_partitions(spool_dir, out_dir, report, lambda line: key_of(orjson.loads(line), line[:-1]))
    meta = {
        "source": {"type": "http-json", **q.describe(), **spec},
        "counts": {"records": report.records, "partitions": len(partitions), "quarantined": report.quarantined},
        "partitions": partitions,
    }
    meta["source"].pop("collection", None)
    meta["source"].pop("window", None)
    _write_if_changed(out_dir / "snapshot.json", pretty_json(meta))
    shutil.rmtree(ck, ignore_errors=True)
    (ck.parent / "report.json").unlink(missing_ok=True)
    return report
