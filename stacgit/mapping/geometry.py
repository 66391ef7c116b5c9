"""Geometry specs: a bbox, a point, WKT, WKB or GeoJSON from a record, checked to be WGS84."""

from __future__ import annotations

import re
from typing import Any, Callable

import orjson

from stacgit import _spec as S
from stacgit._yaml import KeyPath, Located
from stacgit.errors import MappingError
from stacgit.mapping.values import OMIT, SOURCE_KEYS, compile_value, to_float

_GEOM_KINDS = ("bbox", "point", "wkt", "wkb", "geojson")
GEOMETRY_NODE = S.obj({k: S.ANY for k in _GEOM_KINDS} | {"optional": S.BOOL})


def _check_lonlat(x: float, y: float) -> None:
    if not (-180 <= x <= 180 and -90 <= y <= 90):
        raise ValueError(f"coordinate ({x}, {y}) is outside WGS84 longitude/latitude")


def _bbox_polygon(b: list[float]) -> dict:
    w, s, e, n = b
    _check_lonlat(w, s)
    _check_lonlat(e, n)
    if s > n:
        raise ValueError(f"bbox south {s} is greater than north {n}")
    if w > e:
        raise ValueError(f"bbox west {w} is greater than east {e} (antimeridian bboxes are not supported)")
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


_GEOJSON_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection")


def _from_shapely(shape: Any) -> dict:
    from shapely.geometry import mapping as shp_mapping

    return orjson.loads(orjson.dumps(shp_mapping(shape)))


def numbers(doc: Located, spec: Any, kp: KeyPath, n: int) -> Callable[[dict, dict], list[float] | None]:
    """A list of n paths/value specs, or one path or value spec giving a list (or a 'w,s,e,n'
    string)."""
    if isinstance(spec, str) or (isinstance(spec, dict) and any(k in spec for k in SOURCE_KEYS)):
        one = compile_value(doc, {"path": spec, "optional": True} if isinstance(spec, str) else {"optional": True, **spec}, kp)

        def get_list(rec: dict, ctx: dict) -> list[float] | None:
            v = one(rec, ctx)
            if v is OMIT:
                return None
            if isinstance(v, str):
                v = [x for x in re.split(r"[,\s]+", v.strip()) if x]
            if not isinstance(v, list) or len(v) != n:
                raise MappingError(S.keypath_str(kp), f"expected {n} numbers, got {v!r:.80}")
            return [to_float(x) for x in v]

        return get_list
    if not isinstance(spec, list) or len(spec) != n:
        raise S.fail(doc, kp, f"must be a path or a list of {n} paths/value specs")
    getters = [
        compile_value(doc, {"path": s, "optional": True} if isinstance(s, str) else s, kp + (i,), None)
        for i, s in enumerate(spec)
    ]

    def get_all(rec: dict, ctx: dict) -> list[float] | None:
        vals = [g(rec, ctx) for g in getters]
        if all(v is OMIT for v in vals):
            return None
        if any(v is OMIT for v in vals):
            raise MappingError(S.keypath_str(kp), "some coordinates are missing")
        try:
            return [to_float(v) for v in vals]
        except ValueError as exc:
            raise MappingError(S.keypath_str(kp), str(exc)) from None

    return get_all


def compile_geometry(doc: Located, spec: dict, kp: KeyPath) -> Callable[[dict, dict], dict | None]:
    S.check(doc, GEOMETRY_NODE, spec, kp)
    kinds = [k for k in _GEOM_KINDS if k in spec]
    if len(kinds) != 1:
        raise S.fail(doc, kp, f"needs exactly one of {', '.join(_GEOM_KINDS)}")
    kind = kinds[0]
    optional = spec.get("optional", False)
    field = S.keypath_str(kp)
    sub = spec[kind]
    skp = kp + (kind,)

    if kind == "bbox":
        nums = numbers(doc, sub, skp, 4)

        def build(rec: dict, ctx: dict) -> dict | None:
            b = nums(rec, ctx)
            return None if b is None else _bbox_polygon(b)
    elif kind == "point":
        nums = numbers(doc, sub, skp, 2)

        def build(rec: dict, ctx: dict) -> dict | None:
            p = nums(rec, ctx)
            if p is None:
                return None
            _check_lonlat(p[0], p[1])
            return {"type": "Point", "coordinates": p}
    else:
        raw = compile_value(doc, {"path": sub, "optional": True} if isinstance(sub, str) else sub, skp)

        def build(rec: dict, ctx: dict) -> dict | None:
            v = raw(rec, ctx)
            if v is OMIT:
                return None
            if kind == "wkt":
                import shapely.wkt
                from shapely.errors import ShapelyError

                try:
                    return _from_shapely(shapely.wkt.loads(str(v)))
                except ShapelyError as exc:
                    raise ValueError(f"invalid WKT: {str(exc).splitlines()[0]}") from None
            if kind == "wkb":
                import shapely.wkb
                from shapely.errors import ShapelyError

                try:
                    return _from_shapely(shapely.wkb.loads(v, hex=isinstance(v, str)))
                except (ShapelyError, ValueError) as exc:
                    raise ValueError(f"invalid WKB: {str(exc).splitlines()[0]}") from None
            g = v
            if isinstance(g, str):
                try:
                    g = orjson.loads(g)
                except orjson.JSONDecodeError:
                    raise ValueError("not a GeoJSON geometry (invalid JSON)") from None
            if isinstance(g, dict) and g.get("type") == "Feature":
                g = g.get("geometry")
            if not isinstance(g, dict) or g.get("type") not in _GEOJSON_TYPES:
                raise ValueError(f"not a GeoJSON geometry: {str(g):.60}")
            if g["type"] != "GeometryCollection" and not isinstance(g.get("coordinates"), list):
                raise ValueError("GeoJSON geometry has no coordinates")
            return g

    def get(rec: dict, ctx: dict) -> dict | None:
        try:
            g = build(rec, ctx)
        except (ValueError, TypeError) as exc:
            raise MappingError(field, str(exc)) from None
        if g is None and not optional:
            raise MappingError(field, f"no value for geometry {kind}")
        return g

    return get
