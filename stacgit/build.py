"""Execute one build unit. Three kinds, run in this order by doit:

* ``build_shard``      map the records of one source file into item bodies (kept in a per-shard
                       cache file under .stacgit/cache/), re-mapping only records whose bytes or
                       mapping changed; records what it found in the state store.
* ``build_collection`` decide the layout of the collection's items, write the items whose body
                       or place changed, delete the ones that disappeared, write sub-catalogs and
                       collection.json when their bytes change.
* ``build_catalog``    write catalog.json, manifest.json and failed.ndjson; remove the outputs
                       of collections that are no longer configured.

Files are written (atomically) before the state rows that describe them are committed; paths
are registered in ``pending`` first so that a killed build is undone precisely.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson

from stacgit import state as st
from stacgit.errors import BuildError, MappingError, PlanError, StacgitError
from stacgit.hashing import canonical_json, digest_bytes, digest_file, digest_obj, pretty_json, sha256_bytes
from stacgit.layout import compute_layout
from stacgit.mapping import item_time_range
from stacgit.plan import catalog_input_digest, collection_input_digest, get_mapping
from stacgit.project import CatalogSpec, CollectionSpec, Project, check_id
from stacgit.sources import RecordError, iter_records
from stacgit.writers import AtomicWriter, link, render_catalog, render_collection, render_item

PARALLEL_WRITE_MIN = 20_000
"""Collections writing at least this many items spread the writes over ``jobs`` processes."""


@dataclass(frozen=True)
class BuildOptions:
    strict: bool = False
    run_id: str = ""
    jobs: int = 1


def location(shard: str, loc: str) -> str:
    """``path:12`` for line-based locations, ``path (element 3)`` otherwise."""
    if loc.startswith("line "):
        return f"{shard}:{loc[5:]}"
    return f"{shard} ({loc})"


def failure_message(where: str, field: str, reason: str, more: int = 0) -> str:
    """One line for a record that failed to map: ``file:line: field: reason (and N more)``."""
    return f"{where}: {field}: {reason}" + (f" (and {more} more)" if more else "")


def cache_dir(project: Project, catalog_id: str) -> Path:
    return project.state_dir / "cache" / catalog_id


def _shard_key(coll: CollectionSpec, shard: str) -> str:
    return digest_obj([coll.catalog_id, coll.id, shard])[:20]


def _record_digest(raw: bytes | None, rec: dict) -> str:
    if raw is not None:
        return digest_bytes(raw)
    return digest_bytes(orjson.dumps(rec, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str))


def _save_report(con, run_id: str, unit: str, report: dict) -> None:
    if run_id:
        con.execute("INSERT OR REPLACE INTO reports VALUES (?, ?, ?)", (run_id, unit, orjson.dumps(report).decode()))


# --------------------------------------------------------------------------- phase A: shards


def build_shard(project: Project, coll: CollectionSpec, shard: str, options: BuildOptions) -> dict:
    con = st.connect(project.state_dir)
    mapping = get_mapping(project, coll)
    config_digest = coll.config_digest(mapping.digest)
    abs_path = str(project.root / shard)
    try:
        stat = os.stat(abs_path)
    except FileNotFoundError:
        raise BuildError(f"{shard}: source file disappeared during the build") from None
    file_digest = digest_file(abs_path)

    cdir = cache_dir(project, coll.catalog_id)
    cdir.mkdir(parents=True, exist_ok=True)
    key = _shard_key(coll, shard)
    prior_row = con.execute(
        "SELECT config_digest, cache_file FROM shards WHERE catalog=? AND collection=? AND shard=?",
        (coll.catalog_id, coll.id, shard),
    ).fetchone()
    old_cache_path = str(cdir / prior_row[1]) if prior_row and prior_row[1] else None
    for stray in glob.glob(str(cdir / f"{key}-*.bin")):
        if stray != old_cache_path:
            os.unlink(stray)
    prior: dict[str, tuple] = {}
    old_cache = None
    if prior_row and prior_row[0] == config_digest and old_cache_path and os.path.exists(old_cache_path):
        for r in con.execute(
            "SELECT record_digest, item_id, body_digest, start, end, w, s, e, n, cache_off, cache_len "
            "FROM records WHERE catalog=? AND collection=? AND shard=?",
            (coll.catalog_id, coll.id, shard),
        ):
            prior[r[0]] = r[1:]
        old_cache = open(old_cache_path, "rb")

    new_cache_name = f"{key}-{uuid.uuid4().hex[:12]}.bin"
    new_cache_path = cdir / new_cache_name
    rows: list[tuple] = []
    failures: list[tuple] = []
    seen: dict[str, str] = {}
    mapped = reused = 0
    fmt = project.source_format(coll, shard)
    render = mapping.render
    try:
        with open(new_cache_path, "wb") as cache:
            offset = 0
            for loc, rec, raw in iter_records(abs_path, shard, fmt, coll.source.delimiter):
                if isinstance(rec, RecordError):
                    failures.append((loc, "record", rec.reason, None))
                    continue
                rdig = _record_digest(raw, rec)
                hit = prior.get(rdig)
                if hit is not None:
                    item_id, body_digest, start, end, w, s, e, n, off, ln = hit
                    old_cache.seek(off)
                    body = old_cache.read(ln)
                    reused += 1
                else:
                    item_id = None
                    try:
                        item = render(rec, coll.id, coll.defaults)
                        item_id = item["id"]
                        why = check_id(item_id, "item id")
                        if why is not None:
                            raise MappingError("id", why)
                        start, end = item_time_range(item)
                        w, s, e, n = item.get("bbox") or (None, None, None, None)
                    except MappingError as exc:
                        failures.append((loc, exc.field, exc.reason, item_id if isinstance(item_id, str) else None))
                        continue
                    body = canonical_json(item)
                    body_digest = digest_bytes(body)
                    mapped += 1
                if item_id in seen:
                    raise PlanError(
                        f"duplicate item id '{item_id}' in collection {coll.key}: {location(shard, seen[item_id])} and {location(shard, loc)}"
                    )
                seen[item_id] = loc
                cache.write(body)
                rows.append((coll.catalog_id, coll.id, shard, item_id, loc, rdig, body_digest, start, end, w, s, e, n, offset, len(body)))
                offset += len(body)
    except BaseException:
        new_cache_path.unlink(missing_ok=True)
        raise
    finally:
        if old_cache is not None:
            old_cache.close()

    if failures and options.strict:
        new_cache_path.unlink(missing_ok=True)
        loc, field, reason, _ = failures[0]
        raise BuildError(failure_message(location(shard, loc), field, reason, len(failures) - 1))

    result_digest = digest_obj(
        [config_digest, [(r[3], r[6], r[7], r[8], r[9], r[10], r[11], r[12]) for r in rows], failures]
    )
    report = {"unit": "shard", "shard": shard, "records": len(rows) + len(failures), "mapped": mapped, "reused": reused, "failed": len(failures)}
    with st.Transaction(con):
        where = (coll.catalog_id, coll.id, shard)
        con.execute("DELETE FROM records WHERE catalog=? AND collection=? AND shard=?", where)
        con.execute("DELETE FROM failures WHERE catalog=? AND collection=? AND shard=?", where)
        con.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        con.executemany(
            "INSERT INTO failures VALUES (?,?,?,?,?,?,?)",
            [(coll.catalog_id, coll.id, shard, loc, field, reason, iid) for loc, field, reason, iid in failures],
        )
        con.execute(
            "INSERT OR REPLACE INTO shards VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (*where, stat.st_size, stat.st_mtime_ns, file_digest, config_digest, result_digest, new_cache_name, len(rows), len(failures)),
        )
        _save_report(con, options.run_id, f"build:{coll.key}/{shard}", report)
    if old_cache_path and old_cache_path != str(new_cache_path):
        try:
            os.unlink(old_cache_path)
        except FileNotFoundError:
            pass
    return report


# --------------------------------------------------------------------------- phase B: collections


def _recover_pending(con, writer: AtomicWriter, catalog: str, collection: str) -> None:
    """Undo what a killed build may have half done: forget and remove its pending paths."""
    pend = [r[0] for r in con.execute("SELECT path FROM pending WHERE catalog=? AND collection=?", (catalog, collection))]
    if not pend:
        return
    for path in pend:
        writer.delete(path, stop_at=collection)
    with st.Transaction(con):
        con.executemany("DELETE FROM outputs WHERE catalog=? AND path=?", [(catalog, p) for p in pend])
        con.execute("DELETE FROM pending WHERE catalog=? AND collection=?", (catalog, collection))


def display_datetime(sortable: str) -> str:
    head, frac = sortable[:-1].split(".")
    frac = frac.rstrip("0")
    return f"{head}.{frac}Z" if frac else f"{head}Z"


def _item_path(coll: CollectionSpec, segs: tuple[str, ...], item_id: str) -> str:
    base = "/".join((coll.id, *segs))
    return f"{base}/{coll.layout.item_path.format(id=item_id)}"


def _node_path(coll: CollectionSpec, segs: tuple[str, ...]) -> str:
    if not segs:
        return f"{coll.id}/collection.json"
    return "/".join((coll.id, *segs, "catalog.json"))


def _write_item_batch(args: tuple) -> list[tuple]:
    """Write items of one or more shards. Runs in the collection task or a worker process."""
    out_dir, tmp_dir, cache_root, jobs = args
    writer = AtomicWriter(Path(out_dir), Path(tmp_dir))
    results = []
    for cache_name, items in jobs:
        with open(os.path.join(cache_root, cache_name), "rb") as f:
            for item_id, off, ln, path, parent, coll_path, body_digest in items:
                f.seek(off)
                body = orjson.loads(f.read(ln))
                data = render_item(body, path, "catalog.json", parent, coll_path)
                writer.write(path, data)
                results.append((path, item_id, body_digest, sha256_bytes(data), len(data)))
    return results


def build_collection(project: Project, coll: CollectionSpec, shards: list[str], options: BuildOptions) -> dict:
    con = st.connect(project.state_dir)
    cat_id = coll.catalog_id
    out_dir = project.build_dir / cat_id
    writer = AtomicWriter(out_dir, project.state_dir / "tmp")
    _recover_pending(con, writer, cat_id, coll.id)

    cache_files = dict(
        con.execute("SELECT shard, cache_file FROM shards WHERE catalog=? AND collection=?", (cat_id, coll.id)).fetchall()
    )
    current = set(shards)
    gone_shards = sorted(s for s in cache_files if s not in current)
    records: dict[str, tuple] = {}
    for r in con.execute(
        "SELECT shard, item_id, loc, body_digest, start, end, w, s, e, n, cache_off, cache_len "
        "FROM records WHERE catalog=? AND collection=?",
        (cat_id, coll.id),
    ):
        if r[0] not in current:
            continue
        prev = records.get(r[1])
        if prev is not None:
            a, b = sorted([location(prev[0], prev[2]), location(r[0], r[2])])
            raise PlanError(f"duplicate item id '{r[1]}' in collection {coll.key}: {a} and {b}")
        records[r[1]] = r

    placement, nodes = compute_layout([(i, r[4]) for i, r in records.items()], coll.layout.split, coll.layout.max_items)
    coll_path = f"{coll.id}/collection.json"
    existing = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT path, item_id, kind, body_digest, sha256, size FROM outputs WHERE catalog=? AND collection=?",
            (cat_id, coll.id),
        )
    }

    # items to write, grouped by shard cache file
    desired: set[str] = set()
    batches: dict[str, list[tuple]] = defaultdict(list)
    n_write = 0
    for item_id, r in records.items():
        segs = placement[item_id]
        path = _item_path(coll, segs, item_id)
        desired.add(path)
        old = existing.get(path)
        if old is not None and old[0] == item_id and old[2] == r[3]:
            continue
        batches[cache_files[r[0]]].append((item_id, r[10], r[11], path, _node_path(coll, segs), coll_path, r[3]))
        n_write += 1

    # sub-catalogs and collection.json
    docs: dict[str, bytes] = {}
    for node in nodes:
        path = _node_path(coll, node.segments)
        if node.children:
            children = [
                link("child", f"./{c}/catalog.json", title="/".join((*node.segments, c)))
                for c in node.children
            ]
        else:
            children = [
                link("item", "./" + coll.layout.item_path.format(id=i), "application/geo+json")
                for i in node.items
            ]
        if node.segments:
            parent_path = _node_path(coll, node.segments[:-1])
            docs[path] = render_catalog(
                f"{coll.id}-{'-'.join(node.segments)}",
                node.title,
                f"Items of {coll.id} in {node.title}",
                path,
                "catalog.json",
                parent_path,
                children,
            )
        else:
            docs[path] = render_collection(coll.id, coll.meta, path, "catalog.json", _extent(records), children)
    desired.update(docs)
    doc_writes = {p: d for p, d in docs.items() if existing.get(p, (None,) * 5)[3] != sha256_bytes(d) or not _same_bytes(out_dir / p, d)}
    deletes = sorted(p for p in existing if p not in desired)
    deleted_items = sum(1 for p in deletes if existing[p][1] == "item")

    all_paths = [it[3] for batch in batches.values() for it in batch] + list(doc_writes) + deletes
    if all_paths:
        with st.Transaction(con):
            con.executemany("INSERT INTO pending VALUES (?,?,?)", [(cat_id, coll.id, p) for p in all_paths])

    cache_root = str(cache_dir(project, cat_id))
    written = _write_items(str(out_dir), str(project.state_dir / "tmp"), cache_root, batches, n_write, options.jobs)
    for path, data in doc_writes.items():
        writer.write(path, data)
    for path in deletes:
        writer.delete(path, stop_at=coll.id)

    input_digest = collection_input_digest(con, coll, shards)
    report = {
        "unit": "collection",
        "collection": coll.key,
        "items": len(records),
        "items_written": len(written),
        "items_deleted": deleted_items,
        "files_written": len(written) + len(doc_writes),
        "files_deleted": len(deletes),
    }
    with st.Transaction(con):
        con.executemany(
            "INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?)",
            [(cat_id, p, coll.id, iid, "item", bd, sha, size) for p, iid, bd, sha, size in written],
        )
        con.executemany(
            "INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?)",
            [(cat_id, p, coll.id, None, "catalog", None, sha256_bytes(d), len(d)) for p, d in doc_writes.items()],
        )
        con.executemany("DELETE FROM outputs WHERE catalog=? AND path=?", [(cat_id, p) for p in deletes])
        for s in gone_shards:
            for table in ("shards", "records", "failures"):
                con.execute(f"DELETE FROM {table} WHERE catalog=? AND collection=? AND shard=?", (cat_id, coll.id, s))
        con.execute("DELETE FROM pending WHERE catalog=? AND collection=?", (cat_id, coll.id))
        con.execute("INSERT OR REPLACE INTO aggregates VALUES (?,?,?)", (cat_id, coll.id, input_digest))
        _save_report(con, options.run_id, f"collection:{coll.key}", report)
    for s in gone_shards:
        if cache_files.get(s):
            Path(cache_root, cache_files[s]).unlink(missing_ok=True)
    return report


def _same_bytes(path: Path, data: bytes) -> bool:
    """Aggregate documents are few: compare them with the disk so hand edits get repaired."""
    try:
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


def _write_items(out_dir: str, tmp_dir: str, cache_root: str, batches: dict, n_write: int, jobs: int) -> list[tuple]:
    if not batches:
        return []
    work = sorted(batches.items())
    if jobs <= 1 or n_write < PARALLEL_WRITE_MIN:
        return _write_item_batch((out_dir, tmp_dir, cache_root, work))
    chunks = [work[i::jobs] for i in range(jobs)]
    results: list[tuple] = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for part in pool.map(_write_item_batch, [(out_dir, tmp_dir, cache_root, c) for c in chunks if c]):
            results.extend(part)
    return results


def _extent(records: dict[str, tuple]) -> dict:
    if not records:
        return {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]}, "temporal": {"interval": [[None, None]]}}
    starts = min(r[4] for r in records.values())
    ends = max(r[5] for r in records.values())
    boxes = [r[6:10] for r in records.values() if r[6] is not None]
    if boxes:
        bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    else:
        bbox = [-180.0, -90.0, 180.0, 90.0]
    return {
        "spatial": {"bbox": [bbox]},
        "temporal": {"interval": [[display_datetime(starts), display_datetime(ends)]]},
    }


# --------------------------------------------------------------------------- catalog root


def build_catalog(project: Project, cat: CatalogSpec, options: BuildOptions) -> dict:
    con = st.connect(project.state_dir)
    out_dir = project.build_dir / cat.id
    writer = AtomicWriter(out_dir, project.state_dir / "tmp")
    _recover_pending(con, writer, cat.id, "")
    configured = {c.id for c in cat.collections}

    # collections removed from catalog.yaml: remove their outputs and state
    known = {r[0] for r in con.execute("SELECT DISTINCT collection FROM outputs WHERE catalog=? AND collection != ''", (cat.id,))}
    known |= {r[0] for r in con.execute("SELECT DISTINCT collection FROM shards WHERE catalog=?", (cat.id,))}
    removed = sorted(known - configured)
    removed_items = 0
    for cid in removed:
        removed_items += con.execute("SELECT COUNT(*) FROM outputs WHERE catalog=? AND collection=? AND kind='item'", (cat.id, cid)).fetchone()[0]
        shutil.rmtree(out_dir / cid, ignore_errors=True)
        caches = [r[0] for r in con.execute("SELECT cache_file FROM shards WHERE catalog=? AND collection=?", (cat.id, cid))]
        with st.Transaction(con):
            for table in ("shards", "records", "failures", "outputs", "pending", "aggregates"):
                con.execute(f"DELETE FROM {table} WHERE catalog=? AND collection=?", (cat.id, cid))
        for c in caches:
            (cache_dir(project, cat.id) / c).unlink(missing_ok=True)

    children = [
        link("child", f"./{c.id}/collection.json", title=c.meta.get("title", c.id)) for c in cat.collections
    ]
    root = render_catalog(cat.id, cat.meta.get("title"), cat.meta["description"], "catalog.json", "catalog.json", None, children, cat.links)
    files: dict[str, dict] = {}
    for path, sha, size in con.execute("SELECT path, sha256, size FROM outputs WHERE catalog=? AND collection != ''", (cat.id,)):
        files[path] = {"sha256": sha, "size": size}
    files["catalog.json"] = {"sha256": sha256_bytes(root), "size": len(root)}
    manifest = pretty_json({"catalog": cat.id, "files": files, "version": 1})

    failures = [
        {"collection": c, "source": s, "location": location(s, loc), "field": f, "reason": r, "item_id": i}
        for c, s, loc, f, r, i in con.execute(
            "SELECT collection, shard, loc, field, reason, item_id FROM failures WHERE catalog=? ORDER BY collection, shard, rowid",
            (cat.id,),
        )
    ]
    written = 0
    prior_root = con.execute("SELECT sha256 FROM outputs WHERE catalog=? AND path='catalog.json'", (cat.id,)).fetchone()
    with st.Transaction(con):
        con.executemany("INSERT INTO pending VALUES (?,?,?)", [(cat.id, "", p) for p in ("catalog.json", "manifest.json")])
    if prior_root is None or prior_root[0] != files["catalog.json"]["sha256"] or not (out_dir / "catalog.json").exists():
        writer.write("catalog.json", root)
        written += 1
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.exists() or manifest_path.read_bytes() != manifest:
        writer.write("manifest.json", manifest)
        written += 1
    failed_path = out_dir / "failed.ndjson"
    if failures:
        writer.write("failed.ndjson", b"".join(canonical_json(f) + b"\n" for f in failures))
    else:
        failed_path.unlink(missing_ok=True)
    report = {"unit": "catalog", "catalog": cat.id, "files_written": written, "failed": len(failures), "removed_collections": removed, "items_deleted": removed_items}
    with st.Transaction(con):
        con.execute(
            "INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?)",
            (cat.id, "catalog.json", "", None, "root", None, files["catalog.json"]["sha256"], files["catalog.json"]["size"]),
        )
        con.execute("DELETE FROM pending WHERE catalog=? AND collection=''", (cat.id,))
        con.execute("INSERT OR REPLACE INTO aggregates VALUES (?,?,?)", (cat.id, "", catalog_input_digest(con, cat)))
        _save_report(con, options.run_id, f"catalog:{cat.id}", report)
    return report


def remove_catalog_output(project: Project, catalog_id: str) -> None:
    """Forget a catalog entirely: its build directory, cache and state."""
    shutil.rmtree(project.build_dir / catalog_id, ignore_errors=True)
    shutil.rmtree(cache_dir(project, catalog_id), ignore_errors=True)
    st.drop_catalog(st.connect(project.state_dir), catalog_id)


__all__ = ["BuildOptions", "build_shard", "build_collection", "build_catalog", "StacgitError"]
