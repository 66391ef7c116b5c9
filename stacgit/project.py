"""A catalog repository: ``catalogs/<id>/catalog.yaml`` files, their collections and sources.

Loading checks every key (unknown keys get a "did you mean"), every type and every required
key, and reports ``file:line: key.path: message``. Everything downstream receives frozen specs.
The keys themselves are in ``stacgit.catalog_yaml``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import jmespath

from stacgit import _spec as S
from stacgit._yaml import Located, load_yaml
from stacgit import sources
from stacgit.columns import TYPES as COLUMN_TYPES
from stacgit.errors import ConfigError
from stacgit.hashing import FORMAT_VERSION, digest_obj
from stacgit.patches import Patch, load_patches
from stacgit.catalog_yaml import API_KEYS, CATALOG_NODE, DEFAULT_MAX_ITEMS, HTTP_JSON_KEYS, ITEM_PATHS, LINK, SPLIT_LEVELS


MAX_ID_BYTES = 200


_RESERVED_IDS = {"catalog", "collection", "catalog.json", "collection.json", "manifest.json", "failed.ndjson", "pgstac", "changes", "parquet"}


def check_id(value: Any, what: str) -> str | None:
    """Return why ``value`` cannot be a safe path segment / STAC id, or None when it can."""
    if not isinstance(value, str) or not value:
        return f"{what} must be a non-empty string"
    if value in (".", ".."):
        return f"{what} {value!r} is not allowed"
    if "/" in value or "\\" in value:
        return f"{what} {value!r} contains a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{what} {value!r} contains a control character"
    if any(c.isspace() for c in value):
        return f"{what} {value!r} contains white space (a link to it would need escaping that clients get wrong)"
    bad = next((c for c in "#?%" if c in value), None)
    if bad:
        return f"{what} {value!r} contains {bad!r}, which no client can follow in a relative href (it starts a URL fragment, query or escape)"
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        return f"{what} is longer than {MAX_ID_BYTES} bytes: {value[:40]!r}..."
    if value.lower() in _RESERVED_IDS:
        return f"{what} {value!r} is a reserved name"
    return None


@dataclass(frozen=True)
class LayoutSpec:
    max_items: int = DEFAULT_MAX_ITEMS
    split: tuple[str, ...] = SPLIT_LEVELS
    item_path: str = ITEM_PATHS[0]


@dataclass(frozen=True)
class SourceSpec:
    type: str  # file | stac-api
    patterns: tuple[str, ...]
    format: str | None
    delimiter: str
    api: dict | None = None  # stac-api: the options of API_KEYS that were given

    @property
    def is_snapshot(self) -> bool:
        return self.type != "file"


@dataclass(frozen=True)
class CollectionSpec:
    catalog_id: str
    id: str
    meta: dict  # title, description, license, keywords, providers, extra fields, links
    source: SourceSpec
    mapping_path: str | None  # relative to the project root, posix; None: STAC items pass through
    defaults: dict
    layout: LayoutSpec
    index: int  # position in catalog.yaml (for error messages)
    extensions: tuple[dict, ...] = ()  # raw ``extensions:`` entries (compiled by stacgit.extensions)
    validate_schemas: tuple[str, ...] = ()  # extra schema URLs or repo-relative paths
    geoparquet: dict | None = None  # {partition, columns, undeclared}; None: no GeoParquet
    pgstac: bool = True
    outputs: tuple[str, ...] = ()  # further export formats (stacgit.exports.formats)
    source_doc: Located | None = field(default=None, compare=False, repr=False)  # catalog.yaml, for error lines

    @property
    def key(self) -> str:
        return f"{self.catalog_id}/{self.id}"

    def config_digest(self, mapping_digest: str) -> str:
        """Everything that decides how a record becomes an item body (and whether its field
        types are kept, to infer GeoParquet columns from)."""
        infer = bool(self.geoparquet and self.geoparquet["undeclared"] == "infer")
        return digest_obj([FORMAT_VERSION, self.key, mapping_digest, self.defaults, self.source.format, self.source.delimiter, infer])

    def aggregate_digest(self) -> str:
        """Everything besides item bodies that decides the collection's outputs."""
        return digest_obj([FORMAT_VERSION, self.meta, self.layout.__dict__, list(self.extensions)])

    def export_digest(self) -> str:
        """Everything besides item files that decides the GeoParquet and pgstac outputs."""
        from stacgit import output_formats as formats

        return digest_obj([FORMAT_VERSION, self.geoparquet, self.pgstac, [(n, formats.get(n).version) for n in self.outputs]])

    @property
    def extensions_keypath(self) -> tuple:
        return ("collections", self.index, "extensions")


