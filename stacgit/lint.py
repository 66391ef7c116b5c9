"""Checks beyond JSON schemas (SV-5: we know the exact file set, so nothing is crawled).

Each check looks at one document (plus where it sits in the tree, when known) and returns
:class:`~stacgit.extensions.Problem` s: errors only for what the STAC spec forbids or what breaks
a catalog (a link leaving the tree, a datetime without a time zone), warnings for the rest
(local hrefs, self-intersecting geometries, a geometry past its bbox: real, schema-valid items
have them). Duplicate ids need every document and are found by the caller.
"""

from __future__ import annotations

import functools
import math
import posixpath
import re
from typing import Any

from stacgit.stac import STRUCTURAL_RELS
from stacgit.extensions import Problem, all_extensions, json_pointer
from stacgit.geo import bbox_2d, coords_bbox

DATETIME_FIELDS = ("datetime", "start_datetime", "end_datetime", "created", "updated", "published", "expires", "unpublished")
_DATETIME_SET = frozenset(DATETIME_FIELDS)
_TZ = re.compile(r"(Z|z|[+-]\d{2}:\d{2})$")
_LOCAL = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")
BBOX_TOLERANCE = 1e-6

# Field prefix -> how its schema URIs start. Plugins add theirs through Extension.prefixes.
KNOWN_PREFIXES: dict[str, str] = {
    name: f"https://stac-extensions.github.io/{repo}/"
    for name, repo in {
        "eo": "eo",
        "proj": "projection",
        "pc": "pointcloud",
        "file": "file",
        "raster": "raster",
        "processing": "processing",
        "view": "view",
        "sat": "sat",
        "sar": "sar",
        "sci": "scientific",
        "mgrs": "mgrs",
        "grid": "grid",
        "label": "label",
        "alternate": "alternate-assets",
        "storage": "storage",
        "table": "table",
        "order": "order",
        "render": "render",
        "classification": "classification",
        "cube": "datacube",
        "xarray": "xarray-assets",
    }.items()
}

@functools.cache
def prefix_table() -> dict[str, str]:
    table = dict(KNOWN_PREFIXES)
    for ext in all_extensions():
        if ext.schema_uri:
            for p in ext.prefixes:
                table.setdefault(p, ext.schema_uri)
    return table



def lint(doc: dict, path: str | None = None, root: str | None = None) -> list[Problem]:
    """``path``: the document's path relative to ``root`` (posix), when it is a file of a tree."""
    out: list[Problem] = []
    out += _links(doc, path, root)
    out += _assets(doc)
    if doc.get("type") == "Feature":
        out += _geometry(doc)
        out += _datetimes(doc.get("properties") or {}, ("properties",))
    out += _extension_fields(doc)
    return out


def _href_problems(href: Any, where: tuple, rule: str) -> list[Problem]:
    if not isinstance(href, str) or href.startswith(("https://", "http://", "s3://", "./", "../")):
        return []
    if href.startswith("file:"):
        return [Problem(f"lint:{rule}", "file:// href (a local file, unreachable for users)", json_pointer(*where, "href"), "warning")]
    if _LOCAL.match(href):
        return [Problem(f"lint:{rule}", "local path in href (absolute file system path)", json_pointer(*where, "href"), "warning")]
    return []


def _escapes(dir_depth: int, href: str) -> bool:
    """Whether a relative ``href`` from a folder ``dir_depth`` levels below the root leaves
    the tree (what ``normpath(join(folder, href))`` starting with ``..`` means)."""
    depth = dir_depth
    for seg in href.split("#", 1)[0].split("?", 1)[0].split("/"):
        if seg == "..":
            depth -= 1
            if depth < 0:
                return True
        elif seg and seg != ".":
            depth += 1
    return False


def _links(doc: dict, path: str | None, root: str | None) -> list[Problem]:
    out = []
    depth = posixpath.normpath(path).count("/") if path is not None and root is not None else None
    for i, link in enumerate(doc.get("links") or []):
        if not isinstance(link, dict):
            continue
        href = link.get("href")
        found = _href_problems(href, ("links", i), "link-href")
        if found or not isinstance(href, str):
            out += found
            continue
        if "://" in href.split("?", 1)[0]:
            if link.get("rel") in STRUCTURAL_RELS:
                out.append(Problem("lint:link-absolute", f"absolute '{link.get('rel')}' link in a self-contained catalog (relative hrefs move with the catalog)", json_pointer("links", i, "href"), "warning"))
        elif depth is not None and _escapes(depth, href):
            out.append(Problem("lint:link-outside", "link points outside the catalog", json_pointer("links", i, "href")))
    return out


