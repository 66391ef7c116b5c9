"""Snapshots of plain JSON APIs (``source: {type: http-json}``): records found with JMESPath in
each response, pages followed by a ``next`` expression, written like STAC API snapshots."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from urllib.parse import urljoin

import orjson

from stacgit.errors import SourceError
from stacgit.hashing import canonical_json, digest_obj, pretty_json
from stacgit.project import CollectionSpec, Project
from stacgit.sources.stacapi import ApiQuery, FetchError, Http
from stacgit.snapshot.items import CollectionReport, dirs, finish_incomplete
from stacgit.snapshot.partitions import Spool, write_if_changed, write_partitions


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
    out_dir, ck = dirs(project, coll, digest_obj([q.describe(), spec]))
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
        with Spool(spool_dir) as spool:
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
        return finish_incomplete(ck, report)
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
    write_if_changed(out_dir / "snapshot.json", pretty_json(meta))
    shutil.rmtree(ck, ignore_errors=True)
    (ck.parent / "report.json").unlink(missing_ok=True)
    return report
