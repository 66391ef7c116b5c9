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


def duplicate_id(con: sqlite3.Connection, key: Key) -> tuple[str, list[str]] | None:
    """The first item id (in id order) that more than one source file gives, with those files."""
    dup = con.execute("SELECT item_id FROM records WHERE catalog=? AND collection=? GROUP BY item_id HAVING COUNT(*) > 1 ORDER BY item_id LIMIT 1", key).fetchone()
    return None if dup is None else (dup[0], shards_of(con, key, dup[0]))


def shards_of(con: sqlite3.Connection, key: Key, item_id: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT shard FROM records WHERE catalog=? AND collection=? AND item_id=?", (*key, item_id))]


def members(con: sqlite3.Connection, key: Key) -> list[tuple[str, str]]:
    """(item id, sortable start) of every record."""
    return con.execute("SELECT item_id, start FROM records WHERE catalog=? AND collection=?", key).fetchall()


def record_details(con: sqlite3.Connection, key: Key) -> dict[str, tuple]:
    """Item id -> (shard, body digest, offset, length, start, end, w, s, e, n)."""
    rows = con.execute("SELECT item_id, shard, body_digest, cache_off, cache_len, start, end, w, s, e, n FROM records WHERE catalog=? AND collection=?", key)
    return {r[0]: r[1:] for r in rows}


def forget_shards(con: sqlite3.Connection, key: Key, shards: list[str]) -> None:
    """Source files that are gone: their records and failures go (their items count as removed)."""
    with Transaction(con):
        for s in shards:
            for table in ("shards", "records", "failures"):
                con.execute(f"DELETE FROM {table} WHERE catalog=? AND collection=? AND shard=?", (*key, s))


def was_patched(con: sqlite3.Connection, key: Key) -> bool:
    """Did a patch touch the collection at its last build?"""
    sql = "SELECT 1 FROM patch_stats WHERE catalog=? AND collection=? UNION SELECT 1 FROM outputs WHERE catalog=? AND collection=? AND patch_digest IS NOT NULL LIMIT 1"
    return con.execute(sql, (*key, *key)).fetchone() is not None


def item_outputs(con: sqlite3.Connection, key: Key) -> dict[str, tuple]:
    """Item id -> (path, body digest, patch digest) of every item file written."""
    return {r[0]: r[1:] for r in con.execute("SELECT item_id, path, body_digest, patch_digest FROM outputs WHERE catalog=? AND collection=? AND kind='item'", key)}


def structure(con: sqlite3.Connection, key: Key) -> str | None:
    """The digest of the layout tree at the collection's last build (None: never built)."""
    row = con.execute("SELECT structure FROM aggregates WHERE catalog=? AND collection=?", key).fetchone()
    return row[0] if row else None


def catalog_documents(con: sqlite3.Connection, key: Key) -> dict[str, str]:
    """Path -> sha256 of the collection's sub-catalog documents."""
    return dict(con.execute("SELECT path, sha256 FROM outputs WHERE catalog=? AND collection=? AND item_id IS NULL AND kind='catalog'", key).fetchall())


def journal(con: sqlite3.Connection, catalog: str, collection: str, paths: list[str]) -> None:
    """Paths about to be written or deleted: undone by the next build if this one stops."""
    with Transaction(con):
        con.executemany("INSERT INTO pending VALUES (?,?,?)", [(catalog, collection, p) for p in paths])


def save_step(con: sqlite3.Connection, key: Key, *, deletes: list[str], items: list[tuple], documents: list[tuple], patch_stats: list[tuple],
              patch_failures: list[tuple], aggregate: tuple, run_id: str, report: dict) -> None:
    """Commit what the collection step wrote and deleted, in one transaction: output rows of item
    files (path, item id, body digest, sha256, size, patch digest) and documents (path, sha256,
    size), patch stats and failures, the aggregate (input digest, structure, patches digest);
    the journal and the item queue are emptied, and the report saved."""
    from stacgit.state.reports import save_report

    catalog, collection = key
    with Transaction(con):
        con.executemany("DELETE FROM outputs WHERE catalog=? AND path=?", [(catalog, p) for p in deletes])
        con.executemany("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)",
                        [(catalog, w[0], collection, w[1], "item", w[2], w[3], w[4], w[5] if len(w) > 5 else None) for w in items])
        con.executemany("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)",
                        [(catalog, p, collection, None, "catalog", None, sha, size, None) for p, sha, size in documents])
        con.execute("DELETE FROM patch_stats WHERE catalog=? AND collection=?", key)
        con.executemany("INSERT INTO patch_stats VALUES (?,?,?,?,?,?,?,?)", [(*key, *row) for row in patch_stats])
        con.execute("DELETE FROM patch_failures WHERE catalog=? AND collection=?", key)
        con.executemany("INSERT INTO patch_failures VALUES (?,?,?,?,?,?)", patch_failures)
        con.execute("DELETE FROM pending WHERE catalog=? AND collection=?", key)
        con.execute("DELETE FROM item_queue WHERE catalog=? AND collection=?", key)
        con.execute("INSERT OR REPLACE INTO aggregates VALUES (?,?,?,?,?,?)", (*key, *aggregate, None))
        save_report(con, run_id, f"collection:{catalog}/{collection}", report)
