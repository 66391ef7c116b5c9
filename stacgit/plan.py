"""What is stale and why. Decides; never executes.

The same checks serve doit (as ``uptodate`` callables of the build tasks) and
``stacgit status``. They are cheap: a shard is checked by one ``stat`` (and a hash only when
size or mtime moved), a collection and a catalog by a few state rows and one output file.
Nothing here stats or hashes item files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from stacgit.state import freshness, outputs
from stacgit import state as st
from stacgit.gitinfo import commit_times
from stacgit.hashing import digest_file, digest_obj, sha256_file
from stacgit.extensions import ExtensionUse, compile_uses, with_extensions
from stacgit.mapping import PASSTHROUGH, MappingSpec, load_mapping
from stacgit.project import CatalogSpec, CollectionSpec, Project
from stacgit.verdicts import validation_digest

_MAPPINGS: dict[tuple[str, int, int], MappingSpec] = {}
_USES: dict[tuple[str, str], list[ExtensionUse]] = {}
_WITH_EXTENSIONS: dict[tuple[str, str, str], MappingSpec] = {}


def get_mapping(project: Project, coll: CollectionSpec) -> MappingSpec:
    """Load (once per process and file version) the mapping of a collection, with the
    collection's extensions applied to every item it renders."""
    if coll.mapping_path is None:
        spec = PASSTHROUGH
    else:
        path = project.root / coll.mapping_path
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        spec = _MAPPINGS.get(key)
        if spec is None:
            spec = _MAPPINGS[key] = load_mapping(path, coll.mapping_path)
    if not coll.extensions:
        return spec
    key = (coll.key, spec.digest, digest_obj(list(coll.extensions)))
    wrapped = _WITH_EXTENSIONS.get(key)
    if wrapped is None:  # once per process: the wrapper's digest reads plugin versions
        wrapped = _WITH_EXTENSIONS[key] = with_extensions(spec, extension_uses(coll))
    return wrapped


def extension_uses(coll: CollectionSpec) -> list[ExtensionUse]:
    """The collection's ``extensions:`` entries, checked and compiled (once per process)."""
    if not coll.extensions:
        return []
    key = (coll.key, digest_obj(list(coll.extensions)))
    uses = _USES.get(key)
    if uses is None:
        uses = _USES[key] = compile_uses(coll.source_doc, list(coll.extensions), coll.extensions_keypath)
    return uses


def patch_fingerprint(project: Project, coll: CollectionSpec) -> list:
    """The patches of a collection as they affect its outputs: content and commit time."""
    patches = project.patches_for(coll) + project.patches_for(coll, "collection")
    if not patches:
        return []
    times = commit_times(project.root, sorted({p.file for p in patches}))
    return [(p.key, p.digest, times[p.file]) for p in patches]


def collection_input_digest(con, coll: CollectionSpec, shards: list[str], patches: list) -> str | None:
    """Fingerprint of everything the collection's outputs depend on; None if a shard is unbuilt."""
    rows = freshness.shard_results(con, coll.catalog_id, coll.id)
    if any(s not in rows for s in shards):
        return None
    return digest_obj([coll.aggregate_digest(), [(s, rows[s]) for s in shards], patches])


def catalog_input_digest(project: Project, con, cat: CatalogSpec, validate: bool = True, validator=None) -> str | None:
    """Fingerprint of the catalog task's inputs: its collections and, when the build validates,
    the content of the schemas its documents were validated against."""
    rows = freshness.collection_inputs(con, cat.id)
    if any(c.id not in rows or rows[c.id] is None for c in cat.collections):
        return None
    exports = freshness.export_inputs(con, cat.id)
    if any(c.id not in exports for c in cat.collections):
        return None
    checks = validation_digest(project, con, cat, validator) if validate else "not validated"
    return digest_obj([cat.root_digest(), [(c.id, rows[c.id], exports[c.id]) for c in cat.collections], checks])




class Reason(str, Enum):
    NEW = "new"
    SOURCE_CHANGED = "source changed"
    MAPPING_CHANGED = "mapping changed"
    CONFIG_CHANGED = "config changed"
    PATCH_CHANGED = "patch changed"
    OUTPUT_MISSING = "output missing"
    OUTPUT_MODIFIED = "output modified"
    ORPHANED = "orphaned"


REPAIRS = frozenset({Reason.OUTPUT_MISSING, Reason.OUTPUT_MODIFIED})
"""Reasons that only ask for a file to be written again: what depends on it does not change."""


@dataclass(frozen=True)
class StaleUnit:
    unit: str  # task name, e.g. build:shift/aviris-ng/catalogs/shift/sources/x.csv
    reason: Reason
    detail: str = ""

    def to_dict(self) -> dict:
        return {"unit": self.unit, "reason": self.reason.value, "detail": self.detail}


def shard_task(coll: CollectionSpec, shard: str) -> str:
    return f"build:{coll.key}/{shard}"


def collection_task(coll: CollectionSpec) -> str:
    return f"collection:{coll.key}"


def export_task(coll: CollectionSpec) -> str:
    return f"export:{coll.key}"


def catalog_task(cat: CatalogSpec) -> str:
    return f"catalog:{cat.id}"


