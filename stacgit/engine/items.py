"""Where a collection's items go and which of them to write: the plan of the collection step
(every item, the queued ones, or the ones patches touched), the documents of its sub-catalogs,
and its extent."""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson

from stacgit.executors import cluster_executor
from stacgit.state import collections
from stacgit import state as st
from stacgit.hashing import digest_obj, pretty_json, sha256_bytes
from stacgit.patching import Applied, updated_time
from stacgit.exports import PARTITION_WIDTH, parquet_assets, partition_key
from stacgit.extensions import apply_to_collection
from stacgit.plan import extension_uses
from stacgit.project import CollectionSpec
from stacgit.stac import GEOJSON
from stacgit.writers import AtomicWriter, link, render_catalog, render_collection, splice_links


PARALLEL_WRITE_MIN = 20_000
"""Collections writing at least this many items spread the writes over ``jobs`` processes."""


def patch_location(patch_key: str, op_index: int | None) -> str:
    """``patches/x.yaml (document 2, op 1)`` from a patch key ``patches/x.yaml#2``."""
    file, _, index = patch_key.rpartition("#")
    return f"{file} (document {index}" + (f", op {op_index})" if op_index is not None else ")")


def patch_reason(item_id: str | None, reason: str) -> str:
    return f"item '{item_id}': {reason}" if item_id is not None else f"collection document: {reason}"


def recover_pending(con, writer: AtomicWriter, catalog: str, collection: str) -> None:
    """Undo what a killed build may have half done: forget and remove its pending paths."""
    pend = collections.pending_paths(con, catalog, collection)
    if not pend:
        return
    for path in pend:
        writer.delete(path, stop_at=collection)
    collections.forget_pending(con, catalog, collection, pend)


def display_datetime(sortable: str) -> str:
    head, frac = sortable[:-1].split(".")
    frac = frac.rstrip("0")
    return f"{head}.{frac}Z" if frac else f"{head}Z"


def _item_path(coll: CollectionSpec, segs: tuple[str, ...], item_id: str) -> str:
    base = "/".join((coll.id, *segs))
    return f"{base}/{coll.layout.item_path.format(id=item_id)}"


def node_path(coll: CollectionSpec, segs: tuple[str, ...]) -> str:
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


def structure_digest(coll: CollectionSpec, nodes: list) -> str:
    return digest_obj([coll.layout.item_path, list(coll.layout.split), coll.layout.max_items, [(n.segments, n.children) for n in nodes]])


def node_doc(coll: CollectionSpec, node, extent: dict, absent: set[str] = frozenset(), parts: tuple[str, ...] = ()) -> bytes:
    path = node_path(coll, node.segments)
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
        node_path(coll, node.segments[:-1]),
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


def plan_incremental(coll: CollectionSpec, con, placement: dict, nodes: list, cache_files: dict, existing_docs: dict, queued: bool = True) -> _Plan:
    """Same layout tree as last time: the items to write and delete are the queued ones
    (``state.item_queue``) whose record and output differ; all of them when the counts show
    that the queue missed one (an item file for every record, one per item)."""
    coll_key = (coll.catalog_id, coll.id)
    coll_path = f"{coll.id}/collection.json"
    batches: dict[str, list[tuple]] = defaultdict(list)
    deletes: list[str] = []
    dirty: set[tuple[str, ...]] = {()}
    added = 0
    for item_id, shard, body_digest, off, ln, old_path in collections.changed_items(con, coll_key, queued):
        segs = placement[item_id]
        path = _item_path(coll, segs, item_id)
        added += old_path is None
        if old_path != path:
            dirty.add(segs)
            if old_path is not None:
                dirty.add(_leaf_of(coll, old_path))
                deletes.append(old_path)
        batches[cache_files[shard]].append((item_id, off, ln, path, node_path(coll, segs), coll_path, body_digest, old_path != path))
    removed = 0
    for old_path in collections.gone_items(con, coll_key, queued):
        deletes.append(old_path)
        removed += 1
        dirty.add(_leaf_of(coll, old_path))
    if queued:
        if st.item_count(con, coll_key) + added - removed != len(placement):
            return plan_incremental(coll, con, placement, nodes, cache_files, existing_docs, queued=False)
    doc_nodes = [n for n in nodes if n.segments in dirty or node_path(coll, n.segments) not in existing_docs]
    return _Plan(batches, [], deletes, removed, doc_nodes, set())


