"""Authoring patches: write new patch files, dry-run them against the current build, list them.

Nothing here touches build output: ``new``/``delete`` write a file under ``patches/`` (checked
by loading it back), ``check`` reads the build state and the cached mapped items.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import yaml

from stacgit.state import reports, shards
from stacgit import gitinfo
from stacgit import state as st
from stacgit.engine import cache_dir
from stacgit.errors import ConfigError, StacgitError
from stacgit.extensions import json_pointer
from stacgit.patches import PATCH_DIR, Patch, PatchFailed, load_patch_file
from stacgit.patching import BodyReader
from stacgit.project import CollectionSpec, Project


def resolve_collection(project: Project, name: str) -> CollectionSpec:
    """``catalog/collection``, or a collection id that is unique across catalogs."""
    if "/" in name:
        cat_id, _, coll_id = name.partition("/")
        return project.catalog(cat_id).collection(coll_id)
    hits = [c for c in project.iter_collections() if c.id == name]
    if not hits:
        known = sorted(c.key for c in project.iter_collections())
        raise ConfigError(f"--collection: no collection '{name}' (known: {', '.join(known)})")
    if len(hits) > 1:
        raise ConfigError(f"--collection: '{name}' is in several catalogs; write catalog/collection")
    return hits[0]


def to_pointer(path: str) -> str:
    """``properties.eo:cloud_cover`` or ``/properties/eo:cloud_cover`` -> a JSON Pointer."""
    if path.startswith("/"):
        return path
    return json_pointer(*path.split("."))


def parse_assignment(text: str) -> tuple[str, Any]:
    """``PATH=VALUE``; VALUE is read as a YAML scalar or flow value (12 -> 12, true -> true,
    [a, b] -> a list); quote it to keep a string (``'12'``)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected PATH=VALUE")
    path, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: cannot read the value: {str(exc).splitlines()[0]}") from None
    return to_pointer(path.strip()), value


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:50] or "patch"


def _next_path(project: Project, description: str) -> Path:
    pdir = project.root / PATCH_DIR
    pdir.mkdir(exist_ok=True)
    numbers = [int(m.group(1)) for p in pdir.iterdir() if (m := re.match(r"(\d{4})-", p.name))]
    return pdir / f"{max(numbers, default=0) + 1:04d}-{_slug(description)}.yaml"


def write_patch(project: Project, collection: str, ids: list[str], where: str | None, sets: list[str], removes: list[str], description: str | None, delete: bool = False) -> Path:
    """Write one new patch file and load it back (so a bad one is never left behind)."""
    coll = resolve_collection(project, collection)
    if not ids and not where:
        raise ConfigError("give --ids or --where (or both)")
    ops = [{"op": "add", "path": p, "value": v} for p, v in map(parse_assignment, sets)]
    ops += [{"op": "remove", "path": to_pointer(p)} for p in removes]
    if not delete and not ops:
        raise ConfigError("nothing to change: give --set PATH=VALUE and/or --remove PATH")
    what = f"{len(ids)} item(s)" if ids else "items matching the filter"
    if description is None:
        description = f"Delete {what} of {coll.key}" if delete else f"Update {', '.join(o['path'] for o in ops)} of {what} in {coll.key}"
    doc: dict[str, Any] = {"description": description, "target": {"catalog": coll.catalog_id, "collection": coll.id}, "select": {}}
    if ids:
        doc["select"]["ids"] = list(ids)
    if where:
        doc["select"]["cql2"] = where
    if delete:
        doc["delete"] = True
    else:
        doc["ops"] = ops
    path = _next_path(project, description)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100))
    try:
        load_patch_file(project.root, path)
    except StacgitError:
        path.unlink()
        raise
    return path


# --------------------------------------------------------------------------- check


def _collection_items(project: Project, coll: CollectionSpec) -> tuple[dict[str, tuple], BodyReader]:
    con = st.connect(project.state_dir)
    key = (coll.catalog_id, coll.id)
    items = shards.cached_bodies(con, *key)
    return items, BodyReader(str(cache_dir(project, coll.catalog_id)), shards.cache_files(con, *key))


