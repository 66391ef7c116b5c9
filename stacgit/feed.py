"""The change feed: which items a publish adds, updates and deletes, computed at publish time.

The build holds no history (it is a pure function of the commit); what changed is a question
about two manifests: the one last published to a target and the one of the build being
published. Both are deterministic, so every machine that publishes the same commit over the
same target publishes the same feed, and applying the feed to a copy of the previous publish
gives exactly the new catalog.

Items are recognised by their place in the manifest: ``<collection>/.../<id>.json`` (every
item layout ends in ``{id}.json``; catalogs and collections are ``catalog.json`` and
``collection.json``, names no item id may take).

Two forms, both NDJSON sorted by (collection, id):

- the feed, ``{"collection", "id", "op": "add"|"update"|"delete", "digest", "href"}``;
- for catalogs with pgstac output, the same changes as pgstac operations: every delete and
  update first as ``{"op": "delete", "collection", "id"}``, then every add and update as
  ``{"op": "insert", "item": {...}}`` (pgstac partitions items by datetime, so an update is a
  delete plus an insert: an upsert of an item whose datetime moved would leave a duplicate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import orjson

from stacgit.hashing import sha256_bytes

FEED_DIR = "changes/"
FEED_INDEX = FEED_DIR + "index.json"
_NOT_ITEMS = ("catalog.json", "collection.json")


@dataclass(frozen=True)
class Change:
    collection: str
    item_id: str
    op: str  # add | update | delete
    sha256: str  # of the item's bytes as built (for a delete: as last published)
    rel: str  # path in the catalog (for a delete: where it was)


def item_key(rel: str) -> tuple[str, str] | None:
    """(collection, item id) of an item file of a catalog build, None for anything else."""
    if rel.startswith(FEED_DIR) or "/" not in rel:
        return None
    collection, _, rest = rel.partition("/")
    name = rest.rsplit("/", 1)[-1]
    if not name.endswith(".json") or name in _NOT_ITEMS or rest.startswith("parquet/"):
        return None
    return collection, name[: -len(".json")]


def _items(files: dict[str, dict], digest: Callable[[dict], str]) -> dict[tuple[str, str], tuple[str, str]]:
    out = {}
    for rel, entry in files.items():
        key = item_key(rel)
        if key is not None:
            out[key] = (digest(entry), rel)
    return out


def compute_changes(published: dict[str, dict] | None, built: dict[str, dict]) -> list[Change]:
    """The item changes from ``published`` (the ``files`` of the target's manifest; an entry's
    ``build`` digest, when present, is the digest of the bytes as built) to ``built`` (the
    build manifest's ``files``), sorted by (collection, id)."""
    old = _items(published or {}, lambda e: e.get("build", e["sha256"]))
    new = _items(built, lambda e: e["sha256"])
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if after is None:
            changes.append(Change(*key, "delete", *before))  # type: ignore[misc]
        elif before is None:
            changes.append(Change(*key, "add", *after))
        elif before != after:  # other bytes, or the same bytes at another place
            changes.append(Change(*key, "update", *after))
    return changes


def render_feed(changes: Iterable[Change]) -> bytes:
    return b"".join(
        orjson.dumps({"collection": c.collection, "digest": f"sha256:{c.sha256}", "href": "../" + c.rel, "id": c.item_id, "op": c.op}, option=orjson.OPT_SORT_KEYS) + b"\n"
        for c in changes
    )


def render_pgstac_feed(changes: list[Change], read_item: Callable[[str], dict], to_line: Callable[[dict], bytes]) -> bytes:
    """The changes as pgstac operations (module docstring); ``read_item(rel)`` gives a built
    item, ``to_line(item)`` its pgstac form (one line, with its newline)."""
    deletes = [orjson.dumps({"collection": c.collection, "id": c.item_id, "op": "delete"}, option=orjson.OPT_SORT_KEYS) + b"\n" for c in changes if c.op != "add"]
    inserts = [b'{"item":' + to_line(read_item(c.rel))[:-1] + b',"op":"insert"}\n' for c in changes if c.op != "delete"]
    return b"".join(deletes + inserts)


def feed_name(feed: bytes) -> str:
    """Feed records are named by their content, so a rerun of an interrupted publish writes
    the same record, and a published record never changes (served as immutable)."""
    return sha256_bytes(feed)[:16]


def counts(changes: Iterable[Change]) -> dict[str, int]:
    out = {"added": 0, "updated": 0, "deleted": 0}
    for c in changes:
        out[{"add": "added", "update": "updated", "delete": "deleted"}[c.op]] += 1
    return out


def apply_feed(state: dict[tuple[str, str], str], feed: bytes) -> dict[tuple[str, str], str]:
    """A consumer's view, (collection, id) -> digest, with a feed applied (for tests and for
    users checking a mirror)."""
    out = dict(state)
    for line in feed.splitlines():
        rec = orjson.loads(line)
        key = (rec["collection"], rec["id"])
        if rec["op"] == "delete":
            out.pop(key, None)
        else:
            out[key] = rec["digest"]
    return out


__all__ = ["Change", "FEED_DIR", "FEED_INDEX", "apply_feed", "compute_changes", "counts", "feed_name", "item_key", "render_feed", "render_pgstac_feed"]
