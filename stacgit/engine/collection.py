"""The collection step: decide the layout of a collection's items, write the items whose body
or place changed, delete the ones that disappeared, write sub-catalogs and collection.json when
their bytes change, and validate what it wrote.

Files are written (atomically) before the state rows that describe them are committed; paths
are registered in ``pending`` first so that a killed build is undone precisely."""

from __future__ import annotations

from pathlib import Path

import orjson

from stacgit.executors import cluster_executor
from stacgit.state import collections, shards as shard_state
from stacgit import state as st
from stacgit.engine.shard import BuildOptions, cache_dir, find_location
from stacgit.errors import BuildError, PlanError
from stacgit.hashing import digest_obj, sha256_bytes
from stacgit.layout import compute_layout
from stacgit.gitinfo import commit_times
from stacgit.patching import Applied, BodyReader, apply_document_patches, apply_patches
from stacgit.plan import collection_input_digest, patch_fingerprint
from stacgit.project import CollectionSpec, Project
from stacgit.verdicts import open_validator, validate_collection
from stacgit.state.reports import save_report
from stacgit.writers import AtomicWriter, splice_links
from stacgit.engine.items import (
    extent_of, node_doc, node_path, partitions_of, patch_location, patch_reason, plan_full, plan_incremental, plan_patched,
    read_extent, read_partitions, recover_pending, same_bytes, structure_digest, write_items,
)
from stacgit.engine.manifest import fragment_digest, save_fragment


def _read_members(project: Project, con, coll: CollectionSpec, with_details: bool) -> tuple[list, dict]:
    """(item id, start) of every item, checking ids are unique across source files; with
    details also item id -> (shard, body digest, offset, length, start, end, w, s, e, n)."""
    key = (coll.catalog_id, coll.id)
    dup = collections.duplicate_id(con, key)
    if dup is not None:
        item_id, shards = dup
        a, b = sorted(find_location(project, coll, s, item_id) for s in shards[:2])
        raise PlanError(f"duplicate item id '{item_id}' in collection {coll.key}: {a} and {b}")
    if not with_details:
        members = collections.members(con, key)
        _check_case(project, con, coll, members)
        return members, {}
    details = collections.record_details(con, key)
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
            where = [find_location(project, coll, s, i) for i in (other, item_id) for s in collections.shards_of(con, (coll.catalog_id, coll.id), i)]
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
    recover_pending(con, writer, cat_id, coll.id)

    cache_files = shard_state.cache_files(con, *coll_key)
    current = set(shards)
    gone_shards = sorted(s for s in cache_files if s not in current)
    if gone_shards:  # inputs, not outputs: their items now count as removed (found below)
        collections.forget_shards(con, coll_key, gone_shards)
    cache_root = str(cache_dir(project, cat_id))

    item_patches = project.patches_for(coll)
    doc_patches = project.patches_for(coll, "collection")
    times = commit_times(project.root, sorted({p.file for p in item_patches + doc_patches}))
    patch_mode = bool(item_patches) or collections.was_patched(con, coll_key)

    members, details = _read_members(project, con, coll, patch_mode)
    applied = Applied()
    prior_items: dict[str, tuple] = {}
    reader = BodyReader(cache_root, cache_files)
    try:
        if patch_mode:
            prior_items = collections.item_outputs(con, coll_key)

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
        structure = structure_digest(coll, nodes)
        prior = collections.structure(con, coll_key)
        existing_docs = collections.catalog_documents(con, coll_key)
        if patch_mode:
            plan_ = plan_patched(coll, con, placement, nodes, details, prior_items, applied, existing_docs, reader, times, options.now)
        elif prior is not None and prior == structure:
            plan_ = plan_incremental(coll, con, placement, nodes, cache_files, existing_docs)
        else:
            plan_ = plan_full(coll, con, placement, nodes, cache_files, existing_docs)
    finally:
        reader.close()

    extent = read_extent(con, coll_key) if not patch_mode else extent_of(details, applied, placement, plan_.absent)
    parts = read_partitions(con, coll) if not patch_mode else partitions_of(coll, details, applied, placement, plan_.absent)
    doc_writes: dict[str, bytes] = {}
    doc_failure = None
    for node in plan_.doc_nodes:
        path = node_path(coll, node.segments)
        data = node_doc(coll, node, extent, plan_.absent, parts)
        if not node.segments and doc_patches:
            data, doc_failure = apply_document_patches(data, doc_patches)
            if doc_failure is not None:
                if options.strict:
                    patch, op, reason = doc_failure
                    raise BuildError(f"{patch_location(patch.key, op)}: {patch_reason(None, reason)}")
                if path in existing_docs:
                    continue  # the collection document stays at its last good state
        if existing_docs.get(path) != sha256_bytes(data) or not node.segments and not same_bytes(out_dir / path, data):
            doc_writes[path] = data

    all_paths = [it[3] for batch in plan_.batches.values() for it in batch] + [w[0] for w in plan_.patched] + list(doc_writes) + plan_.deletes
    if all_paths:
        collections.journal(con, cat_id, coll.id, list(all_paths))

    written = write_items(str(out_dir), str(project.state_dir / "tmp"), cache_root, plan_.batches, plan_.n_write, options.jobs, options.scheduler)
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
    collections.save_step(
        con, coll_key, deletes=deletes, items=written, documents=[(p, sha, size) for p, (sha, size) in doc_entries.items()],
        patch_stats=[(k, v["matched"], v["patched"], v["deleted"], v["failed"], orjson.dumps(v["unmatched"]).decode()) for k, v in applied.stats.items()],
        patch_failures=failures, aggregate=(input_digest, structure, digest_obj(patch_fp)), run_id=options.run_id, report=report,
    )
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
    pool, jobs = cluster_executor() if options.scheduler else (None, 1)
    run = validate_collection(project, con, coll, open_validator(project), pool, jobs)
    report["validation"] = {"validated": run.checked}
    report["validation_report"] = run.to_json()
    with st.Transaction(con):
        save_report(con, options.run_id, f"collection:{coll.key}", report)
