"""Geometry helpers shared by mappings and remote sources. Standard library only."""

from __future__ import annotations

import math
from typing import Any


def bbox_2d(bbox: Any) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a STAC bbox: 4 numbers, or 6 for a 3D box
    ``[w, s, zmin, e, n, zmax]`` (lidar items carry one). ValueError for anything else."""
    if (
        not isinstance(bbox, (list, tuple))
        or len(bbox) not in (4, 6)
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    ):
        raise ValueError(f"a bbox is 4 or 6 finite numbers, not {str(bbox)[:60]}")
    half = len(bbox) // 2
    return bbox[0], bbox[1], bbox[half], bbox[half + 1]


def coords_bbox(geom: dict) -> list[float]:
    """[w, s, e, n] of a GeoJSON geometry (GeometryCollections included) from its coordinates."""
    xs: list[float] = []
    ys: list[float] = []

    def walk(c: Any) -> None:
        if c and isinstance(c[0], (int, float)):
            xs.append(c[0])
            ys.append(c[1])
        else:
            for sub in c:
                walk(sub)

    if geom["type"] == "GeometryCollection":
        for g in geom["geometries"]:
            b = coords_bbox(g)
            xs.extend((b[0], b[2]))
            ys.extend((b[1], b[3]))
    else:
        walk(geom["coordinates"])
    if not xs:
        raise ValueError("geometry has no coordinates")
    return [min(xs), min(ys), max(xs), max(ys)]


GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection")
_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}


def geometry_problem(geom: Any) -> str | None:
    """Why ``geom`` is not a GeoJSON geometry a STAC item can carry (RFC 7946: a known type;
    positions of 2 or 3 finite numbers, longitude in [-180, 180] and latitude in [-90, 90];
    lines of 2+ positions; closed rings of 4+), or None. Checked before anything is written:
    shapely and the GeoParquet writer fail on these with tracebacks, not reasons."""
    if geom is None:
        return None
    return _problem(geom, nested=0)


def _problem(geom: Any, nested: int) -> str | None:
    if not isinstance(geom, dict) or geom.get("type") not in GEOMETRY_TYPES:
        kind = geom.get("type") if isinstance(geom, dict) else type(geom).__name__
        return f"not a GeoJSON geometry (type {str(kind)[:40]!r})"
    kind = geom["type"]
    if kind == "GeometryCollection":
        parts = geom.get("geometries")
        if nested or not isinstance(parts, list):
            return "a GeometryCollection needs a list of geometries (and is not nested)"
        for g in parts:
            why = _problem(g, nested + 1)
            if why:
                return why
        return None
    coords = geom.get("coordinates")
    return _coords_problem(kind, coords, _DEPTH[kind])


def _coords_problem(kind: str, coords: Any, depth: int) -> str | None:
    if depth == 0:
        return _position_problem(coords)
    if not isinstance(coords, list):
        return f"{kind} coordinates must be nested lists"
    if depth == 1 and kind in ("LineString", "MultiLineString") and len(coords) < 2:
        return f"{kind}: a line needs at least 2 positions"
    if depth == 1 and kind in ("Polygon", "MultiPolygon"):
        if len(coords) < 4:
            return f"{kind}: a ring needs at least 4 positions"
        if coords[0] != coords[-1]:
            return f"{kind}: a ring must be closed (its last position equal to its first)"
    if kind in ("Polygon", "MultiPolygon") and depth == 2 and not coords:
        return f"{kind}: a polygon needs an exterior ring"
    for c in coords:
        why = _coords_problem(kind, c, depth - 1)
        if why:
            return why
    return None


def _position_problem(pos: Any) -> str | None:
    if not isinstance(pos, list) or len(pos) not in (2, 3):
        return f"a position is 2 or 3 numbers, not {str(pos)[:40]}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pos):
        return f"a position is 2 or 3 finite numbers, not {str(pos)[:40]}"
    if not -180 <= pos[0] <= 180 or not -90 <= pos[1] <= 90:
        return f"position {pos[:2]} is outside longitude [-180, 180] / latitude [-90, 90] (split geometries that cross the antimeridian)"
    return None
