"""``stacgit discover``: list a STAC API's collections, filter them, add them to a catalog.

pystac-client reads the landing page, conformance and collections (a handful of documents, so
pystac objects are fine here; the item hot path never uses them).
"""

from __future__ import annotations

import fnmatch
from datetime import datetime, timezone

import yaml

from stacgit.errors import ConfigError, SourceError
from stacgit.geo import bbox_2d
from stacgit.project import Project, load_catalog


def _dt(value) -> datetime | None:
    if value in (None, "", ".."):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _overlaps_time(interval, rng: tuple[datetime | None, datetime | None]) -> bool:
    start, end = (_dt(interval[0]), _dt(interval[1])) if interval else (None, None)
    lo, hi = rng
    return (hi is None or start is None or start <= hi) and (lo is None or end is None or end >= lo)


def _overlaps_bbox(box, want: list[float]) -> bool:
    try:
        w, s, e, n = bbox_2d(box)  # a 3D box is [w, s, zmin, e, n, zmax]
    except ValueError:  # none, or not one we can read: not filtered out
        return True
    return not (e < want[0] or w > want[2] or n < want[1] or s > want[3])


def discover(url: str, ids: tuple[str, ...] = (), provider: str | None = None, datetime_range: str | None = None, bbox: list[float] | None = None, count: bool = False) -> list[dict]:
    """Collections of the API at ``url`` that pass every filter, as plain dicts."""
    import pystac_client
    from pystac_client.exceptions import APIError

    rng = (None, None)
    if datetime_range:
        a, _, b = datetime_range.partition("/")
        rng = (_dt(a), _dt(b or a))
    try:
        client = pystac_client.Client.open(url, timeout=30)
        collections = list(client.get_collections())
    except (APIError, OSError, ValueError) as exc:
        raise SourceError(f"{url}: cannot list collections: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    out = []
    for c in sorted(collections, key=lambda c: c.id):
        if ids and not any(fnmatch.fnmatchcase(c.id, g) for g in ids):
            continue
        if provider and not any(provider.lower() in (p.name or "").lower() for p in c.providers or []):
            continue
        boxes = c.extent.spatial.bboxes or [[]]
        intervals = c.extent.temporal.intervals or [[None, None]]
        if datetime_range and not _overlaps_time(intervals[0], rng):
            continue
        if bbox and not _overlaps_bbox(boxes[0], bbox):
            continue
        row = {
            "id": c.id,
            "title": c.title or "",
            "bbox": list(boxes[0]),
            "interval": [_iso(intervals[0][0]), _iso(intervals[0][1])],
            "providers": [p.name for p in c.providers or []],
            "items": None,
        }
        if count:
            row["items"] = _count(client, c.id)
        out.append(row)
    return out


def _iso(value) -> str | None:
    dt = _dt(value)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def _count(client, collection_id: str) -> int | None:
    """numberMatched of a one-item search, when the API reports it."""
    try:
        search = client.search(collections=[collection_id], max_items=1, limit=1)
        return search.matched()
    except Exception:  # an API without search or counts: unknown
        return None


def add_to_catalog(project: Project, catalog_id: str, url: str, rows: list[dict]) -> list[str]:
    """Append ``source: {type: stac-api}`` collection entries to catalogs/<id>/catalog.yaml,
    keeping the file's text (and comments); the result is loaded back before it is kept."""
    cat = project.catalog(catalog_id)
    path = cat.dir / "catalog.yaml"
    text = path.read_text()
    data = yaml.safe_load(text)
    last_key = list(data)[-1] if isinstance(data, dict) and data else None
    if last_key != "collections":
        raise ConfigError(f"{cat.yaml_path}: put 'collections:' last so that --add-to can append entries")
    existing = {c.id for c in cat.collections}
    added = []
    block = []
    for r in rows:
        if r["id"] in existing:
            continue
        entry = [{
            "id": r["id"],
            "title": r["title"] or r["id"],
            "description": f"Snapshot of {r['id']} from {url}",
            "source": {"type": "stac-api", "url": url, "collection": r["id"]},
        }]
        block.append(yaml.safe_dump(entry, sort_keys=False, allow_unicode=True, width=100))
        added.append(r["id"])
    if not added:
        return []
    indent = "  " if "\n  - " in text else ""
    new_text = text.rstrip("\n") + "\n" + "".join("".join(indent + line + "\n" for line in b.splitlines()) for b in block)
    path.write_text(new_text)
    try:
        load_catalog(project.root, path)
    except ConfigError:
        path.write_text(text)
        raise
    return added


