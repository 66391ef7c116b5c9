"""Execute one build unit. Three kinds, run in this order by doit:

* ``build_shard``      (``stacgit.engine.shard``) map the records of one source file into item
                       bodies (kept in a per-shard cache file under .stacgit/cache/), re-mapping
                       only records whose bytes or mapping changed.
* ``build_collection`` decide the layout of the collection's items, write the items whose body
                       or place changed, delete the ones that disappeared, write sub-catalogs and
                       collection.json when their bytes change.
* ``build_catalog``    write catalog.json, manifest.json and failed.ndjson; remove the outputs
                       of collections that are no longer configured.

Files are written (atomically) before the state rows that describe them are committed; paths
are registered in ``pending`` first so that a killed build is undone precisely.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson

from stacgit import state as st
from stacgit.engine.shard import BuildOptions, build_shard, cache_dir, failure_message, find_location, location
from stacgit.errors import BuildError, PlanError, StacgitError
from stacgit.hashing import canonical_json, digest_bytes, digest_obj, pretty_json, sha256_bytes
from stacgit.layout import compute_layout
from stacgit.gitinfo import commit_times
from stacgit.patching import Applied, BodyReader, apply_document_patches, apply_patches, updated_time
from stacgit.exports import PARTITION_WIDTH, catalog_exports, parquet_assets, partition_key, pieces_root
from stacgit.fileio import map_file
from stacgit.extensions import apply_to_collection
from stacgit.plan import catalog_input_digest, collection_input_digest, extension_uses, patch_fingerprint
from stacgit.project import CatalogSpec, CollectionSpec, Project
from stacgit.verdicts import open_validator, validate_catalog, validate_collection
from stacgit.stac import GEOJSON
from stacgit.state.reports import save_report
from stacgit.writers import AtomicWriter, link, render_catalog, render_collection, same_content, splice_links

PARALLEL_WRITE_MIN = 20_000
"""Collections writing at least this many items spread the writes over ``jobs`` processes."""


def patch_location(patch_key: str, op_index: int | None) -> str:
    """``patches/x.yaml (document 2, op 1)`` from a patch key ``patches/x.yaml#2``."""
    file, _, index = patch_key.rpartition("#")
    return f"{file} (document {index}" + (f", op {op_index})" if op_index is not None else ")")


def patch_reason(item_id: str | None, reason: str) -> str:
    return f"item '{item_id}': {reason}" if item_id is not None else f"collection document: {reason}"


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
        con.execute("UPDATE aggregates SET manifest=NULL WHERE catalog=? AND collection=?", (catalog, collection))  # its fragment


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
            for item_id, off, ln, path, parent, coll_path, body_digest, fresh in items:
                f.seek(off)
                data = splice_links(f.read(ln), path, "catalog.json", parent, coll_path)
                writer.write(path, data, fresh)
                results.append((path, item_id, body_digest, sha256_bytes(data), len(data)))
    return results


def _leaf_of(coll: CollectionSpec, item_path: str) -> tuple[str, ...]:
    """Segments of the (sub-)catalog an item file at ``item_path`` belongs to."""
    parts = item_path.split("/")
    depth = coll.layout.item_path.count("/") + 1
    return tuple(parts[1 : len(parts) - depth])


def _structure_digest(coll: CollectionSpec, nodes: list) -> str:
    return digest_obj([coll.layout.item_path, list(coll.layout.split), coll.layout.max_items, [(n.segments, n.children) for n in nodes]])


def _node_doc(coll: CollectionSpec, node, extent: dict, absent: set[str] = frozenset(), parts: tuple[str, ...] = ()) -> bytes:
    path = _node_path(coll, node.segments)
    if node.children:
        children = [link("child", f"./{c}/catalog.json", title="/".join((*node.segments, c))) for c in node.children]
    else:
        children = [link("item", "./" + coll.layout.item_path.format(id=i), GEOJSON) for i in node.items if i not in absent]
    if not node.segments:
        uses = extension_uses(coll)
        transform = (lambda doc: apply_to_collection(doc, uses)) if uses else None
        meta = coll.meta
        if parts:
            extra = meta["extra_fields"]
            meta = {**meta, "extra_fields": {**extra, "assets": {**(extra.get("assets") or {}), **parquet_assets(parts)}}}
        return render_collection(coll.id, meta, path, "catalog.json", extent, children, transform)
    return render_catalog(
        f"{coll.id}-{'-'.join(node.segments)}",
        node.title,
        f"Items of {coll.id} in {node.title}",
        path,
        "catalog.json",
        _node_path(coll, node.segments[:-1]),
        children,
    )


