"""What the export step reads and records: which items changed since a collection's last export
(staged in temporary tables of the connection, so that a change of 3,000 items at 800,000 does not
hold the collection in memory), the rows of each partition in order, and, once the files are
written, the state that describes them (``exported``, ``export_parts``, ``export_config`` and the
``outputs`` rows of parquet, pgstac and further-format files)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from stacgit.state.store import EVERY_ITEM, Transaction, item_count, only_queued

Key = tuple[str, str]  # (catalog, collection)


def input_digest(con: sqlite3.Connection, key: Key) -> str | None:
    """The digest of a collection's items as its collection step last left them."""
    row = con.execute("SELECT input_digest FROM aggregates WHERE catalog=? AND collection=?", key).fetchone()
    return row[0] if row else None


def last_export(con: sqlite3.Connection, key: Key) -> tuple[str, str | None] | None:
    """(settings digest, input digest) of the collection's last export; None: never exported."""
    row = con.execute("SELECT digest, input_digest FROM export_config WHERE catalog=? AND collection=?", key).fetchone()
    return (row[0], row[1]) if row else None


def known_parts(con: sqlite3.Connection, key: Key) -> dict[str, tuple]:
    """Partition -> (sha256, size) of its parquet file, as the last export wrote it."""
    rows = con.execute("SELECT part, sha256, size FROM export_parts WHERE catalog=? AND collection=?", key)
    return {r[0]: r[1:] for r in rows}


def item_path(con: sqlite3.Connection, key: Key, item_id: str) -> str | None:
    row = con.execute("SELECT path FROM outputs WHERE catalog=? AND collection=? AND item_id=? AND kind='item'", (*key, item_id)).fetchone()
    return row[0] if row else None


# -- what changed: staged in temporary tables ---------------------------------------------------

_TEMP_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS ex_new (item_id TEXT PRIMARY KEY, sha256 TEXT, part TEXT, sort TEXT, path TEXT);
CREATE INDEX IF NOT EXISTS temp.ex_new_by_part ON ex_new (part);
CREATE TEMP TABLE IF NOT EXISTS ex_rows (item_id TEXT, sha256 TEXT, part TEXT, sort TEXT, path TEXT, off INTEGER, len INTEGER);
CREATE TEMP TABLE IF NOT EXISTS ex_gone (item_id TEXT PRIMARY KEY, part TEXT);
"""


_CURRENT = """SELECT o.item_id, o.path, o.sha256, o.patch_digest,
       (SELECT r.start FROM records r WHERE r.catalog=o.catalog AND r.collection=o.collection
          AND r.item_id=o.item_id AND r.body_digest=o.body_digest LIMIT 1),
       e.sha256, e.part, e.path
  FROM {source} outputs o {on} LEFT JOIN exported e ON e.catalog=o.catalog AND e.collection=o.collection AND e.item_id=o.item_id
 WHERE o.catalog=? AND o.collection=? AND o.kind='item'"""


_GONE = """SELECT e.item_id, e.part FROM {source} exported e {on} WHERE e.catalog=? AND e.collection=? AND NOT EXISTS (SELECT 1 FROM outputs o
    WHERE o.catalog=e.catalog AND o.collection=e.collection AND o.item_id=e.item_id AND o.kind='item')"""


_FRESH = "SELECT sort, item_id, path, sha256 FROM temp.ex_new WHERE part=? ORDER BY sort, item_id"


_OLD_ROWS = """FROM exported e INDEXED BY exported_in_order
 WHERE e.catalog=? AND e.collection=? AND e.part=? ORDER BY e.sort, e.item_id"""
"""A partition's rows as the last export wrote them, in their order: row numbers of one query
are row numbers of the other."""


def start_staging(con: sqlite3.Connection) -> None:
    """Empty temporary tables for one export (they live as long as the connection)."""
    con.executescript(_TEMP_TABLES)
    for table in ("ex_new", "ex_rows", "ex_gone"):
        con.execute(f"DELETE FROM temp.{table}")


def current_items(con: sqlite3.Connection, key: Key, queued: bool, every: bool) -> Iterator[tuple]:
    """(item id, path, sha256, patch digest, record start, exported sha256, part, path) of the
    collection's items that changed since the last export: of those queued, or of all; with
    ``every``, all of them whether changed or not."""
    query = _CURRENT.format_map(only_queued("export_queue", "o") if queued else EVERY_ITEM)
    if not every:
        query += " AND (e.sha256 IS NOT o.sha256 OR e.path IS NOT o.path)"
    return con.execute(query, key)


def _insert(con: sqlite3.Connection, sql: str, rows: list[tuple]) -> None:
    """Rows into a temporary table, in one transaction of the temp database; empties ``rows``."""
    if rows:
        con.execute("BEGIN")
        con.executemany(sql, rows)
        con.execute("COMMIT")
        rows.clear()


def stage_new(con: sqlite3.Connection, rows: list[tuple]) -> None:
    """(item id, sha256, part, sort, path) of changed items; empties ``rows``."""
    _insert(con, "INSERT INTO temp.ex_new VALUES (?,?,?,?,?)", rows)


def stage_gone(con: sqlite3.Connection, key: Key, queued: bool) -> dict[str, int]:
    """Stage the items exported before that are gone from the build; partition -> count."""
    con.execute("BEGIN")
    con.execute("INSERT INTO temp.ex_gone " + _GONE.format_map(only_queued("export_queue", "e") if queued else EVERY_ITEM), key)
    con.execute("COMMIT")
    return dict(con.execute("SELECT part, COUNT(*) FROM temp.ex_gone GROUP BY part").fetchall())


def replaced_ids(con: sqlite3.Connection) -> set[str]:
    """Ids of the staged items, changed or gone: their old rows are not carried over."""
    return {r[0] for r in con.execute("SELECT item_id FROM temp.ex_new UNION ALL SELECT item_id FROM temp.ex_gone")}


def exports_agree(con: sqlite3.Connection, key: Key, added: int, gone: int) -> bool:
    """Whether the exports, with the staged changes, would hold as many items as the build: a
    check (two index counts) that the queue has not missed an item added or removed."""
    exported = con.execute("SELECT COUNT(*) FROM exported WHERE catalog=? AND collection=?", key).fetchone()[0]
    return item_count(con, key) == exported + added - gone


def piece_growth(con: sqlite3.Connection, catalog: str, part: str) -> int:
    """At most how many bytes a partition's changed items add to its pgstac piece: the sizes of
    their item files (a pgstac line is the same item, compact and without structural links)."""
    sql = "SELECT coalesce(sum(o.size), 0) FROM temp.ex_new n JOIN outputs o ON o.catalog=? AND o.path=n.path WHERE n.part=?"
    return con.execute(sql, (catalog, part)).fetchone()[0]


def fresh_rows(con: sqlite3.Connection, part: str) -> Iterator[tuple]:
    """(sort, item id, path, sha256) of a partition's changed items, in order."""
    return con.execute(_FRESH, (part,))


