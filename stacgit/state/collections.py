"""What the collection step reads and records about a collection's items: records against the
item files written for them (all of them, or the ones in ``item_queue``), its extent and
partitions from the records' index, and the pending journal of a step that was stopped."""

from __future__ import annotations

import sqlite3
from typing import Iterator

from stacgit.state.store import EVERY_ITEM, Transaction, only_queued

Key = tuple[str, str]  # (catalog, collection)

_CHANGED_ITEMS = """SELECT r.item_id, r.shard, r.body_digest, r.cache_off, r.cache_len, o.path FROM {source} records r {on}
  LEFT JOIN outputs o ON o.catalog=r.catalog AND o.collection=r.collection AND o.item_id=r.item_id AND o.kind='item'
 WHERE r.catalog=? AND r.collection=? AND (o.body_digest IS NULL OR o.body_digest != r.body_digest)"""

_GONE_ITEMS = """SELECT o.path FROM {source} outputs o {on} WHERE o.catalog=? AND o.collection=? AND o.kind='item'
   AND NOT EXISTS (SELECT 1 FROM records r WHERE r.catalog=o.catalog AND r.collection=o.collection AND r.item_id=o.item_id)"""


def changed_items(con: sqlite3.Connection, key: Key, queued: bool) -> list[tuple]:
    """(item id, shard, body digest, cache offset, length, old path or None) of the records
    whose item file is missing or holds another body (of the queued items only, when ``queued``)."""
    which = only_queued("item_queue", "r") if queued else EVERY_ITEM
    return con.execute(_CHANGED_ITEMS.format_map(which), key).fetchall()


def gone_items(con: sqlite3.Connection, key: Key, queued: bool) -> list[str]:
    """Paths of item files whose record is gone (of the queued items only, when ``queued``)."""
    which = only_queued("item_queue", "o") if queued else EVERY_ITEM
    return [r[0] for r in con.execute(_GONE_ITEMS.format_map(which), key).fetchall()]


def item_files(con: sqlite3.Connection, key: Key) -> dict[str, tuple[str, str]]:
    """Path -> (item id, body digest) of every item file written."""
    return {r[0]: r[1:] for r in con.execute("SELECT path, item_id, body_digest FROM outputs WHERE catalog=? AND collection=? AND kind='item'", key)}


def record_bodies(con: sqlite3.Connection, key: Key) -> Iterator[tuple]:
    """(item id, shard, body digest, cache offset, length) of every record."""
    return con.execute("SELECT item_id, shard, body_digest, cache_off, cache_len FROM records WHERE catalog=? AND collection=?", key)


def extent(con: sqlite3.Connection, key: Key) -> tuple:
    """(min start, max end, min w, min s, max e, max n, count) over the records (a covering index)."""
    return con.execute("SELECT MIN(start), MAX(end), MIN(w), MIN(s), MAX(e), MAX(n), COUNT(*) FROM records WHERE catalog=? AND collection=?", key).fetchone()


def start_prefixes(con: sqlite3.Connection, key: Key, width: int) -> list[str]:
    """The distinct first ``width`` characters of the records' sortable start times."""
    return [r[0] for r in con.execute("SELECT DISTINCT substr(start, 1, ?) FROM records WHERE catalog=? AND collection=?", (width, *key))]


def pending_paths(con: sqlite3.Connection, catalog: str, collection: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT path FROM pending WHERE catalog=? AND collection=?", (catalog, collection))]


def forget_pending(con: sqlite3.Connection, catalog: str, collection: str, paths: list[str]) -> None:
    """The pending paths were removed: forget their outputs, the journal and the manifest fragment's digest."""
    with Transaction(con):
        con.executemany("DELETE FROM outputs WHERE catalog=? AND path=?", [(catalog, p) for p in paths])
        con.execute("DELETE FROM pending WHERE catalog=? AND collection=?", (catalog, collection))
        con.execute("UPDATE aggregates SET manifest=NULL WHERE catalog=? AND collection=?", (catalog, collection))
