"""The column types of a collection's items, derived from its mapping (``mapping.item_columns``),
extensions, patches and ``geoparquet.columns`` overrides, or inferred from the items' own field
types (``undeclared: infer``).

Types are names: ``string int64 float64 bool datetime list<string> list<int64> list<float64>``
and ``json`` (any JSON value, stored as its JSON text). A mapped field whose type cannot be
known from its spec (a bare ``path:`` with no ``type:``) is a ``string``; a record where it is
something else is schema drift, reported with the item and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stacgit.errors import ConfigError

TYPES = ("string", "int64", "float64", "bool", "datetime", "list<string>", "list<int64>", "list<float64>", "json")

TOP_LEVEL = frozenset({"type", "stac_version", "stac_extensions", "id", "geometry", "bbox", "links", "assets", "collection"})
"""Item keys stac-geoparquet keeps as columns; a property of the same name would be dropped."""

BASE_PROPERTIES = {"datetime": "datetime", "start_datetime": "datetime", "end_datetime": "datetime", "created": "datetime", "updated": "datetime"}
"""Properties every collection may have (``created``/``updated`` come from patches)."""

EXTRA_PROPERTIES = "stacgit:extra_properties"
EXTRA_ASSETS = "stacgit:extra_assets"
"""With ``undeclared: json`` (or ``infer``), fields without a type are kept as JSON text here."""
UNDECLARED = ("error", "json", "infer")

ASSET_BASE = {"href": "string", "type": "string", "roles": "list<string>", "title": "string", "description": "string"}


@dataclass
class ItemColumns:
    """Property and asset field types of one collection's items."""

    properties: dict[str, str] = field(default_factory=dict)
    assets: dict[str, dict[str, str]] = field(default_factory=dict)
    undeclared: str = "error"  # "json": fields not declared become JSON text; "infer": typed from the items
    drift: list[str] = field(default_factory=list)  # inferred fields whose items disagree on a type

    def to_dict(self) -> dict:
        return {"properties": dict(sorted(self.properties.items())), "assets": {k: dict(sorted(v.items())) for k, v in sorted(self.assets.items())}, "undeclared": self.undeclared}


def value_type(value: Any) -> str:
    """The column type of a constant."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list) and value:
        inner = {value_type(v) for v in value}
        if inner == {"int64", "float64"}:
            inner = {"float64"}
        if len(inner) == 1 and (t := inner.pop()) in ("string", "int64", "float64"):
            return f"list<{t}>"
    return "json"


def merge_type(target: dict[str, str], name: str, kind: str, where: str) -> None:
    old = target.get(name)
    if {old, kind} == {"string", "datetime"}:  # a datetime is a string until GeoParquet types it
        target[name] = "datetime"
        return
    if old is not None and old != kind and kind != "json" and old != "json":
        if {old, kind} == {"int64", "float64"}:
            kind = "float64"
        else:
            raise ConfigError(f"{where}: field {name!r} is {old} in one place and {kind} in another; declare it in geoparquet.columns")
    target[name] = kind if old in (None, kind) or kind != "json" else old


def add_extension_fields(cols: ItemColumns, fields: dict, where: str) -> None:
    """Merge an extension's ``{"properties": {name: type}, "assets": {key or '*': {name: type}}}``."""
    for name, kind in (fields.get("properties") or {}).items():
        merge_type(cols.properties, name, kind, where)
    for key, afields in (fields.get("assets") or {}).items():
        targets = list(cols.assets) if key == "*" else [key]
        for k in targets:
            bucket = cols.assets.setdefault(k, dict(ASSET_BASE))
            for name, kind in afields.items():
                merge_type(bucket, name, kind, where)


def add_patch_fields(cols: ItemColumns, ops: list[dict], where: str) -> None:
    """Fields that JSON-Patch ops add or replace, typed by their values. A value set on a
    whole ``/properties`` or asset object types each of its keys."""
    def split(pointer: Any) -> list[str]:
        return [p.replace("~1", "/").replace("~0", "~") for p in str(pointer or "").split("/")[1:]]

    for op in ops:
        parts = split(op.get("path"))
        if op.get("op") in ("copy", "move") and len(parts) == 2 and parts[0] == "properties":
            src = split(op.get("from"))
            if len(src) == 2 and src[0] == "properties" and src[1] in cols.properties:
                merge_type(cols.properties, parts[1], cols.properties[src[1]], where)
            continue
        if op.get("op") not in ("add", "replace") or "value" not in op:
            continue
        value = op["value"]
        if parts == ["properties"] and isinstance(value, dict):
            for k, v in value.items():
                merge_type(cols.properties, k, value_type(v), where)
        elif len(parts) == 2 and parts[0] == "properties":
            merge_type(cols.properties, parts[1], value_type(value), where)
        elif len(parts) == 3 and parts[0] == "assets":
            merge_type(cols.assets.setdefault(parts[1], dict(ASSET_BASE)), parts[2], value_type(value), where)
        elif len(parts) == 2 and parts[0] == "assets" and isinstance(value, dict):
            bucket = cols.assets.setdefault(parts[1], dict(ASSET_BASE))
            for k, v in value.items():
                merge_type(bucket, k, value_type(v), where)