def old_rows(con: sqlite3.Connection, key: Key, part: str) -> Iterator[tuple]:
    """(sort, item id, path, sha256) of a partition's rows as the last export wrote them, in order."""
    return con.execute("SELECT e.sort, e.item_id, e.path, e.sha256 " + _OLD_ROWS, (*key, part))


def old_keys(con: sqlite3.Connection, key: Key, part: str) -> list[tuple[str, str]]:
    """(sort, item id) of the same rows."""
    return con.execute("SELECT e.sort, e.item_id " + _OLD_ROWS, (*key, part)).fetchall()


def stage_rows(con: sqlite3.Connection, rows: list[tuple]) -> None:
    """(item id, sha256, part, sort, path, offset, length) of rows written to a partition's files."""
    _insert(con, "INSERT INTO temp.ex_rows VALUES (?,?,?,?,?,?,?)", rows)


def unstage_rows(con: sqlite3.Connection, part: str) -> None:
    """Forget the rows staged for a partition (it is being written again from scratch)."""
    con.execute("DELETE FROM temp.ex_rows WHERE part=?", (part,))


# -- what the export wrote ----------------------------------------------------------------------


@dataclass
class ExportRecord:
    """The files one export wrote and removed, recorded after they are in place."""

    settings_digest: str
    input_digest: str | None
    parts_written: list[tuple[str, str, str | None, int | None]] = field(default_factory=list)  # part, parquet path, sha256, size
    parts_deleted: list[tuple[str, str]] = field(default_factory=list)  # part, parquet path
    parquet: bool = True  # False: no parquet outputs remain
    files: list[tuple[str, str, str, int]] = field(default_factory=list)  # path, kind, sha256, size
    files_gone: list[str] = field(default_factory=list)


def record_export(con: sqlite3.Connection, key: Key, rec: ExportRecord) -> None:
    """In one transaction: the partitions, the staged rows, the files, and the settings and input
    digests that make the next export of unchanged items a no-op; the export queue is emptied."""
    cat_id, coll_id = key
    with Transaction(con):
        for part, rel in rec.parts_deleted:
            con.execute("DELETE FROM export_parts WHERE catalog=? AND collection=? AND part=?", (*key, part))
            con.execute("DELETE FROM outputs WHERE catalog=? AND path=?", (cat_id, rel))
        for part, rel, sha, size in rec.parts_written:
            con.execute("INSERT OR REPLACE INTO export_parts VALUES (?,?,?,?,?)", (*key, part, sha, size))
            if sha is not None:
                con.execute("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)", (cat_id, rel, coll_id, None, "parquet", None, sha, size, None))
        if not rec.parquet:
            con.execute("DELETE FROM outputs WHERE catalog=? AND collection=? AND kind='parquet'", key)
        con.execute("DELETE FROM exported WHERE catalog=? AND collection=? AND item_id IN (SELECT item_id FROM temp.ex_gone)", key)
        con.execute(  # rows updated in place (most only move to another offset)
            "INSERT INTO exported SELECT ?, ?, item_id, sha256, part, sort, path, off, len FROM temp.ex_rows WHERE true "
            "ON CONFLICT (catalog, collection, item_id) DO UPDATE SET sha256=excluded.sha256, part=excluded.part, "
            "sort=excluded.sort, path=excluded.path, off=excluded.off, len=excluded.len",
            key,
        )
        for rel, kind, sha, size in rec.files:
            con.execute("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)", (cat_id, rel, coll_id, None, kind, None, sha, size, None))
        con.executemany("DELETE FROM outputs WHERE catalog=? AND path=?", [(cat_id, rel) for rel in rec.files_gone])
        con.execute("INSERT OR REPLACE INTO export_config VALUES (?,?,?,?)", (*key, rec.settings_digest, rec.input_digest))
        con.execute("DELETE FROM export_queue WHERE catalog=? AND collection=?", key)


def set_catalog_file(con: sqlite3.Connection, catalog: str, rel: str, kind: str, sha: str, size: int) -> None:
    """A file of the catalog as a whole (``pgstac/collections.ndjson``)."""
    with Transaction(con):
        con.execute("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)", (catalog, rel, "", None, kind, None, sha, size, None))


def drop_catalog_files(con: sqlite3.Connection, catalog: str, rels: Iterable[str]) -> None:
    with Transaction(con):
        con.executemany("DELETE FROM outputs WHERE catalog=? AND path=?", [(catalog, rel) for rel in rels])
