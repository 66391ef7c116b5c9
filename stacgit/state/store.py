"""Crash-safe build state under ``.stacgit/state.sqlite3`` (SQLite, WAL).

Tables
  shards      one row per source shard: file stat + digest, config digest, result digest,
              and the mapped-body cache file that holds its items
  records     one row per mapped item of a shard: id, digests, time range, bbox, offset/length
              of its body in the shard's cache file (append-only; compacted when half dead).
              No line numbers: they shift when a line is removed, and an error that needs one
              finds it again by record digest
  item_queue  items whose record was added or removed (a changed record is both) since their
              collection task last ran, filled by triggers on ``records``: the task compares
              these with ``outputs``, not every item (and every item when the counts do not add up)
  failures    records that failed to map, per shard
  outputs     every file written under build/<catalog>/: sha256, size, and for items the
              body digest it was rendered from
  pending     paths about to be written/deleted; what a killed build leaves here is undone
              by the next build before it trusts ``outputs``
  aggregates  the input fingerprint of each collection / catalog at its last good build, and
              the digest of the collection's layout tree (same tree -> items that did not
              change did not move)
  reports     per-run, per-unit summaries (for ``stacgit build --json``)
  patch_evals     CQL2 patches (by key and digest) already evaluated against a collection
  patch_matches   items a CQL2 patch selected (ids-only patches need no state)
  patch_seen      body digest of each item when the CQL2 patches last looked at it
  patch_stats     per collection and patch: matched, patched, deleted, failed, unmatched ids
  patch_failures  items a patch could not be applied to (patch, document, op, reason)
  verdicts    validation result of every output file at the sha256 it was validated at, and
              the schema set (core + extensions + custom) it was validated against
  exported    each item as the GeoParquet partitions and pgstac files hold it: sha256, partition,
              sort key (rows and lines are in (sort, item_id) order), and the offset/length of its
              line in the partition's pgstac piece (when it was last written)
  export_parts  sha256 and size of each written partition file
  export_config the export settings + column types digest, and the collection input digest,
              of the last export of each collection
  export_queue  items whose output was written or deleted since their collection's last export,
              filled by triggers on ``outputs``: the export compares these with ``exported``,
              not every item (and every item when the counts do not add up)
  unvalidated outputs (STAC documents) written or deleted since validation last looked at them,
              filled by triggers on ``outputs``: validation reads these, not every output
  schema_sets the schema URLs of each set and the fingerprint of their content at the time;
              a changed fingerprint re-validates the documents of that set

Rule: files are written first, the rows describing them are committed after.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

from stacgit.errors import StacgitError

SCHEMA_VERSION = "6"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shards (
  catalog TEXT, collection TEXT, shard TEXT,
  size INTEGER, mtime_ns INTEGER, file_digest TEXT, config_digest TEXT,
  result_digest TEXT, cache_file TEXT, n_items INTEGER, n_failed INTEGER,
  PRIMARY KEY (catalog, collection, shard));
CREATE TABLE IF NOT EXISTS records (
  catalog TEXT, collection TEXT, shard TEXT, item_id TEXT,
  record_digest TEXT, body_digest TEXT, start TEXT, end TEXT,
  w REAL, s REAL, e REAL, n REAL, sig TEXT, cache_off INTEGER, cache_len INTEGER,
  PRIMARY KEY (catalog, collection, shard, item_id));
-- sig: the digest of the item's field types, kept only where GeoParquet columns are inferred
CREATE TABLE IF NOT EXISTS signatures (digest TEXT PRIMARY KEY, doc TEXT) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_sigs ON records (catalog, collection, sig, item_id) WHERE sig IS NOT NULL;
-- covering indexes: a collection's ids, times and boxes (its members and extent) and a shard's
-- record digests are read from narrow index entries, not from the wide rows (3x and 8x faster)
CREATE INDEX IF NOT EXISTS records_members ON records (catalog, collection, item_id, start, end, w, s, e, n);
CREATE INDEX IF NOT EXISTS records_prior ON records (catalog, collection, shard, record_digest, item_id, cache_len);
CREATE TABLE IF NOT EXISTS failures (
  catalog TEXT, collection TEXT, shard TEXT, loc TEXT, field TEXT, reason TEXT, item_id TEXT);
CREATE INDEX IF NOT EXISTS failures_by_shard ON failures (catalog, collection, shard);
CREATE TABLE IF NOT EXISTS outputs (
  catalog TEXT, path TEXT, collection TEXT, item_id TEXT, kind TEXT,
  body_digest TEXT, sha256 TEXT, size INTEGER, patch_digest TEXT,
  PRIMARY KEY (catalog, path));
CREATE INDEX IF NOT EXISTS outputs_by_collection ON outputs (catalog, collection, item_id);
CREATE INDEX IF NOT EXISTS outputs_patched ON outputs (catalog, collection) WHERE patch_digest IS NOT NULL;  -- is any item patched: without a scan
CREATE TABLE IF NOT EXISTS pending (catalog TEXT, collection TEXT, path TEXT);
CREATE TABLE IF NOT EXISTS aggregates (
  catalog TEXT, collection TEXT, input_digest TEXT, structure TEXT, patches TEXT, manifest TEXT, PRIMARY KEY (catalog, collection));
CREATE TABLE IF NOT EXISTS patch_evals (
  catalog TEXT, collection TEXT, patch_key TEXT, digest TEXT, PRIMARY KEY (catalog, collection, patch_key));
CREATE TABLE IF NOT EXISTS patch_matches (
  catalog TEXT, collection TEXT, patch_key TEXT, item_id TEXT, PRIMARY KEY (catalog, collection, patch_key, item_id));
CREATE TABLE IF NOT EXISTS patch_seen (
  catalog TEXT, collection TEXT, item_id TEXT, body_digest TEXT, PRIMARY KEY (catalog, collection, item_id));
CREATE TABLE IF NOT EXISTS patch_stats (
  catalog TEXT, collection TEXT, patch_key TEXT, matched INTEGER, patched INTEGER, deleted INTEGER,
  failed INTEGER, unmatched TEXT, PRIMARY KEY (catalog, collection, patch_key));
CREATE TABLE IF NOT EXISTS patch_failures (
  catalog TEXT, collection TEXT, patch_key TEXT, op_index INTEGER, item_id TEXT, reason TEXT);
CREATE TABLE IF NOT EXISTS verdicts (
  catalog TEXT, path TEXT, collection TEXT, item_id TEXT, sha256 TEXT, set_id TEXT, status TEXT, detail BLOB,
  PRIMARY KEY (catalog, path));
CREATE INDEX IF NOT EXISTS verdicts_by_set ON verdicts (catalog, set_id);
CREATE INDEX IF NOT EXISTS verdicts_by_status ON verdicts (catalog, status);
CREATE TABLE IF NOT EXISTS schema_sets (catalog TEXT, set_id TEXT, urls TEXT, fingerprint TEXT, PRIMARY KEY (catalog, set_id));
CREATE TABLE IF NOT EXISTS exported (
  catalog TEXT, collection TEXT, item_id TEXT, sha256 TEXT, part TEXT, sort TEXT, path TEXT, off INTEGER, len INTEGER,
  PRIMARY KEY (catalog, collection, item_id));
CREATE INDEX IF NOT EXISTS exported_in_order ON exported (catalog, collection, part, sort, item_id);
CREATE TABLE IF NOT EXISTS export_parts (catalog TEXT, collection TEXT, part TEXT, sha256 TEXT, size INTEGER, PRIMARY KEY (catalog, collection, part));
CREATE TABLE IF NOT EXISTS export_config (catalog TEXT, collection TEXT, digest TEXT, input_digest TEXT, PRIMARY KEY (catalog, collection));
CREATE TABLE IF NOT EXISTS reports (run_id TEXT, unit TEXT, data TEXT, PRIMARY KEY (run_id, unit));
"""