def apply_overrides(cols: ItemColumns, overrides: dict, where: str) -> None:
    """``geoparquet.columns``: ``{property: type, "assets.<key>.<field>": type}``."""
    for name, kind in overrides.items():
        if kind not in TYPES:
            raise ConfigError(f"{where}.{name}: unknown column type {kind!r} (one of {', '.join(TYPES)})")
        if name.startswith("assets."):
            parts = name.split(".", 2)
            if len(parts) != 3:
                raise ConfigError(f"{where}.{name}: write assets.<key>.<field>")
            cols.assets.setdefault(parts[1], dict(ASSET_BASE))[parts[2]] = kind
        else:
            cols.properties[name] = kind


def signature(item: dict) -> dict:
    """The field types of one item's properties and assets (``undeclared: infer``): what the
    collection's inferred columns are the union of. Nulls and empty lists say nothing."""
    def kinds(obj: Any) -> dict[str, str]:
        return {k: value_type(v) for k, v in obj.items() if v is not None and v != []} if isinstance(obj, dict) else {}

    props = {k: t for k, t in kinds(item.get("properties")).items() if k not in TOP_LEVEL}
    assets = {k: kinds(a) for k, a in (item.get("assets") or {}).items() if isinstance(a, dict)}
    return {"properties": props, "assets": assets}


_WIDER = {frozenset({"int64", "float64"}): "float64", frozenset({"list<int64>", "list<float64>"}): "list<float64>"}


def add_inferred(cols: ItemColumns, signatures: list[tuple[dict, str]]) -> None:
    """Type the fields no mapping, extension, patch or override declared from the items'
    signatures (each with an item id that has it). Integers and floats widen to floats; any
    other disagreement is real drift: the field is kept as JSON text and named in
    ``cols.drift``. The result depends only on the set of signatures, never on their order."""
    seen: dict[tuple, dict[str, str]] = {}  # (asset key or None, field) -> type -> first item id
    for sig, item_id in signatures:
        for name, kind in sig["properties"].items():
            seen.setdefault((None, name), {}).setdefault(kind, item_id)
        for key, fields in sig["assets"].items():
            seen.setdefault((key, None), {})
            for name, kind in fields.items():
                seen.setdefault((key, name), {}).setdefault(kind, item_id)
    for (key, name), kinds in sorted(seen.items(), key=lambda kv: (kv[0][0] or "", kv[0][0] is not None, kv[0][1] or "")):
        if name is None:
            cols.assets.setdefault(key, dict(ASSET_BASE))
            continue
        target = cols.properties if key is None else cols.assets.setdefault(key, dict(ASSET_BASE))
        if name in target:
            continue
        kind = next(iter(kinds)) if len(kinds) == 1 else _WIDER.get(frozenset(kinds), "json")
        if len(kinds) > 1 and kind == "json":
            field_name = f"properties.{name}" if key is None else f"assets.{key}.{name}"
            shown = ", ".join(f"{t} in {i!r}" for t, i in sorted(kinds.items()))
            cols.drift.append(f"{field_name} is {shown}: its GeoParquet column holds JSON text "
                              "(fix the items, or give it a type in geoparquet.columns)")
        target[name] = kind


def finish(cols: ItemColumns) -> None:
    if cols.undeclared in ("json", "infer"):
        cols.properties[EXTRA_PROPERTIES] = "string"
        cols.properties[EXTRA_ASSETS] = "string"


def check_names(cols: ItemColumns, where: str) -> None:
    clash = sorted(n for n in cols.properties if n in TOP_LEVEL)
    if clash:
        raise ConfigError(f"{where}: property {clash[0]!r} has the name of a top-level item field; GeoParquet would drop it. Rename it")