@dataclass(frozen=True)
class CatalogSpec:
    id: str
    dir: Path
    yaml_path: str  # relative display path
    meta: dict  # title, description, license
    links: tuple[dict, ...]
    publish: dict
    collections: tuple[CollectionSpec, ...] = field(default_factory=tuple)

    def collection(self, collection_id: str) -> CollectionSpec:
        for c in self.collections:
            if c.id == collection_id:
                return c
        raise ConfigError(f"{self.yaml_path}: no collection '{collection_id}'")

    def root_digest(self) -> str:
        return digest_obj([FORMAT_VERSION, self.meta, list(self.links), [c.id for c in self.collections]])


def _source(doc: Located, src: dict, kp: tuple, coll_id: str) -> SourceSpec:
    if src["type"] == "file":
        extra = sorted(k for k in src if k in API_KEYS)
        if extra:
            raise S.fail(doc, kp + (extra[0],), "only for sources of type stac-api")
        if "path" not in src:
            raise S.fail(doc, kp, "missing required key 'path'")
        patterns = src["path"] if isinstance(src["path"], list) else [src["path"]]
        if not patterns or not all(isinstance(p, str) for p in patterns):
            raise S.fail(doc, kp + ("path",), "must be a path or a non-empty list of paths")
        patterns = [_pattern_ok(doc, p, kp + ("path",)) for p in patterns]
        if "format" in src and src["format"] not in sources.format_names():
            known = sources.format_names()
            raise S.fail(doc, kp + ("format",), f"unknown format {src['format']!r}{S.did_you_mean(src['format'], known)} (one of {', '.join(known)})")
        return SourceSpec("file", tuple(patterns), src.get("format"), src.get("delimiter", ","))
    for key in ("path", "format", "delimiter"):
        if key in src:
            raise S.fail(doc, kp + (key,), f"not used by a {src['type']} source (its files are snapshots/{coll_id}/*.ndjson)")
    if src["type"] == "http-json":
        extra = sorted(k for k in src if k in API_KEYS and k not in HTTP_JSON_KEYS)
        if extra:
            raise S.fail(doc, kp + (extra[0],), "not used by an http-json source")
    for key in ("url",) if src["type"] == "http-json" else ("url", "collection"):
        if key not in src:
            raise S.fail(doc, kp, f"missing required key '{key}'")
    url = src["url"]
    if not url.startswith(("http://", "https://")):
        raise S.fail(doc, kp + ("url",), f"must be an http(s) URL, got {url!r}")
    if "bbox" in src and len(src["bbox"]) not in (4, 6):
        raise S.fail(doc, kp + ("bbox",), "must have 4 (or 6) numbers")
    for key, low in (("page_size", 1), ("concurrency", 1), ("retries", 0), ("max_pages", 1), ("max_window_items", 1)):
        if key in src and src[key] < low:
            raise S.fail(doc, kp + (key,), f"must be at least {low}")
    for key in ("records", "next", "key", "head"):
        if key in src:
            try:
                jmespath.compile(src[key])
            except jmespath.exceptions.JMESPathError as exc:
                raise S.fail(doc, kp + (key,), f"invalid JMESPath {src[key]!r}: {str(exc).splitlines()[0]}") from None
    api = {k: v for k, v in src.items() if k != "type"}
    return SourceSpec(src["type"], (f"snapshots/{coll_id}/*.ndjson",), "ndjson", ",", api)