def _assets(doc: dict) -> list[Problem]:
    assets = doc.get("assets") or {}
    if not isinstance(assets, dict):
        return []
    found: list[tuple[str, list[Problem]]] = []
    for key, asset in assets.items():
        if not isinstance(asset, dict):
            continue
        out = _href_problems(asset.get("href"), ("assets", key), "asset-href")
        if not asset.get("type"):
            out.append(Problem("lint:asset-type", "asset has no media type", json_pointer("assets", key), "warning"))
        if not asset.get("roles"):
            out.append(Problem("lint:asset-roles", "asset has no roles", json_pointer("assets", key), "warning"))
        if not _DATETIME_SET.isdisjoint(asset):
            out += _datetimes(asset, ("assets", key))
        if out:
            found.append((key, out))
    return [p for _, problems in sorted(found, key=lambda kv: kv[0]) for p in problems]


def _geometry(doc: dict) -> list[Problem]:
    geom = doc.get("geometry")
    if not isinstance(geom, dict):
        return []
    import shapely
    from shapely.geometry import shape

    try:
        g = shape(geom)
    except Exception as exc:  # shapely raises several types for malformed GeoJSON
        return [Problem("lint:geometry", f"unreadable geometry: {exc}", "/geometry")]
    out = []
    if not g.is_valid:
        reason = re.sub(r"\[.*", "", shapely.is_valid_reason(g)).strip()
        out.append(Problem("lint:geometry", f"invalid geometry: {reason}", "/geometry", "warning"))
    bbox = doc.get("bbox")
    try:
        w, s, e, n = bbox_2d(bbox)
    except ValueError:  # the schema reports a malformed bbox
        return out
    if w > e:  # across the antimeridian: not compared
        return out
    try:
        gw, gs, ge, gn = coords_bbox(geom)
    except (ValueError, TypeError, IndexError, KeyError):
        return out
    if any(math.isnan(v) for v in (gw, gs, ge, gn)):
        return out
    tol = BBOX_TOLERANCE
    if gw < w - tol or gs < s - tol or ge > e + tol or gn > n + tol:
        out.append(Problem("lint:bbox", "geometry extends outside bbox", "/bbox", "warning"))
    elif max(gw - w, gs - s, e - ge, n - gn) > max(tol, 0.01 * max(e - w, n - s, tol)):
        out.append(Problem("lint:bbox", "bbox is larger than the geometry's bounds", "/bbox", "warning"))
    return out


def _datetimes(obj: dict, where: tuple) -> list[Problem]:
    out = []
    for key in DATETIME_FIELDS:
        value = obj.get(key)
        if isinstance(value, str) and not _TZ.search(value):
            out.append(Problem("lint:datetime-tz", "datetime without a time zone", json_pointer(*where, key)))
    return out


_BARE_FIELDS = {"alternate"}  # extension fields named like their prefix
_SKIP = frozenset(("links", "geometry", "bbox", "stac_extensions", "extent"))
_NOTHING: frozenset = frozenset()
_CONTAINERS = (dict, list)


def _used_prefixes(doc: dict) -> set[str]:
    """The extension prefixes of every key of ``doc`` (six levels deep), except under the
    top-level keys in ``_SKIP``."""
    used: set[str] = set()
    stack: list[tuple[Any, int, frozenset]] = [(doc, 0, _SKIP)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth, skip = pop()
        deeper = depth < 6
        if type(node) is dict:
            for k, v in node.items():
                if k in skip:
                    continue
                if ":" in k:
                    used.add(k.partition(":")[0])
                elif k in _BARE_FIELDS:
                    used.add(k)
                if deeper and v and type(v) in _CONTAINERS:
                    push((v, depth + 1, _NOTHING))
        elif deeper:
            for v in node:
                if v and type(v) in _CONTAINERS:
                    push((v, depth + 1, _NOTHING))
    return used


@functools.lru_cache(maxsize=1024)
def _uri_prefixes(uri: str) -> tuple[str, ...]:
    return tuple(p for p, base in prefix_table().items() if uri.startswith(base))


def _extension_fields(doc: dict) -> list[Problem]:
    table = prefix_table()
    used = _used_prefixes(doc)
    declared = [u for u in doc.get("stac_extensions") or [] if isinstance(u, str)]
    out = []
    for prefix in sorted(used):
        base = table.get(prefix)
        if base is not None and not any(u.startswith(base) for u in declared):
            out.append(Problem("lint:extension-uri", f"'{prefix}:' fields present but no {base}… schema in stac_extensions", "/stac_extensions", "warning"))
    for i, uri in enumerate(declared):
        prefixes = _uri_prefixes(uri)
        if prefixes and not any(p in used for p in prefixes):
            out.append(Problem("lint:extension-fields", f"extension declared but none of its '{prefixes[0]}:' fields is present", json_pointer("stac_extensions", i), "warning"))
    return out
