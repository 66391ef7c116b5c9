"""A mapping file: record -> STAC Item. Pure: no I/O besides loading the spec, no eval."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from stacgit import _spec as S
from stacgit import columns as C
from stacgit._yaml import Located, load_yaml
from stacgit.errors import MappingError
from stacgit.geo import coords_bbox, geometry_problem
from stacgit.hashing import digest_obj
from stacgit.mapping.datetimes import format_datetime, parse_datetime, sortable_datetime
from stacgit.mapping.geometry import GEOMETRY_NODE, compile_geometry, numbers
from stacgit.mapping.values import OMIT, READS, Missing, compile_template, compile_value, spec_type
from stacgit.stac import API_RELS, STAC_VERSION, STRUCTURAL_RELS

ASSET_NODE = S.obj(
    {
        "href": S.STR,
        "type": S.STR,
        "roles": S.lst(S.STR),
        "title": S.STR,
        "description": S.STR,
        "fields": S.mapping(S.ANY),
        "optional": S.BOOL,
    },
    required=("href",),
)
LINK_NODE = S.obj(
    {"rel": S.STR, "href": S.STR, "type": S.STR, "title": S.STR}, required=("rel", "href")
)
MAPPING_NODE = S.obj(
    {
        "id": S.ANY,
        "datetime": S.ANY,
        "start_datetime": S.ANY,
        "end_datetime": S.ANY,
        "geometry": GEOMETRY_NODE,
        "bbox": S.ANY,
        "properties": S.mapping(S.ANY),
        "defaults": S.mapping(S.ANY),
        "assets": S.mapping(ASSET_NODE),
        "links": S.lst(LINK_NODE),
        "stac_extensions": S.lst(S.STR),
    },
    required=("id", "geometry"),
)


@dataclass(frozen=True)
class MappingSpec:
    """A loaded, checked mapping. ``digest`` changes when its meaning changes (not comments)."""

    path: str
    data: dict
    digest: str
    render: Callable[..., dict]
    reads: tuple[tuple[str, str], ...] = ()  # (record field, where in the mapping) of every path


def _passthrough_render(record: dict, collection: str, extra_defaults: dict | None = None) -> dict:
    """A STAC item from a snapshot as it is, re-homed in our collection: ``collection`` set,
    ``stac_version`` 1.1.0, structural links dropped (the build adds its own), defaults filled."""
    item_id = record.get("id")
    if not isinstance(item_id, str):
        raise MappingError("id", "a STAC item needs a string id")
    props = record.get("properties")
    if not isinstance(props, dict):
        raise MappingError("properties", "a STAC item needs a properties object")
    if not props.get("datetime") and not (props.get("start_datetime") and props.get("end_datetime")):
        raise MappingError("properties.datetime", "needs datetime, or start_datetime and end_datetime")
    if "geometry" not in record:
        raise MappingError("geometry", "a STAC item needs a geometry (null is allowed)")
    item = dict(record)
    if item.get("bbox") is None and isinstance(item.get("geometry"), dict):
        why = geometry_problem(item["geometry"])  # the spec requires a bbox with a geometry: computed from it
        if why:
            raise MappingError("geometry", why)
        item["bbox"] = coords_bbox(item["geometry"])
    item["type"] = "Feature"
    item["stac_version"] = "1.1.0"
    item["collection"] = collection
    item.setdefault("stac_extensions", [])
    item.setdefault("assets", {})
    item["links"] = [l for l in record.get("links") or [] if isinstance(l, dict) and l.get("rel") not in STRUCTURAL_RELS | API_RELS]
    if extra_defaults:
        item["properties"] = {**extra_defaults, **props}
    for key in ("datetime", "start_datetime", "end_datetime"):
        value = item["properties"].get(key)
        if isinstance(value, str):
            try:
                item["properties"][key] = format_datetime(parse_datetime(value, (), None))
            except (ValueError, MappingError) as exc:
                raise MappingError(f"properties.{key}", f"{value!r} is not an RFC 3339 datetime with a time zone") from exc
    return item


PASSTHROUGH = MappingSpec(path="(stac item as snapshotted)", data={}, digest="passthrough-1", render=_passthrough_render)
"""The mapping of a STAC API source without a ``mapping:``: items pass through unchanged."""


def load_mapping(path: Path, display: str | None = None) -> MappingSpec:
    doc = load_yaml(path, display)
    return compile_mapping(doc)


def compile_mapping(doc: Located) -> MappingSpec:
    reads: list[tuple[str, str]] = []
    token = READS.set(reads)
    try:
        spec = _compile_mapping(doc)
    finally:
        READS.reset(token)
    return MappingSpec(path=spec.path, data=spec.data, digest=spec.digest, render=spec.render, reads=tuple(dict.fromkeys(reads)))


def _link(href: Callable[[dict, dict], str], rest: dict, record: dict, ctx: dict) -> dict:
    return {"href": href(record, ctx), **rest}


def _compile_mapping(doc: Located) -> MappingSpec:
    data = doc.data
    if not isinstance(data, dict):
        raise S.fail(doc, (), "a mapping file must be a YAML mapping")
    S.check(doc, MAPPING_NODE, data, ())
    if "datetime" not in data and not ("start_datetime" in data and "end_datetime" in data):
        raise S.fail(doc, (), "needs 'datetime', or both 'start_datetime' and 'end_datetime'")
    get_id = compile_value(doc, data["id"], ("id",), "str")
    dt_getters = {
        k: compile_value(doc, data[k], (k,), "datetime")
        for k in ("datetime", "start_datetime", "end_datetime")
        if k in data
    }
    get_geom = compile_geometry(doc, data["geometry"], ("geometry",))
    get_bbox = numbers(doc, data["bbox"], ("bbox",), 4) if "bbox" in data else None
    props = {
        name: compile_value(doc, spec, ("properties", name))
        for name, spec in (data.get("properties") or {}).items()
    }
    for reserved in ("datetime", "start_datetime", "end_datetime"):
        if reserved in props:
            raise S.fail(doc, ("properties", reserved), f"set '{reserved}' at the top level of the mapping")
    defaults = dict(data.get("defaults") or {})
    assets = {}
    for key, aspec in (data.get("assets") or {}).items():
        akp = ("assets", key)
        S.check(doc, ASSET_NODE, aspec, akp)
        href = compile_template(aspec["href"], doc.where(akp + ("href",)))
        fields = {
            fname: compile_value(doc, fspec, akp + ("fields", fname))
            for fname, fspec in (aspec.get("fields") or {}).items()
        }
        static = {k: aspec[k] for k in ("type", "roles", "title", "description") if k in aspec}
        assets[key] = (href, fields, static, aspec.get("optional", False))
    links = [
        (compile_template(l["href"], doc.where(("links", i, "href"))), {k: v for k, v in l.items() if k != "href"})
        for i, l in enumerate(data.get("links") or [])
    ]
    extensions = sorted(set(data.get("stac_extensions") or []))

    def render(record: dict, collection: str, extra_defaults: dict | None = None) -> dict:
        # every field is tried: a record's failure names all its bad fields, not only the first
        problems: list[MappingError] = []

        def attempt(field: str, get: Callable[..., Any], *args: Any) -> Any:
            try:
                return get(*args)
            except MappingError as exc:
                problems.append(exc)
            except Missing as m:
                problems.append(MappingError(field, f"no value for {{{m.what}}}"))
            return OMIT

        ctx = {"$collection": collection}
        item_id = attempt("id", get_id, record, ctx)
        if item_id is OMIT and not problems:
            problems.append(MappingError("id", "no value"))
        ctx["$id"] = item_id if item_id is not OMIT else None
        properties: dict[str, Any] = {}
        for name, getter in dt_getters.items():
            v = attempt(name, getter, record, ctx)
            if v is not OMIT:
                properties[name] = v
        if "datetime" not in properties and not any(p.field in dt_getters for p in problems):
            if "start_datetime" not in properties or "end_datetime" not in properties:
                problems.append(MappingError("datetime", "no datetime and no start_datetime/end_datetime"))
            properties["datetime"] = None
        if "start_datetime" in properties and "end_datetime" in properties:
            if sortable_datetime(properties["start_datetime"]) > sortable_datetime(properties["end_datetime"]):
                problems.append(MappingError("end_datetime", "is before start_datetime"))
        for name, getter in props.items():
            v = attempt(f"properties.{name}", getter, record, ctx)
            if v is not OMIT:
                properties[name] = v
        for source in (defaults, extra_defaults or {}):
            for name, v in source.items():
                if properties.get(name) is None:
                    properties[name] = v
        geometry = attempt("geometry", get_geom, record, ctx)
        bbox = attempt("bbox", get_bbox, record, ctx) if get_bbox is not None else None
        if bbox in (None, OMIT) and geometry not in (None, OMIT):
            try:
                bbox = coords_bbox(geometry)
            except (ValueError, TypeError, IndexError, KeyError) as exc:
                problems.append(MappingError("geometry", f"invalid coordinates: {exc}"))
        item_assets = {}
        for key, (href, fields, static, optional) in assets.items():
            try:
                a = {"href": href(record, ctx)}
            except Missing as m:
                if not optional:
                    problems.append(MappingError(f"assets.{key}.href", f"no value for {{{m.what}}}"))
                continue
            a.update(static)
            for fname, getter in fields.items():
                v = attempt(f"assets.{key}.{fname}", getter, record, ctx)
                if v is not OMIT:
                    a[fname] = v
            item_assets[key] = a
        item_links = [link for href, rest in links if (link := attempt("links.href", _link, href, rest, record, ctx)) is not OMIT]
        if problems:
            raise MappingError.of(problems)
        item: dict[str, Any] = {
            "type": "Feature",
            "stac_version": STAC_VERSION,
            "stac_extensions": extensions,
            "id": item_id,
            "geometry": geometry,
            "properties": properties,
            "assets": item_assets,
            "links": item_links,
            "collection": collection,
        }
        if bbox is not None:
            item["bbox"] = bbox
        return item

    return MappingSpec(path=str(doc.path), data=data, digest=digest_obj(data), render=render)


def item_time_range(item: dict) -> tuple[str, str]:
    """(start, end) of an item as sortable datetime strings."""
    p = item["properties"]
    start = p.get("start_datetime") or p["datetime"]
    end = p.get("end_datetime") or p["datetime"]
    return sortable_datetime(start), sortable_datetime(end)


def item_columns(data: dict, defaults: dict, where: str) -> C.ItemColumns:
    """Columns of a compiled mapping's ``data`` (the YAML) and the collection's defaults."""
    cols = C.ItemColumns(properties=dict(C.BASE_PROPERTIES))
    for name, spec in (data.get("properties") or {}).items():
        C.merge_type(cols.properties, name, spec_type(spec), where)
    for source in (data.get("defaults") or {}, defaults or {}):
        for name, value in source.items():
            C.merge_type(cols.properties, name, C.value_type(value), where)
    for key, aspec in (data.get("assets") or {}).items():
        fields = dict(C.ASSET_BASE)
        for fname, fspec in (aspec.get("fields") or {}).items():
            C.merge_type(fields, fname, spec_type(fspec), where)
        cols.assets[key] = fields
    return cols