@dataclass
class _Plan:
    """What a collection task is going to do to its item files."""

    batches: dict[str, list[tuple]]  # cache file -> items rendered from cached bodies
    patched: list[tuple]  # items rendered from patched bodies: (path, parent, body, item_id, body digest, chain digest, fresh)
    deletes: list[str]
    deleted_items: int
    doc_nodes: list  # nodes whose documents are rendered and compared
    absent: set[str]  # items that keep no file this build (a failed patch and nowhere to stay)

    @property
    def n_write(self) -> int:
        return sum(len(b) for b in self.batches.values()) + len(self.patched)


def _read_members(project: Project, con, coll: CollectionSpec, with_details: bool) -> tuple[list, dict]:
    """(item id, start) of every item, checking ids are unique across source files; with
    details also item id -> (shard, body digest, offset, length, start, end, w, s, e, n)."""
    key = (coll.catalog_id, coll.id)
    dup = con.execute(
        "SELECT item_id FROM records WHERE catalog=? AND collection=? GROUP BY item_id HAVING COUNT(*) > 1 ORDER BY item_id LIMIT 1", key
    ).fetchone()
    if dup is not None:
        item_id = dup[0]
        shards = [r[0] for r in con.execute("SELECT shard FROM records WHERE catalog=? AND collection=? AND item_id=?", (*key, item_id))]
        a, b = sorted(find_location(project, coll, s, item_id) for s in shards[:2])
        raise PlanError(f"duplicate item id '{item_id}' in collection {coll.key}: {a} and {b}")
    if not with_details:
        members = con.execute("SELECT item_id, start FROM records WHERE catalog=? AND collection=?", key).fetchall()
        _check_case(project, con, coll, members)
        return members, {}
    details = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT item_id, shard, body_digest, cache_off, cache_len, start, end, w, s, e, n FROM records WHERE catalog=? AND collection=?", key
        )
    }
    members = [(i, d[4]) for i, d in details.items()]
    _check_case(project, con, coll, members)
    return members, details


def _check_case(project: Project, con, coll: CollectionSpec, members: list) -> None:
    """Ids of one collection that differ only in case, from different source files (one file's
    are checked as it is read): their files would collide on case-insensitive file systems."""
    if len({m[0].casefold() for m in members}) == len(members):
        return
    first: dict[str, str] = {}
    for item_id, _ in sorted(members):
        other = first.setdefault(item_id.casefold(), item_id)
        if other != item_id:
            where = [find_location(project, coll, r[0], i) for i in (other, item_id) for r in con.execute(
                "SELECT shard FROM records WHERE catalog=? AND collection=? AND item_id=?", (coll.catalog_id, coll.id, i))]
            raise PlanError(f"item ids '{other}' ({where[0]}) and '{item_id}' ({where[1]}) of collection {coll.key} differ only "
                            "in case: their files would collide on case-insensitive file systems")