STAC_KINDS = "('item', 'catalog', 'root')"
"""Outputs that are STAC documents (GeoParquet and pgstac NDJSON are exports of them)."""

_QUEUES = (
    "CREATE TABLE IF NOT EXISTS unvalidated (catalog TEXT, path TEXT, PRIMARY KEY (catalog, path)) WITHOUT ROWID",
    f"""CREATE TRIGGER IF NOT EXISTS outputs_written AFTER INSERT ON outputs WHEN new.kind IN {STAC_KINDS}
       BEGIN INSERT OR IGNORE INTO unvalidated VALUES (new.catalog, new.path); END""",
    f"""CREATE TRIGGER IF NOT EXISTS outputs_deleted AFTER DELETE ON outputs WHEN old.kind IN {STAC_KINDS}
       BEGIN INSERT OR IGNORE INTO unvalidated VALUES (old.catalog, old.path); END""",
    "INSERT OR IGNORE INTO meta VALUES ('verdicts_changed', '0')",
    """CREATE TRIGGER IF NOT EXISTS verdicts_inserted AFTER INSERT ON verdicts
       BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'verdicts_changed'; END""",
    """CREATE TRIGGER IF NOT EXISTS verdicts_deleted AFTER DELETE ON verdicts
       BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'verdicts_changed'; END""",
    """CREATE TRIGGER IF NOT EXISTS verdicts_updated AFTER UPDATE ON verdicts
       BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'verdicts_changed'; END""",
    """CREATE TABLE IF NOT EXISTS export_queue (
       catalog TEXT, collection TEXT, item_id TEXT, PRIMARY KEY (catalog, collection, item_id)) WITHOUT ROWID""",
    """CREATE TRIGGER IF NOT EXISTS item_written AFTER INSERT ON outputs WHEN new.kind = 'item' AND new.item_id IS NOT NULL
       BEGIN INSERT OR IGNORE INTO export_queue VALUES (new.catalog, new.collection, new.item_id); END""",
    """CREATE TRIGGER IF NOT EXISTS item_deleted AFTER DELETE ON outputs WHEN old.kind = 'item' AND old.item_id IS NOT NULL
       BEGIN INSERT OR IGNORE INTO export_queue VALUES (old.catalog, old.collection, old.item_id); END""",
    """CREATE TABLE IF NOT EXISTS item_queue (
       catalog TEXT, collection TEXT, item_id TEXT, PRIMARY KEY (catalog, collection, item_id)) WITHOUT ROWID""",
    """CREATE TRIGGER IF NOT EXISTS record_added AFTER INSERT ON records
       BEGIN INSERT OR IGNORE INTO item_queue VALUES (new.catalog, new.collection, new.item_id); END""",
    """CREATE TRIGGER IF NOT EXISTS record_removed AFTER DELETE ON records
       BEGIN INSERT OR IGNORE INTO item_queue VALUES (old.catalog, old.collection, old.item_id); END""",
)
"""Work queues kept in step with the tables they follow (an ``INSERT OR REPLACE`` fires only
the insert trigger), and ``meta.verdicts_changed``, a count of every change to ``verdicts``: a
summary of the verdicts computed at one count holds as long as the count is the same. The
queues are described with the tables at the top of this module."""

