"""What the catalog step reads and records: the collections the state knows of, each one's
failures for ``failed.ndjson``, the root's row and the catalog's input digest, the manifest
fragments' digests, and forgetting a collection that left catalog.yaml."""

from __future__ import annotations

import sqlite3

from stacgit.state.store import COLLECTION_TABLES, Transaction


def known_collections(con: sqlite3.Connection, catalog: str) -> set[str]:
    """Collections with outputs or shards in the state."""
    known = {r[0] for r in con.execute("SELECT DISTINCT collection FROM outputs WHERE catalog=? AND collection != ''", (catalog,))}
    return known | {r[0] for r in con.execute("SELECT DISTINCT collection FROM shards WHERE catalog=?", (catalog,))}


def item_count(con: sqlite3.Connection, catalog: str, collection: str) -> int:
    return con.execute("SELECT COUNT(*) FROM outputs WHERE catalog=? AND collection=? AND kind='item'", (catalog, collection)).fetchone()[0]


def forget_collection(con: sqlite3.Connection, catalog: str, collection: str) -> list[str]:
    """Forget everything of a collection; return its body cache files (for the caller to remove)."""
    caches = [r[0] for r in con.execute("SELECT cache_file FROM shards WHERE catalog=? AND collection=?", (catalog, collection))]
    with Transaction(con):
        for table in COLLECTION_TABLES:
            con.execute(f"DELETE FROM {table} WHERE catalog=? AND collection=?", (catalog, collection))
    return caches


def record_failures(con: sqlite3.Connection, catalog: str) -> list[tuple]:
    """(collection, shard, location, field, reason, item id) of records that failed to map."""
    return con.execute("SELECT collection, shard, loc, field, reason, item_id FROM failures WHERE catalog=? ORDER BY collection, shard, rowid", (catalog,)).fetchall()


def patch_failures(con: sqlite3.Connection, catalog: str) -> list[tuple]:
    """(collection, patch key, op index, item id, reason) of patch operations that failed."""
    return con.execute(
        "SELECT collection, patch_key, op_index, item_id, reason FROM patch_failures WHERE catalog=? ORDER BY collection, patch_key, item_id", (catalog,)
    ).fetchall()


def root_sha(con: sqlite3.Connection, catalog: str) -> str | None:
    row = con.execute("SELECT sha256 FROM outputs WHERE catalog=? AND path='catalog.json'", (catalog,)).fetchone()
    return row[0] if row else None


def begin_root(con: sqlite3.Connection, catalog: str) -> None:
    """catalog.json and manifest.json are about to be written: journal them."""
    with Transaction(con):
        con.executemany("INSERT INTO pending VALUES (?,?,?)", [(catalog, "", p) for p in ("catalog.json", "manifest.json")])


def end_root(con: sqlite3.Connection, catalog: str, sha256: str, size: int) -> None:
    with Transaction(con):
        con.execute("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)", (catalog, "catalog.json", "", None, "root", None, sha256, size, None))
        con.execute("DELETE FROM pending WHERE catalog=? AND collection=''", (catalog,))


def save_catalog_input(con: sqlite3.Connection, catalog: str, input_digest: str | None) -> None:
    """Inside the caller's transaction (with its report)."""
    con.execute("INSERT OR REPLACE INTO aggregates VALUES (?,?,?,?,?,?)", (catalog, "", input_digest, None, None, None))


def fragment_digest(con: sqlite3.Connection, catalog: str, collection: str) -> str | None:
    row = con.execute("SELECT manifest FROM aggregates WHERE catalog=? AND collection=?", (catalog, collection)).fetchone()
    return row[0] if row else None


def fragment_digests(con: sqlite3.Connection, catalog: str) -> dict[str, str | None]:
    return dict(con.execute("SELECT collection, manifest FROM aggregates WHERE catalog=? AND collection != ''", (catalog,)).fetchall())


def set_fragment_digest(con: sqlite3.Connection, catalog: str, collection: str, digest: str) -> None:
    con.execute("UPDATE aggregates SET manifest=? WHERE catalog=? AND collection=?", (digest, catalog, collection))