def build_collection(project: Project, coll: CollectionSpec, shards: list[str], options: BuildOptions) -> dict:
    """Lay out, write and delete the items of a collection; write its (sub-)catalog documents.

    When the layout tree is the one of the last build (and no patch is involved), items that
    did not change did not move: the items to write and delete are found by a join of the
    state tables, and only the leaf catalogs that gained or lost items are rendered. Otherwise
    every item's place is recomputed and compared (a full pass, still writing only what
    changed). Patches (see ``patching``) are applied here, after mapping.
    """
    con = st.connect(project.state_dir)
    cat_id = coll.catalog_id
    coll_key = (cat_id, coll.id)
    out_dir = project.build_dir / cat_id
    writer = AtomicWriter(out_dir, project.state_dir / "tmp")
    _recover_pending(con, writer, cat_id, coll.id)

    cache_files = dict(con.execute("SELECT shard, cache_file FROM shards WHERE catalog=? AND collection=?", coll_key).fetchall())
    current = set(shards)
    gone_shards = sorted(s for s in cache_files if s not in current)
    if gone_shards:  # inputs, not outputs: their items now count as removed (found below)
        with st.Transaction(con):
            for s in gone_shards:
                for table in ("shards", "records", "failures"):
                    con.execute(f"DELETE FROM {table} WHERE catalog=? AND collection=? AND shard=?", (*coll_key, s))
    cache_root = str(cache_dir(project, cat_id))

    item_patches = project.patches_for(coll)
    doc_patches = project.patches_for(coll, "collection")
    times = commit_times(project.root, sorted({p.file for p in item_patches + doc_patches}))
    was_patched = con.execute(
        "SELECT 1 FROM patch_stats WHERE catalog=? AND collection=? UNION SELECT 1 FROM outputs WHERE catalog=? AND collection=? AND patch_digest IS NOT NULL LIMIT 1",
        (*coll_key, *coll_key),
    ).fetchone()
    patch_mode = bool(item_patches) or was_patched is not None

    members, details = _read_members(project, con, coll, patch_mode)
    applied = Applied()
    prior_items: dict[str, tuple] = {}
    reader = BodyReader(cache_root, cache_files)
    try:
        if patch_mode:
            prior_items = {
                r[0]: r[1:]
                for r in con.execute(
                    "SELECT item_id, path, body_digest, patch_digest FROM outputs WHERE catalog=? AND collection=? AND kind='item'", coll_key
                )
            }

            def needs_body(item_id: str, body_digest: str, chain: str) -> bool:
                old = prior_items.get(item_id)
                return old is None or old[1] != body_digest or old[2] != chain

            items = {i: d[:4] for i, d in details.items()}
            applied = apply_patches(con, coll_key, item_patches, times, options.now, items, reader, needs_body)
            if applied.failed and options.strict:
                item_id, (patch, op, reason) = sorted(applied.failed.items())[0]
                more = f" (and {len(applied.failed) - 1} more)" if len(applied.failed) > 1 else ""
                raise BuildError(f"{patch_location(patch.key, op)}: {patch_reason(item_id, reason)}{more}")
            members = [
                (i, applied.moved[i][0] if i in applied.moved else start)
                for i, start in members
                if i not in applied.deleted and (i not in applied.failed or i in prior_items)
            ]
        placement, nodes = compute_layout(members, coll.layout.split, coll.layout.max_items)
        del members
        structure = _structure_digest(coll, nodes)
        prior = con.execute("SELECT structure FROM aggregates WHERE catalog=? AND collection=?", coll_key).fetchone()
        existing_docs = dict(con.execute("SELECT path, sha256 FROM outputs WHERE catalog=? AND collection=? AND item_id IS NULL AND kind='catalog'", coll_key).fetchall())
        if patch_mode:
            plan_ = _plan_patched(coll, con, placement, nodes, details, prior_items, applied, existing_docs, reader, times, options.now)
        elif prior is not None and prior[0] == structure:
            plan_ = _plan_incremental(coll, con, placement, nodes, cache_files, existing_docs)
        else:
            plan_ = _plan_full(coll, con, placement, nodes, cache_files, existing_docs)
    finally:
        reader.close()

    extent = _extent(con, coll_key) if not patch_mode else _extent_of(details, applied, placement, plan_.absent)
    parts = _partitions(con, coll) if not patch_mode else _partitions_of(coll, details, applied, placement, plan_.absent)
    doc_writes: dict[str, bytes] = {}
    doc_failure = None
    for node in plan_.doc_nodes:
        path = _node_path(coll, node.segments)
        data = _node_doc(coll, node, extent, plan_.absent, parts)
        if not node.segments and doc_patches:
            data, doc_failure = apply_document_patches(data, doc_patches)
            if doc_failure is not None:
                if options.strict:
                    patch, op, reason = doc_failure
                    raise BuildError(f"{patch_location(patch.key, op)}: {patch_reason(None, reason)}")
                if path in existing_docs:
                    continue  # the collection document stays at its last good state
        if existing_docs.get(path) != sha256_bytes(data) or not node.segments and not _same_bytes(out_dir / path, data):
            doc_writes[path] = data

    all_paths = [it[3] for batch in plan_.batches.values() for it in batch] + [w[0] for w in plan_.patched] + list(doc_writes) + plan_.deletes
    if all_paths:
        with st.Transaction(con):
            con.executemany("INSERT INTO pending VALUES (?,?,?)", [(cat_id, coll.id, p) for p in all_paths])

    written = _write_items(str(out_dir), str(project.state_dir / "tmp"), cache_root, plan_.batches, plan_.n_write, options.jobs)
    for path, parent, body, item_id, body_digest, chain, fresh in plan_.patched:
        data = splice_links(body, path, "catalog.json", parent, f"{coll.id}/collection.json")
        writer.write(path, data, fresh)
        written.append((path, item_id, body_digest, sha256_bytes(data), len(data), chain))
    written_paths = {w[0] for w in written}
    deletes = [p for p in plan_.deletes if p not in written_paths]
    for path, data in doc_writes.items():
        writer.write(path, data, fresh=path not in existing_docs)
    for path in deletes:
        writer.delete(path, stop_at=coll.id)

    patch_fp = patch_fingerprint(project, coll)
    input_digest = collection_input_digest(con, coll, shards, patch_fp)
    report = {
        "unit": "collection",
        "collection": coll.key,
        "items": len(placement) - len(plan_.absent),
        "items_written": len(written),
        "items_deleted": plan_.deleted_items,
        "files_written": len(written) + len(doc_writes),
        "files_deleted": len(deletes),
    }
    prior_fragment = fragment_digest(con, cat_id, coll.id)
    doc_entries = {p: (sha256_bytes(d), len(d)) for p, d in doc_writes.items()}
    failures = [(*coll_key, p.key, op, i, r) for i, (p, op, r) in sorted(applied.failed.items())]
    if doc_failure is not None:
        failures.append((*coll_key, doc_failure[0].key, doc_failure[1], None, doc_failure[2]))
    with st.Transaction(con):
        con.executemany("DELETE FROM outputs WHERE catalog=? AND path=?", [(cat_id, p) for p in deletes])
        con.executemany(
            "INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)",
            [(cat_id, w[0], coll.id, w[1], "item", w[2], w[3], w[4], w[5] if len(w) > 5 else None) for w in written],
        )
        con.executemany(
            "INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)",
            [(cat_id, p, coll.id, None, "catalog", None, sha, size, None) for p, (sha, size) in doc_entries.items()],
        )
        con.execute("DELETE FROM patch_stats WHERE catalog=? AND collection=?", coll_key)
        con.executemany(
            "INSERT INTO patch_stats VALUES (?,?,?,?,?,?,?,?)",
            [(*coll_key, k, v["matched"], v["patched"], v["deleted"], v["failed"], orjson.dumps(v["unmatched"]).decode()) for k, v in applied.stats.items()],
        )
        con.execute("DELETE FROM patch_failures WHERE catalog=? AND collection=?", coll_key)
        con.executemany("INSERT INTO patch_failures VALUES (?,?,?,?,?,?)", failures)
        con.execute("DELETE FROM pending WHERE catalog=? AND collection=?", coll_key)
        con.execute("DELETE FROM item_queue WHERE catalog=? AND collection=?", coll_key)
        con.execute("INSERT OR REPLACE INTO aggregates VALUES (?,?,?,?,?,?)", (*coll_key, input_digest, structure, digest_obj(patch_fp), None))
        save_report(con, options.run_id, f"collection:{coll.key}", report)
    changes: dict[str, tuple[str, int] | None] = {p: None for p in deletes}
    changes.update((w[0], (w[3], w[4])) for w in written)
    changes.update(doc_entries)
    save_fragment(project, con, cat_id, coll.id, prior=prior_fragment, changes=changes)
    for s in gone_shards:
        if cache_files.get(s):
            Path(cache_root, cache_files[s]).unlink(missing_ok=True)
    return report


