"""What a publish to pgstac changes: the collections and items of a build (``BuiltCollection``,
from its ``manifest.json`` and pgstac files), and per collection the plan (``CollectionPlan``) of
items to delete and insert against what the database holds. No database access here
(``pgstac_db`` reads and writes it)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import orjson

from stacgit.errors import PublishError
from stacgit.exports import pgstac_line
from stacgit.feed import item_key
from stacgit.project import Project
from stacgit.stores import check_rel
from stacgit.writers import read_manifest


FILES_OR_PIECES = 8
"""Inserting ``n`` items of a collection of ``N``: their own files are read when ``n`` times this is
less than ``N``; otherwise the collection's pgstac files are read through, which costs about
this much less per item (one sequential read, compact lines) but takes every item's time."""


@dataclass
class BuiltCollection:
    id: str
    doc: bytes  # the line of pgstac/collections.ndjson
    partition_trunc: str | None
    pieces: list[Path]
    items: dict[str, tuple[str, str]]  # id -> (sha256 of the item's file, its path), from manifest.json
    out_dir: Path

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.doc + (self.partition_trunc or "").encode()).hexdigest()

    def pgstac_items(self, wanted: set[str] | None = None) -> Iterator[dict]:
        """Every item (or the ``wanted`` ones) as pgstac takes it: read from their own files when
        few (``FILES_OR_PIECES``), else from the build's pgstac files, in their order."""
        if wanted is not None and len(wanted) * FILES_OR_PIECES < len(self.items):
            for item_id in sorted(wanted):
                rel = check_rel(self.items[item_id][1], str(self.out_dir / "manifest.json"))
                yield orjson.loads(pgstac_line(orjson.loads((self.out_dir / rel).read_bytes())))
            return
        for piece in self.pieces:
            with open(piece, "rb") as f:
                for line in f:
                    item = orjson.loads(line)
                    if wanted is None or item["id"] in wanted:
                        yield item


@dataclass
class CollectionPlan:
    collection: str
    upsert: bool = False  # the collection document or its partitioning changed
    rewrite_record: bool = False  # --verify/--force: our record of the collection is written again whole
    delete: list[str] = field(default_factory=list)  # ids deleted (gone, or changed: inserted again)
    insert: list[str] = field(default_factory=list)  # ids inserted (new, or changed)
    changed: int = 0
    removed: bool = False  # the collection is gone from the build

    @property
    def empty(self) -> bool:
        return not (self.upsert or self.delete or self.insert or self.removed or self.rewrite_record)


def built_collections(project: Project, catalog: str) -> dict[str, BuiltCollection]:
    """The collections of a built catalog that have pgstac output, their items (from the build's
    manifest) and their pgstac files."""
    out_dir = project.build_dir / catalog
    docs = out_dir / "pgstac" / "collections.ndjson"
    try:
        files = read_manifest(out_dir)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise PublishError(f"{out_dir / 'manifest.json'}: not a stacgit build manifest: run stacgit build") from None
    if files is None or not (out_dir / "catalog.json").is_file():
        raise PublishError(f"{catalog}: nothing built; run `stacgit build` first")
    found: dict[str, BuiltCollection] = {}
    if not docs.is_file():
        return found
    cat = project.catalog(catalog)
    for line in docs.read_bytes().splitlines():
        coll_id = orjson.loads(line)["id"]
        spec = next((c for c in cat.collections if c.id == coll_id), None)
        partition = (spec.geoparquet or {}).get("partition") if spec else None
        pieces = sorted((out_dir / "pgstac" / coll_id).glob("*.ndjson"))
        found[coll_id] = BuiltCollection(coll_id, line, partition if partition in ("year", "month") else None, pieces, {}, out_dir)
    for rel, entry in files.items():
        key = item_key(rel)
        if key is not None and key[0] in found:
            found[key[0]].items[key[1]] = (entry["sha256"], rel)
    return found


def stored_digest(item: dict) -> str:
    """The digest of an item as pgstac gives it back: pgstac drops fields whose value is null
    (``"datetime": null`` beside a range, for one), so both sides are compared without them."""
    return hashlib.sha256(orjson.dumps(_without_nulls(item), option=orjson.OPT_SORT_KEYS)).hexdigest()


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def plan_collection(built: BuiltCollection | None, coll_id: str, known_digest: str | None, held: dict[str, str], check_database: bool) -> CollectionPlan:
    """What to change in one collection. ``held``: id -> digest of each item, either our record
    of the last publish (the sha256 of the item's file, as in the build's manifest) or
    (``check_database``: --verify, --force, a first publish) the items the database really holds
    (``stored_digest``), compared with the build's."""
    plan = CollectionPlan(coll_id)
    if built is None:
        plan.removed = True
        return plan
    plan.upsert = plan.rewrite_record = known_digest != built.digest or check_database
    if check_database:
        both = held.keys() & built.items.keys()
        same = {item["id"] for item in built.pgstac_items(both) if held[item["id"]] == stored_digest(item)} if both else set()
    else:
        same = {item_id for item_id, digest in held.items() if built.items.get(item_id, (None,))[0] == digest}
    for item_id in built.items:
        if item_id in same:
            continue
        if item_id in held:
            plan.delete.append(item_id)
            plan.changed += 1
        plan.insert.append(item_id)
    plan.delete += sorted(held.keys() - built.items.keys())
    return plan


@dataclass
class DatabasePublish:
    """What a publish to pgstac did (or, dry, would do), per catalog."""

    catalog: str
    target: str
    collections: list[CollectionPlan] = field(default_factory=list)
    generation: int | None = None
    commit: str | None = None

    def count(self, what: str) -> int:
        if what == "inserted":
            return sum(len(p.insert) - p.changed for p in self.collections)
        if what == "updated":
            return sum(p.changed for p in self.collections)
        if what == "deleted":
            return sum(len(p.delete) - p.changed for p in self.collections)
        return sum(1 for p in self.collections if getattr(p, what))

    def line(self, dry_run: bool) -> str:
        would = "would be " if dry_run else ""
        return (f"{self.catalog} -> {self.target}: items {would}inserted {self.count('inserted'):,}, updated {self.count('updated'):,}, "
                f"deleted {self.count('deleted'):,}; collections {would}written {self.count('upsert')}, removed {self.count('removed')}"
                + ("" if dry_run else f"; generation {self.generation}"))

    def to_json(self) -> dict:
        return {
            "catalog": self.catalog, "target": self.target,
            "items": {k: self.count(k) for k in ("inserted", "updated", "deleted")},
            "collections": {"written": self.count("upsert"), "removed": self.count("removed")},
            "generation": self.generation, "commit": self.commit,
        }


@dataclass
class DatabaseReport:
    """``stacgit publish --to postgresql://...``: one ``DatabasePublish`` per catalog."""

    dry_run: bool
    catalogs: list[DatabasePublish] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"dry_run": self.dry_run, "catalogs": [c.to_json() for c in self.catalogs]}

    def format(self) -> str:
        return "\n".join(c.line(self.dry_run) for c in self.catalogs)