def _layout(doc: Located, raw: dict | None, base: LayoutSpec, kp: tuple) -> LayoutSpec:
    if not raw:
        return base
    max_items = raw.get("max_items_per_catalog", base.max_items)
    if max_items < 2:
        raise S.fail(doc, kp + ("max_items_per_catalog",), "must be at least 2")
    split = tuple(raw.get("split", base.split))
    if list(split) != [lvl for lvl in SPLIT_LEVELS if lvl in split]:
        raise S.fail(doc, kp + ("split",), "levels must be in order year, month, day without repeats")
    return LayoutSpec(max_items, split, raw.get("item_path", base.item_path))


def _links(doc: Located, raw: Any) -> tuple[dict, ...]:
    if raw is None:
        return ()
    if isinstance(raw, dict):
        out = []
        for rel, href in sorted(raw.items()):
            if not isinstance(href, str):
                raise S.fail(doc, ("links", rel), "must be a URL string")
            out.append({"rel": rel, "href": href})
        return tuple(out)
    S.check(doc, S.lst(LINK), raw, ("links",))
    return tuple(raw)


def _schema_refs(root: Path, doc: Located, refs: list[str], kp: tuple) -> list[str]:
    """Custom schemas: http(s) URLs as given, files as repo-relative posix paths that exist."""
    out = []
    for i, ref in enumerate(refs):
        if ref.startswith(("https://", "http://")):
            out.append(ref)
            continue
        rel = PurePosixPath(ref)
        if rel.is_absolute() or ".." in rel.parts:
            raise S.fail(doc, kp + (i,), "must be an http(s) URL or a path relative to the repository root")
        if not (root / rel).is_file():
            raise S.fail(doc, kp + (i,), f"schema file {rel} does not exist")
        out.append(rel.as_posix())
    return out


def _pattern_ok(doc: Located, pattern: str, kp: tuple) -> str:
    p = PurePosixPath(pattern)
    if p.is_absolute() or re.match(r"^[A-Za-z]:", pattern) or ".." in p.parts:
        raise S.fail(doc, kp, f"source path {pattern!r} must be relative to the catalog directory and stay inside it")
    return pattern


def load_catalog(root: Path, yaml_file: Path) -> CatalogSpec:
    display = yaml_file.relative_to(root).as_posix()
    doc = load_yaml(yaml_file, display)
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{display}: must be a YAML mapping")
    S.check(doc, CATALOG_NODE)
    data = doc.data
    cat_id = data["id"]
    if (why := check_id(cat_id, "catalog id")) is not None:
        raise S.fail(doc, ("id",), why)
    if cat_id != yaml_file.parent.name:
        raise S.fail(doc, ("id",), f"catalog id '{cat_id}' must match its directory name '{yaml_file.parent.name}'")
    base_layout = _layout(doc, data.get("layout"), LayoutSpec(), ("layout",))
    collections = []
    seen: dict[str, int] = {}
    for i, c in enumerate(data["collections"]):
        kp = ("collections", i)
        cid = c["id"]
        if (why := check_id(cid, "collection id")) is not None:
            raise S.fail(doc, kp + ("id",), why)
        if cid in seen:
            raise S.fail(doc, kp + ("id",), f"duplicate collection id '{cid}' (also collections[{seen[cid]}])")
        seen[cid] = i
        src = c["source"]
        source = _source(doc, src, kp + ("source",), cid)
        mapping_rel = None
        if "mapping" in c:
            mapping_rel = PurePosixPath(c["mapping"])
            if mapping_rel.is_absolute() or ".." in mapping_rel.parts:
                raise S.fail(doc, kp + ("mapping",), "must be a path relative to the repository root, e.g. mappings/x.yaml")
            if not (root / mapping_rel).is_file():
                raise S.fail(doc, kp + ("mapping",), f"mapping file {mapping_rel} does not exist")
        meta: dict[str, Any] = {"description": c["description"], "license": c.get("license", data.get("license", "other"))}
        for k in ("title", "keywords", "providers", "links"):
            if k in c:
                meta[k] = c[k]
        meta["extra_fields"] = c.get("extra_fields", {})
        gp = _geoparquet(doc, data.get("geoparquet"), c.get("geoparquet"), kp + ("geoparquet",), mapping_rel is None)
        collections.append(
            CollectionSpec(
                catalog_id=cat_id,
                id=cid,
                meta=meta,
                source=source,
                mapping_path=mapping_rel.as_posix() if mapping_rel else None,
                defaults=dict(c.get("defaults") or {}),
                layout=_layout(doc, c.get("layout"), base_layout, kp + ("layout",)),
                index=i,
                extensions=tuple(c.get("extensions") or ()),
                validate_schemas=tuple(_schema_refs(root, doc, (c.get("validate") or {}).get("schemas") or [], kp + ("validate", "schemas"))),
                geoparquet=gp,
                pgstac=bool(data.get("pgstac", True)),
                outputs=_outputs(doc, c, kp, {x.get("id") for x in data["collections"] if isinstance(x, dict)}),
                source_doc=doc,
            )
        )
    meta = {"description": data["description"]}
    for k in ("title", "license"):
        if k in data:
            meta[k] = data[k]
    return CatalogSpec(
        id=cat_id,
        dir=yaml_file.parent,
        yaml_path=display,
        meta=meta,
        links=_links(doc, data.get("links")),
        publish=dict(data.get("publish") or {}),
        collections=tuple(collections),
    )