def validate_written(project: Project, coll: CollectionSpec, report: dict, options: BuildOptions) -> None:
    """After a collection task: validate what it wrote, beside the other collection tasks (see
    ``verdicts.validate_collection``), and add that to its report. Called once the task's own
    data is freed, so the two do not add up in the worker's memory."""
    con = st.connect(project.state_dir)
    run = validate_collection(project, con, coll, open_validator(project))
    report["validation"] = {"validated": run.checked}
    report["validation_report"] = run.to_json()
    with st.Transaction(con):
        save_report(con, options.run_id, f"collection:{coll.key}", report)


_CHANGED_ITEMS = """SELECT r.item_id, r.shard, r.body_digest, r.cache_off, r.cache_len, o.path FROM {source} records r {on}
  LEFT JOIN outputs o ON o.catalog=r.catalog AND o.collection=r.collection AND o.item_id=r.item_id AND o.kind='item'
 WHERE r.catalog=? AND r.collection=? AND (o.body_digest IS NULL OR o.body_digest != r.body_digest)"""
_GONE_ITEMS = """SELECT o.path FROM {source} outputs o {on} WHERE o.catalog=? AND o.collection=? AND o.kind='item'
   AND NOT EXISTS (SELECT 1 FROM records r WHERE r.catalog=o.catalog AND r.collection=o.collection AND r.item_id=o.item_id)"""


def _plan_incremental(coll: CollectionSpec, con, placement: dict, nodes: list, cache_files: dict, existing_docs: dict, queued: bool = True) -> _Plan:
    """Same layout tree as last time: the items to write and delete are the queued ones
    (``state.item_queue``) whose record and output differ; all of them when the counts show
    that the queue missed one (an item file for every record, one per item)."""
    coll_key = (coll.catalog_id, coll.id)
    coll_path = f"{coll.id}/collection.json"
    batches: dict[str, list[tuple]] = defaultdict(list)
    deletes: list[str] = []
    dirty: set[tuple[str, ...]] = {()}
    which = st.only_queued("item_queue", "r") if queued else st.EVERY_ITEM
    added = 0
    for item_id, shard, body_digest, off, ln, old_path in con.execute(_CHANGED_ITEMS.format_map(which), coll_key).fetchall():
        segs = placement[item_id]
        path = _item_path(coll, segs, item_id)
        added += old_path is None
        if old_path != path:
            dirty.add(segs)
            if old_path is not None:
                dirty.add(_leaf_of(coll, old_path))
                deletes.append(old_path)
        batches[cache_files[shard]].append((item_id, off, ln, path, _node_path(coll, segs), coll_path, body_digest, old_path != path))
    removed = 0
    which = st.only_queued("item_queue", "o") if queued else st.EVERY_ITEM
    for (old_path,) in con.execute(_GONE_ITEMS.format_map(which), coll_key).fetchall():
        deletes.append(old_path)
        removed += 1
        dirty.add(_leaf_of(coll, old_path))
    if queued:
        if st.item_count(con, coll_key) + added - removed != len(placement):
            return _plan_incremental(coll, con, placement, nodes, cache_files, existing_docs, queued=False)
    doc_nodes = [n for n in nodes if n.segments in dirty or _node_path(coll, n.segments) not in existing_docs]
    return _Plan(batches, [], deletes, removed, doc_nodes, set())


