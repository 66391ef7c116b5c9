"""The export task of a collection: bring its GeoParquet partitions and pgstac pieces up to
date with its items, rewriting only the partitions whose items changed."""

from __future__ import annotations

import functools
import itertools
import os
import shutil
from pathlib import Path

import orjson

from stacgit import columns as C
from stacgit import state as st
from stacgit.errors import BuildError
from stacgit.fileio import will_need
from stacgit.hashing import digest_obj, sha256_bytes, sha256_file
from stacgit.mapping import item_columns as mapping_columns
from stacgit.plan import Reason, StaleUnit, export_task, extension_uses, get_mapping
from stacgit.project import CollectionSpec, Project
from stacgit.state import exports as ex
from stacgit.exports.changes import convert_changed, counts_agree, find_changes, member_rows, partition_segments
from stacgit.exports.further import write_further
from stacgit.exports.geoparquet import Drift, OldPartition, Prepared, collection_doc_for_metadata, json_schema
from stacgit.exports.partition import Member, write_partition
from stacgit.exports.pgstac import IN_PLACE_LIMIT, Piece, Stale, pgstac_prefix, piece_dirs, piece_path, pieces_dir



EXPORT_VERSION = "3"
"""Bumped when the bytes of the files change for the same items: every partition is written again."""


def item_columns(project: Project, coll: CollectionSpec) -> C.ItemColumns:
    """The column types of a collection's items (mapping, defaults, extensions, patches,
    overrides; with ``undeclared: infer``, the built items' own field types for the rest)."""
    where = f"{project.catalog(coll.catalog_id).yaml_path}: collections[{coll.index}] ({coll.key})"
    spec = get_mapping(project, coll)
    cols = mapping_columns(spec.data, coll.defaults, where)
    for use in extension_uses(coll):
        C.add_extension_fields(cols, use.ext.columns(use.raw), f"{use.where}: extension {use.ext.name}")
    for patch in project.patches_for(coll):
        C.add_patch_fields(cols, list(patch.ops), patch.where)
    gp = coll.geoparquet or {}
    C.apply_overrides(cols, gp.get("columns") or {}, f"{where}: geoparquet.columns")
    cols.undeclared = gp.get("undeclared", "error")
    if cols.undeclared == "infer":
        C.add_inferred(cols, st.item_signatures(st.connect(project.state_dir), (coll.catalog_id, coll.id)))
    C.finish(cols)
    C.check_names(cols, where)
    return cols


def export_config_digest(coll: CollectionSpec, cols: C.ItemColumns | None) -> str:
    return digest_obj([EXPORT_VERSION, coll.export_digest(), cols.to_dict() if cols else None])


def export_stale(project: Project, coll: CollectionSpec) -> StaleUnit | None:
    """Why a collection's exports are stale (None: up to date)."""
    con = st.connect(project.state_dir)
    key = (coll.catalog_id, coll.id)
    row = ex.last_export(con, key)
    unit = export_task(coll)
    if row is None:
        return StaleUnit(unit, Reason.NEW)
    cols = item_columns(project, coll) if coll.geoparquet else None
    if row[0] != export_config_digest(coll, cols):
        return StaleUnit(unit, Reason.CONFIG_CHANGED, "export settings or column types")
    if row[1] is None or row[1] != ex.input_digest(con, key):
        return StaleUnit(unit, Reason.SOURCE_CHANGED, "items changed since the last export")
    damaged = _damaged_parts(project, con, coll, ex.known_parts(con, key))
    if damaged:
        return StaleUnit(unit, Reason.OUTPUT_MODIFIED, "partition files missing or changed: " + ", ".join(sorted(damaged)))
    return None


def _damaged_parts(project: Project, con, coll: CollectionSpec, known: dict[str, tuple]) -> set[str]:
    """Partitions whose parquet file or pgstac piece is missing or changed size since the
    last export (deleted or edited by hand), or whose piece was being rewritten in place when
    an export stopped."""
    parquet_dir = project.build_dir / coll.catalog_id / coll.id / "parquet"
    pdir = pieces_dir(project, coll)
    marks = _rewriting(project, coll)
    sizes = _piece_sizes(con, coll) if coll.pgstac else {}
    damaged = set()
    for part, (_, size) in known.items():
        if (marks / part).exists():  # a rewrite in place stopped half way
            damaged.add(part)
        pq_path = parquet_dir / f"{part}.parquet"
        if coll.geoparquet and (not pq_path.exists() or pq_path.stat().st_size != size):
            damaged.add(part)
        piece = pdir / f"{part}.ndjson"
        if not piece.exists() or (coll.pgstac and piece.stat().st_size != sizes.get(piece_path(coll, part))):
            damaged.add(part)
    return damaged


