"""Where each item of a collection goes: bounded fan-out by time, then by id hash. Pure.

A node (the collection, or a sub-catalog) holding more than ``max_items`` items is split by the
next level: the configured time levels (year, month, day of the item's start time), then one
hex digit of a hash of the item id at a time, until every leaf holds at most ``max_items``.
The result depends only on the set of items, so two builds of the same inputs agree.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

_HASH_LEVELS = 8
_TIME_SLICES = {"year": (0, 4), "month": (5, 7), "day": (8, 10)}


@dataclass(frozen=True)
class Node:
    """A sub-catalog: ``segments`` are its directory names below the collection."""

    segments: tuple[str, ...]
    children: tuple[str, ...]  # child segment names (sub-catalogs), sorted
    items: tuple[str, ...]  # item ids (only on leaves), sorted

    @property
    def title(self) -> str:
        return "/".join(self.segments)


def _key(level: str, item_id: str, start: str) -> str:
    if level == "year":
        return start[0:4]
    if level == "month":
        return start[5:7]
    if level == "day":
        return start[8:10]
    depth = int(level[1:])
    return "h" + hashlib.blake2b(item_id.encode(), digest_size=8).hexdigest()[depth]


def compute_layout(items: list[tuple[str, str]], split: tuple[str, ...], max_items: int) -> tuple[dict[str, tuple[str, ...]], list[Node]]:
    """items: (item_id, sortable start time). Returns (item_id -> leaf segments, nodes)."""
    levels = list(split) + [f"h{i}" for i in range(_HASH_LEVELS)]
    placement: dict[str, tuple[str, ...]] = {}
    nodes: list[Node] = []

    stack = [((), items, 0)]
    while stack:
        segs, members, depth = stack.pop()
        if len(members) <= max_items or depth >= len(levels):
            ids = tuple(sorted(i for i, _ in members))
            nodes.append(Node(segs, (), ids))
            for i in ids:
                placement[i] = segs
            continue
        level = levels[depth]
        groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
        if level in _TIME_SLICES:
            lo, hi = _TIME_SLICES[level]
            for m in members:
                groups[m[1][lo:hi]].append(m)
        else:
            for m in members:
                groups[_key(level, m[0], m[1])].append(m)
        nodes.append(Node(segs, tuple(sorted(groups)), ()))
        for k in sorted(groups, reverse=True):
            stack.append((segs + (k,), groups[k], depth + 1))
    nodes.sort(key=lambda n: n.segments)
    return placement, nodes