def _plan_full(coll: CollectionSpec, con, placement: dict, nodes: list, cache_files: dict, existing_docs: dict) -> _Plan:
    """Every item's place recomputed and compared with what was written."""
    coll_key = (coll.catalog_id, coll.id)
    coll_path = f"{coll.id}/collection.json"
    existing = {
        r[0]: r[1:]
        for r in con.execute("SELECT path, item_id, body_digest FROM outputs WHERE catalog=? AND collection=? AND kind='item'", coll_key)
    }
    batches: dict[str, list[tuple]] = defaultdict(list)
    desired: set[str] = set()
    for item_id, shard, body_digest, off, ln in con.execute(
        "SELECT item_id, shard, body_digest, cache_off, cache_len FROM records WHERE catalog=? AND collection=?", coll_key
    ):
        segs = placement[item_id]
        path = _item_path(coll, segs, item_id)
        desired.add(path)
        old = existing.get(path)
        if old is not None and old[0] == item_id and old[1] == body_digest:
            continue
        batches[cache_files[shard]].append((item_id, off, ln, path, _node_path(coll, segs), coll_path, body_digest, old is None))
    desired.update(_node_path(coll, n.segments) for n in nodes)
    deletes = sorted(p for p in existing if p not in desired)
    removed = len(deletes)
    deletes += sorted(p for p in existing_docs if p not in desired)
    return _Plan(batches, [], deletes, removed, nodes, set())


def _plan_patched(coll, con, placement, nodes, details, prior_items, applied: Applied, existing_docs, reader, times, now) -> _Plan:
    """Full comparison that also knows each item's patch chain (or its deletion or failure)."""
    coll_path = f"{coll.id}/collection.json"
    existing = {v[0]: (i, v[1], v[2]) for i, v in prior_items.items()}
    batches: dict[str, list[tuple]] = defaultdict(list)
    patched: list[tuple] = []
    desired: set[str] = set()
    absent: set[str] = set()
    cache_files = reader.cache_files
    for item_id, segs in placement.items():
        shard, body_digest, off, ln = details[item_id][:4]
        path = _item_path(coll, segs, item_id)
        old = existing.get(path)
        if item_id in applied.failed:  # keep the last good output where it is, or have none
            if old is not None and old[0] == item_id:
                desired.add(path)
            else:
                absent.add(item_id)
            continue
        desired.add(path)
        chain = applied.digests.get(item_id)
        if old is not None and old[0] == item_id and old[1] == body_digest and old[2] == chain:
            continue
        parent = _node_path(coll, segs)
        if chain is None:
            batches[cache_files[shard]].append((item_id, off, ln, path, parent, coll_path, body_digest, old is None))
            continue
        body = applied.bodies.get(item_id)
        if body is None:  # moved with an unchanged chain: re-apply (it applied cleanly before)
            doc = orjson.loads(reader.read(shard, off, ln))
            for p in applied.chains[item_id]:
                doc = p.apply(doc)
            doc.setdefault("properties", {})["updated"] = updated_time(applied.chains[item_id], times, now)
            body = pretty_json(doc)
        patched.append((path, parent, body, item_id, body_digest, chain, old is None))
    desired.update(_node_path(coll, n.segments) for n in nodes)
    deletes = sorted(p for p in existing if p not in desired)
    removed = len(deletes)
    deletes += sorted(p for p in existing_docs if p not in desired)
    return _Plan(batches, patched, deletes, removed, nodes, absent)


def _extent_of(details: dict, applied: Applied, placement: dict, absent: set[str]) -> dict:
    """Extent of the items that are output, with patched times and boxes (Python, not SQL)."""
    start = end = None
    box = None
    for item_id in placement:
        if item_id in absent:
            continue
        s0, e0, w, s, e, n = applied.moved.get(item_id) or details[item_id][4:]
        start = s0 if start is None or s0 < start else start
        end = e0 if end is None or e0 > end else end
        if w is not None:
            box = [w, s, e, n] if box is None else [min(box[0], w), min(box[1], s), max(box[2], e), max(box[3], n)]
    return _extent_doc(start, end, box)


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


def _extent(con, coll_key: tuple[str, str]) -> dict:
    start, end, w, s, e, n, count = con.execute(
        "SELECT MIN(start), MAX(end), MIN(w), MIN(s), MAX(e), MAX(n), COUNT(*) FROM records WHERE catalog=? AND collection=?",
        coll_key,
    ).fetchone()
    return _extent_doc(start if count else None, end, [w, s, e, n] if w is not None else None)