def _outputs(doc: Located, coll: dict, kp: tuple, collection_ids: set) -> tuple[str, ...]:
    """The further export formats a collection asks for: registered, and not named like a
    collection of the catalog (their files go under ``build/<catalog>/<name>/``)."""
    from stacgit import output_formats as formats

    names = tuple(coll.get("outputs") or ())
    for i, name in enumerate(names):
        if name not in formats.names():
            known = formats.names()
            raise S.fail(doc, kp + ("outputs", i), f"unknown output format {name!r}{S.did_you_mean(name, known)} (one of {', '.join(known) or 'none registered'})")
        if name in collection_ids or name in _RESERVED_IDS:
            raise S.fail(doc, kp + ("outputs", i), f"output format {name!r} has the name of a collection or of a file the build writes")
    return names


def _geoparquet(doc: Located, cat_raw: Any, coll_raw: Any, kp: tuple, passthrough: bool) -> dict | None:
    """A collection's GeoParquet settings: the catalog's ``geoparquet:`` under its own; ``false``
    at either level turns it off. Items that pass through (a STAC API snapshot, a file of STAC
    items) have no mapping to type their fields, so their columns are inferred from the items."""
    if coll_raw is False or (cat_raw is False and not isinstance(coll_raw, dict)):
        return None
    cat = cat_raw if isinstance(cat_raw, dict) else {}
    coll = coll_raw if isinstance(coll_raw, dict) else {}
    columns = {**(cat.get("columns") or {}), **(coll.get("columns") or {})}
    for name, kind in columns.items():
        if kind not in COLUMN_TYPES:
            where = kp + ("columns", name) if name in (coll.get("columns") or {}) else ("geoparquet", "columns", name)
            raise S.fail(doc, where, f"unknown column type {kind!r} (one of {', '.join(COLUMN_TYPES)})")
    return {
        "partition": coll.get("partition", cat.get("partition", "year")),
        "columns": columns,
        "undeclared": coll.get("undeclared", cat.get("undeclared", "infer" if passthrough else "error")),
    }


def _check_patch_target(patch: Patch, catalogs: dict[str, CatalogSpec]) -> None:
    """A patch naming a catalog or collection that does not exist is a typo, not a no-op."""
    cat = catalogs.get(patch.catalog)
    if cat is None:
        hint = S.did_you_mean(patch.catalog, list(catalogs))
        raise ConfigError(f"{patch.where}: target.catalog: unknown catalog '{patch.catalog}'{hint}")
    ids = [c.id for c in cat.collections]
    if patch.collection != "*" and patch.collection not in ids:
        hint = S.did_you_mean(patch.collection, ids)
        raise ConfigError(f"{patch.where}: target.collection: no collection '{patch.collection}' in catalog '{cat.id}'{hint}")