COLLECTION_TABLES = (
    "shards", "records", "failures", "outputs", "pending", "aggregates",
    "patch_evals", "patch_matches", "patch_seen", "patch_stats", "patch_failures", "verdicts",
    "exported", "export_parts", "export_config", "export_queue", "item_queue",
)
"""Tables with (catalog, collection) columns: what forgetting a collection or catalog clears."""


def only_queued(queue: str, alias: str) -> dict[str, str]:
    """``source`` and ``on``: the pieces of a FROM clause that limit a query of table ``alias``
    to the items in ``queue`` (a (catalog, collection, item_id) table), read first:
    ``FROM {source} table alias {on}``."""
    return {"source": f"{queue} q CROSS JOIN", "on": f"ON {alias}.catalog=q.catalog AND {alias}.collection=q.collection AND {alias}.item_id=q.item_id"}


EVERY_ITEM = {"source": "", "on": ""}
"""The same pieces for every item of the collection."""

_CONNECTIONS: dict[tuple[int, int, str], sqlite3.Connection] = {}


def state_path(state_dir: Path) -> Path:
    return state_dir / "state.sqlite3"


def connect(state_dir: Path) -> sqlite3.Connection:
    """One connection per process, thread and state directory (never shared across a fork, nor
    between the collection steps a Dask build runs in threads)."""
    key = (os.getpid(), threading.get_ident(), str(state_dir))
    con = _CONNECTIONS.get(key)
    if con is not None:
        return con
    state_dir.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(state_path(state_dir), timeout=120, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA busy_timeout=120000")
    con.execute("PRAGMA wal_autocheckpoint=16384")  # fewer checkpoint fsyncs during a build
    con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if row is not None and row[0] != SCHEMA_VERSION:
        con.close()
        raise StacgitError(
            f"{state_path(state_dir)}: build state of schema {row[0]} (this stacgit uses {SCHEMA_VERSION}); "
            "run `stacgit build --full` once"
        )
    con.executescript(_SCHEMA)
    if row is None:  # a new store: its tables, and the triggers that fill the queues
        with Transaction(con):  # every statement is idempotent; another process may be here too
            for sql in _QUEUES:
                con.execute(sql)
        con.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    _CONNECTIONS[key] = con
    return con


def is_outdated(state_dir: Path) -> bool:
    """True when a state store exists but was written with another schema version."""
    path = state_path(state_dir)
    if not path.exists():
        return False
    con = sqlite3.connect(path, timeout=120)
    try:
        row = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    except sqlite3.DatabaseError:
        return True
    finally:
        con.close()
    return row is None or row[0] != SCHEMA_VERSION


def reset(state_dir: Path) -> None:
    """Forget all build state (the store and its WAL files)."""
    for key in [k for k in _CONNECTIONS if k[0] == os.getpid() and k[2] == str(state_dir)]:
        _CONNECTIONS.pop(key).close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(state_path(state_dir)) + suffix).unlink(missing_ok=True)