def _piece_sizes(con, coll: CollectionSpec) -> dict[str, int]:
    """Published pgstac piece -> size, as the last export wrote it."""
    return {path: size for path, _, size in st.outputs_under(con, coll.catalog_id, pgstac_prefix(coll))}


def _rewriting(project: Project, coll: CollectionSpec) -> Path:
    """Where an export marks the partitions whose pgstac piece it rewrites in place, until the
    state describes the new pieces: ``.stacgit/rewriting/<catalog>/<collection>/<partition>``."""
    return project.state_dir / "rewriting" / coll.catalog_id / coll.id


def export_collection(project: Project, coll: CollectionSpec, jobs: int = 1) -> dict:
    """Bring a collection's GeoParquet partitions and pgstac NDJSON up to date."""
    con = st.connect(project.state_dir)
    cat_id = coll.catalog_id
    key = (cat_id, coll.id)
    out_dir = project.build_dir / cat_id
    gp = coll.geoparquet
    partition = gp["partition"] if gp else "none"
    cols = item_columns(project, coll) if gp else None
    config_digest = export_config_digest(coll, cols)
    prior = ex.last_export(con, key)
    config_changed = prior is None or prior[0] != config_digest
    input_digest = ex.input_digest(con, key)

    # Which items changed since the last export, and the partitions that hold them: of the
    # queued items; of them all when the configuration changed, or when the counts show that
    # the queue missed something.
    known_parts = ex.known_parts(con, key)
    found = find_changes(con, key, out_dir, partition, queued=not config_changed, every=config_changed)
    if not config_changed and not counts_agree(con, key, found):
        found = find_changes(con, key, out_dir, partition, queued=False)
    dirty, parts, changed, gone = found.dirty, found.parts, found.changed, found.gone
    # every partition exported before (one that loses all its items is dirty, and dropped below)
    parts.update(known_parts)
    removed = sum(gone.values())
    dirty |= set(gone)
    pdir = pieces_dir(project, coll)
    marks = _rewriting(project, coll)
    damaged = _damaged_parts(project, con, coll, known_parts)
    dirty |= damaged
    if config_changed:
        dirty |= parts | set(known_parts)
    dirty |= parts - set(known_parts)

    tmp_dir = project.state_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    pdir.mkdir(parents=True, exist_ok=True)
    schema = json_schema(cols) if cols else None
    prepared = Prepared(cols) if cols else None
    coll_doc = collection_doc_for_metadata(out_dir, coll) if gp else {}
    written_parts: list[tuple[str, str, str | None, int | None]] = []  # part, parquet path, sha256, size
    written_pieces: list[tuple[str, str | None, int]] = []  # part, sha256 (when published), size
    deleted_parts: list[tuple[str, str]] = []
    parquet_dir = out_dir / coll.id / "parquet"

    def placed(part: str, batch: list[tuple[Member, int, int]]) -> None:
        ex.stage_rows(con, [(m.item_id, m.sha, part, m.sort, m.path, off, ln) for m, off, ln in batch])

    # the few changed and queued items as sets: a lookup per old row in SQL cost 3 s at 800K
    replaced = ex.replaced_ids(con)
    members = functools.partial(member_rows, con, key, replaced=replaced)
    reusable = set() if config_changed else (dirty & set(known_parts)) - damaged  # the previous files are the ones the state describes
    for part in sorted(reusable):  # read whole below, one after another: let the disk start on them all now
        will_need(pdir / f"{part}.ndjson")
        if gp:
            will_need(parquet_dir / f"{part}.parquet")
    for part in sorted(dirty):
        pq_rel = f"{coll.id}/parquet/{part}.parquet"
        piece_file = pdir / f"{part}.ndjson"
        old = None
        old_ids: list[str] = []
        if part in reusable:
            old_keys = ex.old_keys(con, key, part)
            old = OldPartition(out_dir / pq_rel if gp else None)
            old_ids = [k[1] for k in old_keys]
            if gp and old.rows != len(old_keys):  # not the files the state describes: convert everything
                old.close()
                old = None
        group = partition_segments(con, part, old_keys, replaced) if old is not None else members(part)
        first = next(group, None)
        if first is None:
            if old is not None:
                old.close()
            (out_dir / pq_rel).unlink(missing_ok=True)
            piece_file.unlink(missing_ok=True)
            deleted_parts.append((part, pq_rel))
            parts.discard(part)
            continue
        pq_tmp = tmp_dir / f"{cat_id}.{coll.id}.{part}.parquet.tmp" if gp else None
        piece_tmp = tmp_dir / f"{cat_id}.{coll.id}.{part}.ndjson.tmp"
        in_place = old is not None and ex.piece_growth(con, cat_id, part) <= IN_PLACE_LIMIT
        write = functools.partial(write_partition, out_dir, schema=schema, prepared=prepared, collection_doc=coll_doc, parquet_tmp=pq_tmp, on_batch=functools.partial(placed, part))
        piece = converted = None
        try:
            try:
                if in_place:  # what could stop the export half way is found while the piece is the old one
                    converted = convert_changed(con, out_dir, part, schema, prepared)
                    marks.mkdir(parents=True, exist_ok=True)
                    (marks / part).touch()
                piece = Piece(piece_file if in_place else piece_tmp, coll.pgstac, old=piece_file if old is not None else None, ids=old_ids)
                piece_sha, piece_size = write(itertools.chain([first], group), piece=piece, old=old, changed=converted)
            except Stale:  # the old piece was changed by hand: convert everything
                piece.close()  # type: ignore[union-attr]
                old.close()  # type: ignore[union-attr]
                old = None
                in_place = False
                ex.unstage_rows(con, part)
                piece = Piece(piece_tmp, coll.pgstac)
                piece_sha, piece_size = write(members(part), piece=piece, old=None)
        except Drift as d:
            for t in (pq_tmp, piece_tmp):
                if t is not None:
                    t.unlink(missing_ok=True)
            path = ex.item_path(con, key, d.item_id)
            at = f" ({cat_id}/{path})" if path else ""
            raise BuildError(f"{coll.key}: GeoParquet schema drift: item {d.item_id!r}{at}: {d.field}: {d.reason}") from None
        finally:
            if old is not None:
                old.close()
            if piece is not None:
                piece.close()
        if gp:
            parquet_dir.mkdir(parents=True, exist_ok=True)
            os.replace(pq_tmp, out_dir / pq_rel)
            written_parts.append((part, pq_rel, sha256_file(out_dir / pq_rel), (out_dir / pq_rel).stat().st_size))
        else:
            written_parts.append((part, pq_rel, None, None))
        if not in_place:
            os.replace(piece_tmp, piece_file)
        written_pieces.append((part, piece_sha, piece_size))
    if gp is None and parquet_dir.exists():
        shutil.rmtree(parquet_dir)
    if written_parts and gp:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()  # the worker process runs other tasks after this one

    _tidy_pieces(project, coll, parts)
    current = {piece_path(coll, part) for part in parts} if coll.pgstac else set()
    further, further_gone = write_further(con, coll, out_dir, tmp_dir, parts, dirty, replaced, config_changed)

    files = [(piece_path(coll, part), "pgstac", sha, size) for part, sha, size in written_pieces if sha is not None]
    files += [(rel, name, sha, size) for rel, sha, size, name in further]
    stale_pieces = _piece_sizes(con, coll).keys() - current  # deleted partitions, pgstac turned off
    ex.record_export(con, key, ex.ExportRecord(
        settings_digest=config_digest, input_digest=input_digest, parts_written=written_parts, parts_deleted=deleted_parts,
        parquet=gp is not None, files=files, files_gone=sorted(stale_pieces) + further_gone,
    ))
    shutil.rmtree(marks, ignore_errors=True)  # the state describes the pieces rewritten in place
    return {
        "unit": "export",
        "collection": coll.key,
        "items_changed": changed,
        "items_removed": removed,
        "partitions_written": len(written_parts),
        "partitions_deleted": len(deleted_parts),
        "partitions": len(parts),
    }


