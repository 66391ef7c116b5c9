"""Apply patch specs to the items of one collection (inside the collection task).

Which items a patch selects:
* ``ids``: looked up in the collection's item set, no state needed;
* ``cql2``: evaluated with the ``cql2`` package against the item as mapped. Results are kept in
  the state (``patch_matches``) with the body digest each item had when it was looked at
  (``patch_seen``), so a build re-evaluates a CQL2 patch over the whole collection only when
  the patch itself is new or edited, and otherwise only over items whose mapped body changed.

What a patch does to an item is decided by its *chain*: every patch selecting it, in file then
document order. A chain with a delete removes the item. Otherwise the ops run one after the
other on the mapped item, ``properties.updated`` becomes the commit time of the newest patch
in the chain, and the chain's digest (patch digests and times) is stored with the output, so
an item is rewritten exactly when its mapped body or its chain changed. A chain that fails
(a ``test`` op, a missing path) leaves the item at its last good output.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from stacgit.state import patches as stored
from stacgit.geo import bbox_2d, geometry_problem
from stacgit.gitinfo import UNCOMMITTED
from stacgit.hashing import digest_obj, pretty_json
from stacgit.mapping import format_datetime, parse_rfc3339, sortable_datetime
from stacgit.patches import Patch, PatchFailed

_MOVING = ("/geometry", "/bbox", "/properties/datetime", "/properties/start_datetime", "/properties/end_datetime")


def moves_item(patch: Patch) -> bool:
    """Whether the patch may change what layout and extents are computed from."""
    for op in patch.ops:
        for pointer in (op["path"], op.get("from", "")):
            if not pointer:
                continue
            if any(pointer == m or pointer.startswith(m + "/") or m.startswith(pointer + "/") for m in _MOVING):
                return True
    return False


@dataclass
class Applied:
    """What the patches of a collection do, for the items the build needs to know about."""

    chains: dict[str, tuple[Patch, ...]] = field(default_factory=dict)  # item -> patches (no deletes)
    digests: dict[str, str] = field(default_factory=dict)  # item -> chain digest
    deleted: dict[str, Patch] = field(default_factory=dict)  # item -> the delete patch
    bodies: dict[str, bytes] = field(default_factory=dict)  # item -> patched body (pretty, no structural links)
    moved: dict[str, tuple] = field(default_factory=dict)  # item -> (start, end, w, s, e, n) after patching
    failed: dict[str, tuple[Patch, int, str]] = field(default_factory=dict)  # item -> (patch, op index, reason)
    stats: dict[str, dict] = field(default_factory=dict)  # patch key -> counts and unmatched ids

    def empty(self) -> bool:
        return not (self.chains or self.deleted or self.failed)


def chain_digest(chain: tuple[Patch, ...], times: dict[str, str]) -> str:
    return digest_obj([(p.key, p.digest, times[p.file]) for p in chain])


def updated_time(chain: tuple[Patch, ...], times: dict[str, str], now: str) -> str:
    stamps = [times[p.file] for p in chain]
    return now if UNCOMMITTED in stamps else max(stamps)


class BodyReader:
    """Reads mapped item bodies from the shard cache files (one open file per shard)."""

    def __init__(self, cache_root: str, cache_files: dict[str, str]):
        self.cache_root = cache_root
        self.cache_files = cache_files
        self._open: dict[str, object] = {}

    def read(self, shard: str, off: int, ln: int) -> bytes:
        f = self._open.get(shard)
        if f is None:
            f = self._open[shard] = open(os.path.join(self.cache_root, self.cache_files[shard]), "rb")
        f.seek(off)
        return f.read(ln)

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()


def _select_cql2(con, key: tuple[str, str], patches: list[Patch], items: dict[str, tuple], reader: BodyReader) -> dict[str, set[str]]:
    """Item ids each CQL2 patch selects, re-evaluating only what is new or changed."""
    cql = [p for p in patches if p.cql2 is not None]
    if not cql:
        stored.forget(con, key)
        return {}
    evals = stored.evaluated(con, key)
    seen = stored.seen(con, key)
    stale = [p for p in cql if evals.get(p.key) != p.digest]
    fresh = [p for p in cql if evals.get(p.key) == p.digest]
    changed = [i for i, r in items.items() if seen.get(i) != r[1]]
    matches: dict[str, set[str]] = {p.key: set() for p in cql}
    for p in fresh:
        matches[p.key] = {i for i in stored.matches(con, key, p.key) if i in items}
    changed_set = set(changed)
    for p in fresh:
        matches[p.key] -= changed_set

    def evaluate(item_ids, plist):
        for i in item_ids:
            shard, _, off, ln = items[i]
            body = orjson.loads(reader.read(shard, off, ln))
            for p in plist:
                if p.ids is not None and i not in p.ids:
                    continue
                if p.expr().matches(body):
                    matches[p.key].add(i)

    if fresh:
        evaluate(changed, fresh)
    if stale:
        restrict = set().union(*(p.ids for p in stale)) if all(p.ids is not None for p in stale) else None
        evaluate([i for i in items if restrict is None or i in restrict], stale)
    if stale:
        changed = list(items)
    stored.save(con, key, [(p.key, p.digest) for p in cql], matches, bool(stale), [i for i in seen if i not in items], [(i, items[i][1]) for i in changed])
    return matches


def apply_patches(
    con,
    key: tuple[str, str],
    patches: list[Patch],
    times: dict[str, str],
    now: str,
    items: dict[str, tuple],
    reader: BodyReader,
    needs_body: Callable[[str, str, str], bool],
) -> Applied:
    """Decide every item's chain; apply the chains whose result the build needs.

    ``items``: item id -> (shard, body digest, cache offset, cache length).
    ``needs_body(item_id, body_digest, chain_digest)``: whether the item will be (re)written.
    """
    out = Applied()
    if not patches:
        return out
    cql_matches = _select_cql2(con, key, patches, items, reader)
    selected: dict[str, list[Patch]] = {}
    for p in patches:
        if p.cql2 is not None:
            hits = cql_matches.get(p.key, set())
        else:
            hits = {i for i in p.ids if i in items}
        stat = out.stats[p.key] = {"matched": len(hits), "patched": 0, "deleted": 0, "failed": 0, "unmatched": []}
        if p.ids is not None:
            stat["unmatched"] = sorted(i for i in set(p.ids) if i not in items)
        for i in hits:
            selected.setdefault(i, []).append(p)
    for item_id in sorted(selected):
        chain = tuple(selected[item_id])
        deleting = next((p for p in chain if p.delete), None)
        if deleting is not None:
            out.deleted[item_id] = deleting
            out.stats[deleting.key]["deleted"] += 1
            continue
        digest = chain_digest(chain, times)
        out.chains[item_id] = chain
        out.digests[item_id] = digest
        shard, body_digest, off, ln = items[item_id]
        moving = any(moves_item(p) for p in chain)
        if not (needs_body(item_id, body_digest, digest) or moving):
            for p in chain:
                out.stats[p.key]["patched"] += 1
            continue
        doc = orjson.loads(reader.read(shard, off, ln))
        try:
            for p in chain:
                try:
                    doc = p.apply(doc)
                except PatchFailed as exc:
                    raise _ChainFailed(p, exc.op_index, exc.reason) from None
        except _ChainFailed as exc:
            out.failed[item_id] = (exc.patch, exc.op_index, exc.reason)
            out.stats[exc.patch.key]["failed"] += 1
            del out.chains[item_id], out.digests[item_id]
            continue
        for p in chain:
            out.stats[p.key]["patched"] += 1
        props = doc.setdefault("properties", {})
        if isinstance(props, dict):
            props["updated"] = updated_time(chain, times, now)
        out.bodies[item_id] = pretty_json(doc)
        if moving:
            where = _time_and_bbox(doc)
            if isinstance(where, str):  # a patch that breaks the datetime or bbox has failed
                p = next(p for p in chain if moves_item(p))
                out.failed[item_id] = (p, len(p.ops) - 1, where)
                out.stats[p.key]["failed"] += 1
                del out.chains[item_id], out.digests[item_id], out.bodies[item_id]
                continue
            out.moved[item_id] = where
    return out


def _sortable(value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a datetime string")
    return sortable_datetime(format_datetime(parse_rfc3339(value)))


def _time_and_bbox(doc: dict) -> tuple | str:
    """(start, end, w, s, e, n) of a patched item, or why it cannot have them."""
    props = doc.get("properties")
    if not isinstance(props, dict):
        return "the patched item has no properties object"
    try:
        start = _sortable(props.get("start_datetime") or props["datetime"])
        end = _sortable(props.get("end_datetime") or props["datetime"])
    except (KeyError, ValueError) as exc:
        return f"the patched item has no valid datetime ({exc})"
    why = geometry_problem(doc.get("geometry"))
    if why:
        return f"the patched item's geometry: {why}"
    bbox = doc.get("bbox")
    if bbox is None:
        return (start, end, None, None, None, None)
    try:
        return (start, end, *bbox_2d(bbox))
    except ValueError as exc:
        return f"the patched item's bbox: {exc}"


class _ChainFailed(Exception):
    def __init__(self, patch: Patch, op_index: int, reason: str):
        self.patch, self.op_index, self.reason = patch, op_index, reason


def apply_document_patches(doc_bytes: bytes, patches: list[Patch]) -> tuple[bytes, tuple[Patch, int, str] | None]:
    """Patch a collection document; on failure return the unpatched bytes and the failure."""
    if not patches:
        return doc_bytes, None
    doc = orjson.loads(doc_bytes)
    for p in patches:
        try:
            doc = p.apply(doc)
        except PatchFailed as exc:
            return doc_bytes, (p, exc.op_index, exc.reason)
    return pretty_json(doc), None