def _partitions(con, coll: CollectionSpec) -> tuple[str, ...]:
    """The GeoParquet partitions the collection's items fall in (its export writes one file each)."""
    if coll.geoparquet is None:
        return ()
    width = PARTITION_WIDTH.get(coll.geoparquet["partition"])
    if width is None:
        return ("items",) if st.item_count(con, (coll.catalog_id, coll.id)) else ()
    rows = con.execute("SELECT DISTINCT substr(start, 1, ?) FROM records WHERE catalog=? AND collection=?", (width, coll.catalog_id, coll.id))
    return tuple(sorted(r[0] for r in rows))


def _partitions_of(coll: CollectionSpec, details: dict, applied: Applied, placement: dict, absent: set[str]) -> tuple[str, ...]:
    """:func:`_partitions` with patched times (Python, not SQL)."""
    if coll.geoparquet is None:
        return ()
    starts = ((applied.moved.get(i) or details[i][4:])[0] for i in placement if i not in absent)
    return tuple(sorted({partition_key(s, coll.geoparquet["partition"]) for s in starts}))


def _extent_doc(start: str | None, end: str | None, bbox: list | None) -> dict:
    """A collection extent from sortable start/end times and a box (None: no items / no box)."""
    if start is None:
        return {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]}, "temporal": {"interval": [[None, None]]}}
    return {"spatial": {"bbox": [bbox or [-180.0, -90.0, 180.0, 90.0]]}, "temporal": {"interval": [[display_datetime(start), display_datetime(end)]]}}


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
        shutil.rmtree(out_dir / "pgstac" / cid, ignore_errors=True)
        shutil.rmtree(pieces_root(project, cat.id) / cid, ignore_errors=True)
        caches = [r[0] for r in con.execute("SELECT cache_file FROM shards WHERE catalog=? AND collection=?", (cat.id, cid))]
        with st.Transaction(con):
            for table in st.COLLECTION_TABLES:
                con.execute(f"DELETE FROM {table} WHERE catalog=? AND collection=?", (cat.id, cid))
        for c in caches:
            (cache_dir(project, cat.id) / c).unlink(missing_ok=True)
        _fragment_path(project, cat.id, cid).unlink(missing_ok=True)

    children = [  # a collection that failed on its first build is not linked until it builds
        link("child", f"./{c.id}/collection.json", title=c.meta.get("title", c.id)) for c in cat.collections if (out_dir / c.id / "collection.json").is_file()
    ]
    root = render_catalog(cat.id, cat.meta.get("title"), cat.meta["description"], "catalog.json", "catalog.json", None, children, cat.links)
    root_entry = (sha256_bytes(root), len(root))
    catalog_exports(project, con, cat, writer)
    manifest = _manifest(project, con, cat, root_entry)

    failures = [
        {"collection": c, "source": s, "location": location(s, loc), "field": f, "reason": r, "item_id": i}
        for c, s, loc, f, r, i in con.execute(
            "SELECT collection, shard, loc, field, reason, item_id FROM failures WHERE catalog=? ORDER BY collection, shard, rowid",
            (cat.id,),
        )
    ]
    failures += [
        {"collection": c, "source": key.rpartition("#")[0], "location": patch_location(key, op), "field": "patch", "reason": reason, "item_id": i}
        for c, key, op, i, reason in con.execute(
            "SELECT collection, patch_key, op_index, item_id, reason FROM patch_failures WHERE catalog=? ORDER BY collection, patch_key, item_id",
            (cat.id,),
        )
    ]
    written = 0
    prior_root = con.execute("SELECT sha256 FROM outputs WHERE catalog=? AND path='catalog.json'", (cat.id,)).fetchone()
    with st.Transaction(con):
        con.executemany("INSERT INTO pending VALUES (?,?,?)", [(cat.id, "", p) for p in ("catalog.json", "manifest.json")])
    if prior_root is None or prior_root[0] != root_entry[0] or not (out_dir / "catalog.json").exists():
        writer.write("catalog.json", root)
        written += 1
    manifest_path = out_dir / "manifest.json"
    if not same_content(manifest_path, manifest):
        writer.overwrite("manifest.json", manifest)  # ~190 MB at 800K items: a new file's pages cost 0.6 s
        written += 1
    failed_path = out_dir / "failed.ndjson"
    if failures:
        writer.write("failed.ndjson", b"".join(canonical_json(f) + b"\n" for f in failures))
    else:
        failed_path.unlink(missing_ok=True)
    report = {"unit": "catalog", "catalog": cat.id, "files_written": written, "failed": len(failures), "removed_collections": removed, "items_deleted": removed_items}
    with st.Transaction(con):
        con.execute(
            "INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)",
            (cat.id, "catalog.json", "", None, "root", None, root_entry[0], root_entry[1], None),
        )
        con.execute("DELETE FROM pending WHERE catalog=? AND collection=''", (cat.id,))
    validator = open_validator(project) if options.validate else None
    if validator is not None:
        counts, run = validate_catalog(project, con, cat, options.jobs, validator)
        report["validation"] = counts
        report["validation_report"] = run.to_json()
    with st.Transaction(con):
        con.execute("INSERT OR REPLACE INTO aggregates VALUES (?,?,?,?,?,?)", (cat.id, "", catalog_input_digest(project, con, cat, options.validate, validator), None, None, None))
        save_report(con, options.run_id, f"catalog:{cat.id}", report)
    return report