def _tidy_pieces(project: Project, coll: CollectionSpec, parts: set[str]) -> None:
    """Remove pgstac files that are not pieces of the current partitions: the other location's
    (``pgstac`` turned on or off), and an earlier stacgit's (one ``items.ndjson`` per collection,
    and pieces kept under ``.stacgit/exports``)."""
    pdir, other = piece_dirs(project, coll)
    shutil.rmtree(other, ignore_errors=True)
    keep = {f"{part}.ndjson" for part in parts}
    for f in pdir.iterdir() if pdir.is_dir() else ():
        if f.name not in keep:
            f.unlink()


def catalog_exports(project: Project, con, cat, writer) -> None:
    """After the collections are exported: ``pgstac/collections.ndjson``, the collections in the
    form ``pypgstac load collections`` takes. (What changed since the last publish is computed
    by ``publish`` from the published manifest: the build holds no history.)"""
    out_dir = project.build_dir / cat.id
    pg = [c for c in cat.collections if c.pgstac and (out_dir / c.id / "collection.json").is_file()]  # built ones
    if pg:
        data = b"".join(orjson.dumps(collection_doc_for_metadata(out_dir, c, parquet=False), option=orjson.OPT_SORT_KEYS) + b"\n" for c in pg)
        rel = "pgstac/collections.ndjson"
        if not (out_dir / rel).exists() or (out_dir / rel).read_bytes() != data:
            writer.write(rel, data)
        ex.set_catalog_file(con, cat.id, rel, "pgstac", sha256_bytes(data), len(data))
    else:
        (out_dir / "pgstac" / "collections.ndjson").unlink(missing_ok=True)
        ex.drop_catalog_files(con, cat.id, ["pgstac/collections.ndjson"])