@dataclass
class Project:
    """The repository: where catalogs, mappings, build output and state live."""

    root: Path
    catalogs: dict[str, CatalogSpec]
    patches: tuple[Patch, ...] = ()

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    def shown(self, path: Path) -> str:
        """``path`` as messages show it: relative to the repository when inside it."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    @property
    def state_dir(self) -> Path:
        return self.root / ".stacgit"

    @classmethod
    def discover(cls, start: str | os.PathLike = ".") -> "Project":
        here = Path(start).resolve()
        for cand in (here, *here.parents):
            if (cand / "catalogs").is_dir():
                return cls.load(cand)
        raise ConfigError(f"{here}: not inside a stacgit repository (no catalogs/ directory found)")

    @classmethod
    def load(cls, root: str | os.PathLike) -> "Project":
        root = Path(root).resolve()
        catalogs = {}
        for yaml_file in sorted((root / "catalogs").glob("*/catalog.yaml")):
            cat = load_catalog(root, yaml_file)
            catalogs[cat.id] = cat
        patches = tuple(load_patches(root))
        for p in patches:
            _check_patch_target(p, catalogs)
        return cls(root=root, catalogs=catalogs, patches=patches)

    def patches_for(self, coll: CollectionSpec, document: str = "item") -> list[Patch]:
        """The patches that apply to a collection's items (or its document), in order."""
        return [p for p in self.patches if p.document == document and p.targets(coll.catalog_id, coll.id)]

    def catalog(self, catalog_id: str) -> CatalogSpec:
        if catalog_id not in self.catalogs:
            hint = S.did_you_mean(catalog_id, list(self.catalogs))
            raise ConfigError(f"unknown catalog '{catalog_id}'{hint}")
        return self.catalogs[catalog_id]

    def iter_collections(self):
        for cat in self.catalogs.values():
            yield from cat.collections

    def shard_paths(self, coll: CollectionSpec) -> list[str]:
        """Source files of a collection, as sorted posix paths relative to the project root.

        A pattern that matches nothing, or a file outside the catalog directory (through a
        symlink), is a ConfigError naming catalog.yaml.
        """
        cat = self.catalogs[coll.catalog_id]
        cat_dir = cat.dir.resolve()
        found: set[str] = set()
        for pattern in coll.source.patterns:
            matches = [p for p in cat.dir.glob(pattern) if p.is_file()]
            if not matches and coll.source.is_snapshot:
                raise ConfigError(
                    f"{cat.yaml_path}: collections[{coll.index}]: collection '{coll.key}' has no snapshot yet: run `stacgit snapshot {coll.catalog_id} {coll.id}`"
                )
            if not matches:
                raise ConfigError(
                    f"{cat.yaml_path}: collections[{coll.index}].source.path: {pattern!r} matches no file in {cat.dir.relative_to(self.root).as_posix()}/"
                )
            for p in matches:
                if not p.resolve().is_relative_to(cat_dir):
                    raise ConfigError(
                        f"{cat.yaml_path}: collections[{coll.index}].source.path: {p.relative_to(self.root).as_posix()} resolves outside the catalog directory"
                    )
                found.add(p.relative_to(self.root).as_posix())
        return sorted(found)

    def source_format(self, coll: CollectionSpec, shard: str) -> str:
        if coll.source.format:
            return coll.source.format
        fmt = sources.format_for(shard)
        if fmt is not None:
            return fmt
        cat = self.catalogs[coll.catalog_id]
        raise ConfigError(
            f"{cat.yaml_path}: collections[{coll.index}].source.format: cannot tell the format of {shard}; "
            f"set format: to one of {', '.join(sources.format_names())}"
        )