def plan_full(coll: CollectionSpec, con, placement: dict, nodes: list, cache_files: dict, existing_docs: dict) -> _Plan:
    """Every item's place recomputed and compared with what was written."""
    coll_key = (coll.catalog_id, coll.id)
    coll_path = f"{coll.id}/collection.json"
    existing = collections.item_files(con, coll_key)
    batches: dict[str, list[tuple]] = defaultdict(list)
    desired: set[str] = set()
    for item_id, shard, body_digest, off, ln in collections.record_bodies(con, coll_key):
        segs = placement[item_id]
        path = _item_path(coll, segs, item_id)
        desired.add(path)
        old = existing.get(path)
        if old is not None and old[0] == item_id and old[1] == body_digest:
            continue
        batches[cache_files[shard]].append((item_id, off, ln, path, node_path(coll, segs), coll_path, body_digest, old is None))
    desired.update(node_path(coll, n.segments) for n in nodes)
    deletes = sorted(p for p in existing if p not in desired)
    removed = len(deletes)
    deletes += sorted(p for p in existing_docs if p not in desired)
    return _Plan(batches, [], deletes, removed, nodes, set())


def plan_patched(coll, con, placement, nodes, details, prior_items, applied: Applied, existing_docs, reader, times, now) -> _Plan:
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
        parent = node_path(coll, segs)
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
    desired.update(node_path(coll, n.segments) for n in nodes)
    deletes = sorted(p for p in existing if p not in desired)
    removed = len(deletes)
    deletes += sorted(p for p in existing_docs if p not in desired)
    return _Plan(batches, patched, deletes, removed, nodes, absent)


def extent_of(details: dict, applied: Applied, placement: dict, absent: set[str]) -> dict:
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


def same_bytes(path: Path, data: bytes) -> bool:
    """Aggregate documents are few: compare them with the disk so hand edits get repaired."""
    try:
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


def write_items(out_dir: str, tmp_dir: str, cache_root: str, batches: dict, n_write: int, jobs: int, scheduler: str | None = None) -> list[tuple]:
    """Write the planned items; return (path, item id, body digest, sha256, size) of each. With
    a Dask ``scheduler``, one task per shard's batch runs on its workers (they read the body
    cache and write the build through the shared file system); results are taken in the order
    the batches were sent."""
    if not batches:
        return []
    work = sorted(batches.items())
    if scheduler:
        pool, _ = cluster_executor()
        with pool:
            futures = [pool.submit(_write_item_batch, (out_dir, tmp_dir, cache_root, [batch])) for batch in work]
            return [row for f in futures for row in f.result()]
    if jobs <= 1 or n_write < PARALLEL_WRITE_MIN:
        return _write_item_batch((out_dir, tmp_dir, cache_root, work))
    chunks = [work[i::jobs] for i in range(jobs)]
    results: list[tuple] = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for part in pool.map(_write_item_batch, [(out_dir, tmp_dir, cache_root, c) for c in chunks if c]):
            results.extend(part)
    return results


def read_extent(con, coll_key: tuple[str, str]) -> dict:
    start, end, w, s, e, n, count = collections.extent(con, coll_key)
    return _extent_doc(start if count else None, end, [w, s, e, n] if w is not None else None)


def read_partitions(con, coll: CollectionSpec) -> tuple[str, ...]:
    """The GeoParquet partitions the collection's items fall in (its export writes one file each)."""
    if coll.geoparquet is None:
        return ()
    width = PARTITION_WIDTH.get(coll.geoparquet["partition"])
    if width is None:
        return ("items",) if st.item_count(con, (coll.catalog_id, coll.id)) else ()
    return tuple(sorted(collections.start_prefixes(con, (coll.catalog_id, coll.id), width)))


def partitions_of(coll: CollectionSpec, details: dict, applied: Applied, placement: dict, absent: set[str]) -> tuple[str, ...]:
    """:func:`read_partitions` with patched times (Python, not SQL)."""
    if coll.geoparquet is None:
        return ()
    starts = ((applied.moved.get(i) or details[i][4:])[0] for i in placement if i not in absent)
    return tuple(sorted({partition_key(s, coll.geoparquet["partition"]) for s in starts}))


def _extent_doc(start: str | None, end: str | None, bbox: list | None) -> dict:
    """A collection extent from sortable start/end times and a box (None: no items / no box)."""
    if start is None:
        return {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]}, "temporal": {"interval": [[None, None]]}}
    return {"spatial": {"bbox": [bbox or [-180.0, -90.0, 180.0, 90.0]]}, "temporal": {"interval": [[display_datetime(start), display_datetime(end)]]}}