def check_patches(project: Project, files: list[Path] | None = None, sample: int = 5) -> dict:
    """Dry-run patches against the mapped items of the last build.

    Every patch of the repository runs in order (so a patch sees what earlier ones did); the
    report covers the patches of ``files`` (default: all): matched items, the JSON Patch each
    causes on a sample of them, and failures. Nothing is written.
    """
    if not st.state_path(project.state_dir).exists():
        raise StacgitError("no build state yet: run `stacgit build` first")
    patches = list(project.patches)
    if files:
        wanted: list[Patch] = []
        for f in files:
            p = Path(f).resolve()
            if not p.is_file():
                raise ConfigError(f"{f}: no such patch file")
            loaded = load_patch_file(project.root, p) if p.is_relative_to(project.root) else []
            if not loaded:
                raise ConfigError(f"{f}: not a patch file of this repository (put it under {PATCH_DIR}/)")
            wanted.extend(loaded)
        keys = {p.key for p in wanted}
        patches = sorted({p.key: p for p in patches + wanted}.values(), key=lambda p: (p.file, p.index))
    else:
        keys = {p.key for p in patches}
    report: dict[str, dict] = {p.key: {"description": p.description, "matched": 0, "deleted": 0, "failed": [], "changes": [], "unmatched_ids": []} for p in patches if p.key in keys}
    for coll in project.iter_collections():
        relevant = [p for p in patches if p.document == "item" and p.targets(coll.catalog_id, coll.id)]
        if not relevant:
            continue
        items, reader = _collection_items(project, coll)
        try:
            docs: dict[str, dict] = {}  # as patched so far
            mapped: dict[str, dict] = {}  # as mapped: what CQL2 selectors see (as in the build)
            gone: set[str] = set()
            for p in relevant:
                rep = report.get(p.key)
                if p.ids is not None:
                    candidates = [i for i in p.ids if i in items]
                    if rep is not None:
                        rep["unmatched_ids"].append([coll.key, sorted(set(p.ids) - set(items))])
                else:
                    candidates = list(items)
                for item_id in candidates:
                    if item_id in gone:
                        continue
                    if item_id not in mapped:
                        mapped[item_id] = orjson.loads(reader.read(*items[item_id]))
                    if p.cql2 is not None and not p.expr().matches(mapped[item_id]):
                        continue
                    doc = docs.get(item_id) or mapped[item_id]
                    if rep is not None:
                        rep["matched"] += 1
                    if p.delete:
                        gone.add(item_id)
                        if rep is not None:
                            rep["deleted"] += 1
                        continue
                    try:  # on a copy: doc stays the item before this patch
                        after = p.apply(orjson.loads(orjson.dumps(doc)))
                    except PatchFailed as exc:
                        if rep is not None:
                            rep["failed"].append({"item_id": item_id, "op": exc.op_index, "reason": exc.reason})
                        continue
                    docs[item_id] = after
                    if rep is not None and len(rep["changes"]) < sample:
                        rep["changes"].append({"item_id": item_id, "patch": jsonpatch.make_patch(doc, after).patch})
        finally:
            reader.close()
    for key, rep in report.items():
        lists = [set(u) for _, u in rep.pop("unmatched_ids")]
        rep["unmatched_ids"] = sorted(set.intersection(*lists)) if lists else []
    return {"patches": report, "ok": all(not r["failed"] and not r["unmatched_ids"] for r in report.values())}


def list_patches(project: Project) -> list[dict]:
    """Every patch with its target, selector, action, commit time and (last build) counts."""
    times = gitinfo.commit_times(project.root, sorted({p.file for p in project.patches}))
    counts: dict[str, list[int]] = {}
    if st.state_path(project.state_dir).exists():
        con = st.connect(project.state_dir)
        for _, _, key, matched, patched, deleted, failed, _ in reports.patch_stats(con):
            c = counts.setdefault(key, [0, 0, 0, 0])
            for i, v in enumerate((matched, patched, deleted, failed)):
                c[i] += v
    out = []
    for p in project.patches:
        select = []
        if p.ids is not None:
            select.append(f"{len(p.ids)} id(s)")
        if p.cql2 is not None:
            select.append("cql2: " + (p.cql2 if isinstance(p.cql2, str) else orjson.dumps(p.cql2).decode()))
        c = counts.get(p.key, [0, 0, 0, 0])
        out.append(
            {
                "patch": p.key,
                "target": f"{p.catalog}/{p.collection}" + ("" if p.document == "item" else " (collection document)"),
                "select": "; ".join(select) or "-",
                "action": "delete" if p.delete else f"{len(p.ops)} op(s)",
                "description": p.description,
                "committed": times[p.file],
                "matched": c[0],
                "patched": c[1],
                "deleted": c[2],
                "failed": c[3],
            }
        )
    return out