_ENTRY = b'\n    %s: {\n      "sha256": "%s",\n      "size": %d\n    },'


def _fragment(con, cat_id: str, coll_id: str) -> bytes:
    """The manifest entries of one collection's items and (sub-)catalogs, in path order, each
    ending in ','. Its GeoParquet files are not in it: the export task, which rewrites them,
    would have to rewrite the ~23 MB fragment (at 100K items) for a few entries; the catalog
    task reads them from the state instead."""
    # every path of the collection starts with "<id>/": a range of the (catalog, path) key, in order
    return _entries(st.outputs_under(con, cat_id, coll_id + "/", coll_id, parquet=False))


def _entries(rows) -> bytes:
    """Manifest entries of (path, sha256, size) rows."""
    dumps = orjson.dumps
    return b"".join([_ENTRY % (dumps(path), sha.encode(), size) for path, sha, size in rows])


def _fragments_dir(project: Project, cat_id: str) -> Path:
    return project.state_dir / "fragments" / cat_id


def _fragment_path(project: Project, cat_id: str, coll_id: str) -> Path:
    return _fragments_dir(project, cat_id) / f"{coll_id}.part"


_LEGACY_FRAGMENTS = "manifest"
"""Where fragments were kept while they held the GeoParquet entries too (removed when seen)."""


_ENTRY_START = b'\n    "'
"""How every entry of a fragment starts (a path's JSON escapes newlines, so only entries do)."""


def fragment_digest(con, cat_id: str, coll_id: str) -> str | None:
    row = con.execute("SELECT manifest FROM aggregates WHERE catalog=? AND collection=?", (cat_id, coll_id)).fetchone()
    return row[0] if row else None


def _entry_path(buf: bytes, at: int) -> str:
    """The path of the entry that starts at ``at``."""
    end = buf.find(b'": {\n', at)  # (``find``: ``buf`` may be a mapped file)
    if end < 0:
        raise ValueError("not a manifest fragment")
    return orjson.loads(buf[at + len(_ENTRY_START) - 1 : end + 1])


def _entry_after(buf: bytes, at: int) -> int:
    """Where the entry after the one at ``at`` starts (the end of ``buf`` after the last)."""
    nxt = buf.find(_ENTRY_START, at + 1)
    return len(buf) if nxt < 0 else nxt


