"""Geometry helpers shared by mappings and remote sources. Standard library only."""

from __future__ import annotations

from typing import Any


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
