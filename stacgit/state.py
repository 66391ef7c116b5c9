"""Crash-safe build state under ``.stacgit/state.sqlite3`` (SQLite, WAL).

Tables
  shards      one row per source shard: file stat + digest, config digest, result digest,
              and the mapped-body cache file that holds its items
  records     one row per mapped item of a shard: id, location, digests, time range, bbox,
              offset/length of its body in the shard's cache file
  failures    records that failed to map, per shard
  outputs     every file written under build/<catalog>/: sha256, size, and for items the
              body digest it was rendered from
  pending     paths about to be written/deleted; what a killed build leaves here is undone
              by the next build before it trusts ``outputs``
  aggregates  the input fingerprint of each collection / catalog at its last good build
  reports     per-run, per-unit summaries (for ``stacgit build --json``)

Rule: files are written first, the rows describing them are committed after.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shards (
  catalog TEXT, collection TEXT, shard TEXT,
  size INTEGER, mtime_ns INTEGER, file_digest TEXT, config_digest TEXT,
  result_digest TEXT, cache_file TEXT, n_items INTEGER, n_failed INTEGER,
  PRIMARY KEY (catalog, collection, shard));
CREATE TABLE IF NOT EXISTS records (
  catalog TEXT, collection TEXT, shard TEXT, item_id TEXT, loc TEXT,
  record_digest TEXT, body_digest TEXT, start TEXT, end TEXT,
  w REAL, s REAL, e REAL, n REAL, cache_off INTEGER, cache_len INTEGER,
  PRIMARY KEY (catalog, collection, shard, item_id));
CREATE INDEX IF NOT EXISTS records_by_item ON records (catalog, item_id);
CREATE TABLE IF NOT EXISTS failures (
  catalog TEXT, collection TEXT, shard TEXT, loc TEXT, field TEXT, reason TEXT, item_id TEXT);
CREATE INDEX IF NOT EXISTS failures_by_shard ON failures (catalog, collection, shard);
CREATE TABLE IF NOT EXISTS outputs (
  catalog TEXT, path TEXT, collection TEXT, item_id TEXT, kind TEXT,
  body_digest TEXT, sha256 TEXT, size INTEGER,
  PRIMARY KEY (catalog, path));
CREATE INDEX IF NOT EXISTS outputs_by_collection ON outputs (catalog, collection);
CREATE TABLE IF NOT EXISTS pending (catalog TEXT, collection TEXT, path TEXT);
CREATE TABLE IF NOT EXISTS aggregates (
  catalog TEXT, collection TEXT, input_digest TEXT, PRIMARY KEY (catalog, collection));
CREATE TABLE IF NOT EXISTS reports (run_id TEXT, unit TEXT, data TEXT, PRIMARY KEY (run_id, unit));
"""

_CONNECTIONS: dict[tuple[int, str], sqlite3.Connection] = {}


def state_path(state_dir: Path) -> Path:
    return state_dir / "state.sqlite3"


def connect(state_dir: Path) -> sqlite3.Connection:
    """One connection per process and state directory (never shared across a fork)."""
    key = (os.getpid(), str(state_dir))
    con = _CONNECTIONS.get(key)
    if con is not None:
        return con
    state_dir.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(state_path(state_dir), timeout=120, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA busy_timeout=120000")
    con.executescript(_SCHEMA)
    row = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if row is None:
        con.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    elif row[0] != SCHEMA_VERSION:
        con.close()
        raise RuntimeError(f"{state_path(state_dir)}: state schema {row[0]} is not {SCHEMA_VERSION}; run stacgit build --full")
    _CONNECTIONS[key] = con
    return con


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


def drop_catalog(con: sqlite3.Connection, catalog: str) -> None:
    with Transaction(con):
        for table in ("shards", "records", "failures", "outputs", "pending", "aggregates"):
            con.execute(f"DELETE FROM {table} WHERE catalog=?", (catalog,))