def _first_at_or_after(buf: bytes, path: str, lo: int, hi: int) -> int:
    """Where the first entry of ``buf[lo:hi]`` whose path is not before ``path`` starts (``hi``
    when there is none); ``lo`` and ``hi`` are entry boundaries. A binary search over byte
    offsets: each probe decodes one path."""
    while lo < hi:
        at = buf.find(_ENTRY_START, (lo + hi) // 2, hi)
        if at < 0:  # no entry starts in the upper half: try the one at lo
            at = lo
        if _entry_path(buf, at) < path:
            lo = _entry_after(buf, at)
            if lo > hi:
                lo = hi
        else:
            hi = at
    return lo


def merge_fragment(old: bytes, changes: dict[str, tuple[str, int] | None]) -> bytes:
    """``old`` (entries as :func:`_fragment` writes them) with ``changes`` applied: path ->
    (sha256, size) added or replaced, path -> None removed. Entries stay in path order (str
    order is UTF-8 byte order, as SQLite sorts). The old entries are not parsed: each change
    finds its place by a binary search (a collection's fragment at 100K items is ~23 MB;
    parsing it cost 0.15-0.3 s)."""
    return b"".join(fragment_parts(old, changes))


def fragment_parts(old: bytes, changes: dict[str, tuple[str, int] | None]) -> list:
    """:func:`merge_fragment` as the parts whose concatenation it is (views of ``old``)."""
    if old and old[: len(_ENTRY_START)] != _ENTRY_START:
        raise ValueError("not a manifest fragment")
    end = len(old)
    cuts: list[tuple[int, int, bytes]] = []  # (from, to, entry): old[from:to] replaced by entry
    dumps = orjson.dumps
    at = 0
    for path in sorted(changes):
        at = _first_at_or_after(old, path, at, end)
        to = _entry_after(old, at) if at < end and _entry_path(old, at) == path else at
        value = changes[path]
        cuts.append((at, to, _ENTRY % (dumps(path), value[0].encode(), value[1]) if value is not None else b""))
    view = memoryview(old)
    out: list = []
    kept = 0  # old[:kept] is dealt with
    for start, to, entry in cuts:  # in path order, so in place order
        if start > kept:
            out.append(view[kept:start])
        out.append(entry)
        kept = max(kept, to)
    out.append(view[kept:])
    return out


def _updated_fragment(project: Project, cat_id: str, coll_id: str, prior: str | None, changes: dict) -> bytes | None:
    """The saved fragment with ``changes`` applied, when it is the one ``prior`` describes."""
    path = _fragment_path(project, cat_id, coll_id)
    if prior is None or not path.exists():
        return None
    old = path.read_bytes()
    if digest_bytes(old) != prior:
        return None
    try:
        return merge_fragment(old, changes)
    except ValueError:
        return None


def save_fragment(
    project: Project,
    con,
    cat_id: str,
    coll_id: str,
    data: bytes | None = None,
    *,
    prior: str | None = None,
    changes: dict[str, tuple[str, int] | None] | None = None,
) -> bytes:
    """After a collection's outputs are committed: keep its manifest entries for the catalog
    task, with their digest in the state. The saved fragment whose digest was ``prior`` is
    updated instead of read again from SQL, with ``changes`` (the outputs the task wrote or
    deleted, see :func:`merge_fragment`). A stale or missing file is regenerated from SQL."""
    if data is None and changes is not None:
        data = _updated_fragment(project, cat_id, coll_id, prior, changes)
    if data is None:
        data = _fragment(con, cat_id, coll_id)
    path = _fragment_path(project, cat_id, coll_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    con.execute("UPDATE aggregates SET manifest=? WHERE catalog=? AND collection=?", (digest_bytes(data), cat_id, coll_id))
    return data


def _manifest(project: Project, con, cat: CatalogSpec, root_entry: tuple[str, int]) -> list:
    """``manifest.json``: every output path -> sha256 and size, as ``pretty_json`` would print
    ``{"catalog", "files", "version"}`` (sorted keys, 2-space indent). Assembled from the
    collections' saved fragments (checked against their digests); paths sort as UTF-8 bytes,
    and every path of a collection starts with ``<id>/``, so fragments sort by that prefix. A
    collection's GeoParquet entries come from the state and go in their places in its fragment.
    Returned as the parts whose concatenation is the file (at 800K items it is ~190 MB: joined,
    and compared with the file read whole, it cost ~2 s of the catalog task)."""
    shutil.rmtree(project.state_dir / _LEGACY_FRAGMENTS, ignore_errors=True)
    saved = dict(con.execute("SELECT collection, manifest FROM aggregates WHERE catalog=? AND collection != ''", (cat.id,)).fetchall())
    pieces: list[tuple[bytes, list]] = [(b"catalog.json", [_ENTRY % (b'"catalog.json"', root_entry[0].encode(), root_entry[1])])]
    for c in cat.collections:
        data = None
        path = _fragment_path(project, cat.id, c.id)
        if saved.get(c.id) and path.exists():
            data = map_file(path)
            if digest_bytes(data) != saved[c.id]:
                data = None
        if data is None:
            data = save_fragment(project, con, cat.id, c.id, _fragment(con, cat.id, c.id)) if c.id in saved else _fragment(con, cat.id, c.id)
        parquet = {path: (sha, size) for path, sha, size in st.outputs_under(con, cat.id, f"{c.id}/parquet/", c.id, parquet=True)}
        pieces.append(((c.id + "/").encode(), fragment_parts(data, parquet) if parquet else [data]))
    pieces.append((b"pgstac/", [_entries(st.outputs_under(con, cat.id, "pgstac/"))]))
    pieces.sort(key=lambda p: p[0])
    body: list = [part for _, parts in pieces for part in parts if len(part)]
    body[-1] = memoryview(body[-1])[:-1]  # no comma after the last entry (catalog.json's, at least)
    return [b'{\n  "catalog": ' + orjson.dumps(cat.id) + b',\n  "files": {', *body, b'\n  },\n  "version": 1\n}\n']


def remove_catalog_output(project: Project, catalog_id: str) -> None:
    """Forget a catalog entirely: its build directory, cache and state."""
    shutil.rmtree(project.build_dir / catalog_id, ignore_errors=True)
    shutil.rmtree(cache_dir(project, catalog_id), ignore_errors=True)
    shutil.rmtree(_fragments_dir(project, catalog_id), ignore_errors=True)
    shutil.rmtree(pieces_root(project, catalog_id), ignore_errors=True)
    st.drop_catalog(st.connect(project.state_dir), catalog_id)


__all__ = ["BuildOptions", "build_shard", "build_collection", "build_catalog", "failure_message", "location", "StacgitError"]