class Transaction:
    """``with Transaction(con):`` -> BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def __enter__(self) -> sqlite3.Connection:
        self.con.execute("BEGIN IMMEDIATE")
        return self.con

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.con.execute("COMMIT")
        else:
            self.con.execute("ROLLBACK")


def outputs_under(con: sqlite3.Connection, catalog: str, prefix: str, collection: str | None = None, parquet: bool | None = None) -> sqlite3.Cursor:
    """(path, sha256, size) of the outputs whose path starts with ``prefix`` (ending in ``/``),
    in path order: a range of the (catalog, path) key, not a scan. ``collection``: its only;
    ``parquet``: only the GeoParquet files (True) or all but them (False)."""
    sql = "SELECT path, sha256, size FROM outputs WHERE catalog=? AND path >= ? AND path < ?"
    params: tuple = (catalog, prefix, prefix[:-1] + "0")  # "0" follows "/"
    if collection is not None:
        sql += " AND collection=?"
        params += (collection,)
    if parquet is not None:
        sql += " AND kind " + ("=" if parquet else "IS NOT") + " 'parquet'"
    return con.execute(sql + " ORDER BY path", params)


def item_count(con: sqlite3.Connection, key: tuple[str, str]) -> int:
    """Item files a (catalog, collection) has in ``outputs`` (an index count): what the work
    queues are checked against."""
    return con.execute("SELECT COUNT(*) FROM outputs WHERE catalog=? AND collection=? AND item_id IS NOT NULL", key).fetchone()[0]


def drop_collection(con: sqlite3.Connection, catalog: str, collection: str) -> None:
    with Transaction(con):
        for table in COLLECTION_TABLES:
            con.execute(f"DELETE FROM {table} WHERE catalog=? AND collection=?", (catalog, collection))


def known_collections(con: sqlite3.Connection, catalog: str) -> set[str]:
    """Collections of a catalog the build state has outputs for."""
    return {r[0] for r in con.execute("SELECT DISTINCT collection FROM outputs WHERE catalog=? AND collection != ''", (catalog,))}


def drop_catalog(con: sqlite3.Connection, catalog: str) -> None:
    with Transaction(con):
        for table in COLLECTION_TABLES + ("schema_sets", "unvalidated"):
            con.execute(f"DELETE FROM {table} WHERE catalog=?", (catalog,))


def item_signatures(con: sqlite3.Connection, key: tuple[str, str]) -> list[tuple[dict, str]]:
    """The distinct field-type signatures of a collection's records, each with the first item
    id (in id order) that has it, in digest order (read from the ``records_sigs`` index)."""
    rows = con.execute(
        "SELECT s.doc, r.first FROM (SELECT sig, MIN(item_id) AS first FROM records WHERE catalog=? AND collection=? "
        "AND sig IS NOT NULL GROUP BY sig) r JOIN signatures s ON s.digest = r.sig ORDER BY r.sig",
        key,
    )
    return [(json.loads(doc), first) for doc, first in rows]