def shard_reason(project: Project, coll: CollectionSpec, shard: str, row: tuple | None, refresh: bool = False) -> Reason | None:
    """row: (size, mtime_ns, file_digest, config_digest, cache_file) from the state, or None."""
    if row is None:
        return Reason.NEW
    size, mtime_ns, file_digest, config_digest, cache_file = row
    if config_digest != coll.config_digest(get_mapping(project, coll).digest):
        return Reason.MAPPING_CHANGED
    path = project.root / shard
    stat = os.stat(path)
    if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
        if stat.st_size != size or digest_file(str(path)) != file_digest:
            return Reason.SOURCE_CHANGED
        if refresh:  # same bytes, new mtime (e.g. git checkout): remember the new stat
            freshness.touch_shard(st.connect(project.state_dir), coll.catalog_id, coll.id, shard, stat.st_size, stat.st_mtime_ns)
    if not cache_file or not (project.state_dir / "cache" / coll.catalog_id / cache_file).exists():
        return Reason.OUTPUT_MISSING
    return None


def shard_rows(project: Project, coll: CollectionSpec) -> dict[str, tuple]:
    return freshness.shard_stats(st.connect(project.state_dir), coll.catalog_id, coll.id)


def _output_reason(project: Project, catalog_id: str, path: str) -> Reason | None:
    sha = freshness.output_sha(st.connect(project.state_dir), catalog_id, path)
    full = project.build_dir / catalog_id / path
    if sha is None or not full.exists():
        return Reason.OUTPUT_MISSING
    if sha256_file(str(full)) != sha:
        return Reason.OUTPUT_MODIFIED
    return None


def collection_reason(project: Project, coll: CollectionSpec, shards: list[str]) -> Reason | None:
    con = st.connect(project.state_dir)
    row = freshness.collection_aggregate(con, coll.catalog_id, coll.id)
    if row is None:
        return Reason.NEW
    patches = patch_fingerprint(project, coll)
    if row[0] != collection_input_digest(con, coll, shards, patches):
        if row[1] != digest_obj(patches):
            return Reason.PATCH_CHANGED
        return Reason.SOURCE_CHANGED
    if freshness.has_pending(con, coll.catalog_id, coll.id):
        return Reason.OUTPUT_MODIFIED
    return _output_reason(project, coll.catalog_id, f"{coll.id}/collection.json")


def catalog_reason(project: Project, cat: CatalogSpec, validate: bool = True) -> Reason | None:
    con = st.connect(project.state_dir)
    row = freshness.catalog_input(con, cat.id)
    if row is None:
        return Reason.NEW
    if row[0] is None or row[0] != catalog_input_digest(project, con, cat, validate):
        return Reason.CONFIG_CHANGED
    reason = _output_reason(project, cat.id, "catalog.json")
    if reason is None and not (project.build_dir / cat.id / "manifest.json").exists():
        reason = Reason.OUTPUT_MISSING
    return reason


def stale_units(project: Project, export_stale: Callable[[CollectionSpec], StaleUnit | None] | None = None) -> list[StaleUnit]:
    """Every stale unit with its reason, in build order; orphans last. ``export_stale`` tells
    whether a collection's exports are (the exports module sits above this one)."""
    stale: list[StaleUnit] = []
    con = st.connect(project.state_dir)
    for cat in project.catalogs.values():
        cat_stale = False
        for coll in cat.collections:
            shards = project.shard_paths(coll)
            rows = shard_rows(project, coll)
            coll_stale = False
            for shard in shards:
                reason = shard_reason(project, coll, shard, rows.get(shard))
                if reason is not None:
                    stale.append(StaleUnit(shard_task(coll, shard), reason))
                    coll_stale = True
            for gone in sorted(set(rows) - set(shards)):
                stale.append(StaleUnit(shard_task(coll, gone), Reason.ORPHANED, "source file no longer configured or present"))
                coll_stale = True
            reason = collection_reason(project, coll, shards)
            if reason is None and coll_stale:
                reason = Reason.SOURCE_CHANGED
            if reason is not None:
                stale.append(StaleUnit(collection_task(coll), reason))
                # a repaired output does not change what the catalog root lists
                cat_stale = cat_stale or reason not in REPAIRS
            if export_stale is not None:
                # new items or new settings make the exports stale too; a repaired file does not
                follows = reason is not None and reason not in REPAIRS
                unit = StaleUnit(export_task(coll), reason) if follows else export_stale(coll)
                if unit is not None:
                    stale.append(unit)
                    cat_stale = cat_stale or unit.reason not in REPAIRS
        reason = catalog_reason(project, cat)
        if reason is None and cat_stale:
            reason = Reason.SOURCE_CHANGED
        known = set(freshness.collection_inputs(con, cat.id))
        for gone in sorted(known - {c.id for c in cat.collections}):
            stale.append(StaleUnit(f"collection:{cat.id}/{gone}", Reason.ORPHANED, "collection removed from catalog.yaml"))
            reason = reason or Reason.CONFIG_CHANGED
        if reason is not None:
            stale.append(StaleUnit(catalog_task(cat), reason))
    for cat_id in sorted(outputs.built_catalogs(con)):
        if cat_id not in project.catalogs:
            stale.append(StaleUnit(f"catalog:{cat_id}", Reason.ORPHANED, "catalog removed from catalogs/"))
    return stale
