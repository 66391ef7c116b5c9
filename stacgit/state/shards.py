"""What each source shard contributed: its row in ``shards``, its ``records`` (one per mapped
item, pointing into the shard's body cache file), its ``failures`` and the field-type
``signatures`` of its items. The shard stage computes these without the store
(``engine.shard.map_shard``); these operations read what it needs and save what it found."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from stacgit.state.reports import save_report
from stacgit.state.store import Transaction

RECORD_COLUMNS = ("catalog", "collection", "shard", "item_id", "record_digest", "body_digest", "start", "end",
                  "w", "s", "e", "n", "sig", "cache_off", "cache_len")
"""The order of a record row: what ``ShardResult.rows`` hold."""

Where = tuple[str, str, str]  # (catalog, collection, shard)


@dataclass(frozen=True)
class ShardPrior:
    """A shard's state at its last build."""

    config_digest: str
    cache_file: str | None
    result_digest: str
    records: dict[str, tuple[str, int]]  # record digest -> (item id, length of its cached body)
    failures: list[tuple]  # (catalog, collection, shard, location, field, reason, item id), in order


def read_prior(con: sqlite3.Connection, where: Where) -> ShardPrior | None:
    row = con.execute("SELECT config_digest, cache_file, result_digest FROM shards WHERE catalog=? AND collection=? AND shard=?", where).fetchone()
    if row is None:
        return None
    records = {rdig: (item_id, ln) for rdig, item_id, ln in con.execute(
        "SELECT record_digest, item_id, cache_len FROM records WHERE catalog=? AND collection=? AND shard=?", where)}
    failures = con.execute(
        "SELECT catalog, collection, shard, loc, field, reason, item_id FROM failures WHERE catalog=? AND collection=? AND shard=? ORDER BY rowid",
        where,
    ).fetchall()
    return ShardPrior(row[0], row[1], row[2], records, failures)


def read_records(con: sqlite3.Connection, where: Where) -> list[tuple]:
    """Every record row of a shard (``RECORD_COLUMNS``), to rewrite its cache file."""
    return con.execute("SELECT * FROM records WHERE catalog=? AND collection=? AND shard=?", where).fetchall()


def record_digest(con: sqlite3.Connection, where: Where, item_id: str) -> str | None:
    row = con.execute("SELECT record_digest FROM records WHERE catalog=? AND collection=? AND shard=? AND item_id=?", (*where, item_id)).fetchone()
    return row[0] if row else None


def save(
    con: sqlite3.Connection, where: Where, *, replace_all: bool, dropped: list[str], rows: list[tuple], failures: list[tuple],
    signatures: dict[str, str], shard_row: tuple, run_id: str, report: dict,
) -> None:
    """Commit what a shard's build found, in one transaction: its records (all of them, or the
    new ones and ``dropped`` ids), failures, signatures and shard row, and its report."""
    with Transaction(con):
        if replace_all:
            con.execute("DELETE FROM records WHERE catalog=? AND collection=? AND shard=?", where)
        else:
            con.executemany("DELETE FROM records WHERE catalog=? AND collection=? AND shard=? AND item_id=?", [(*where, i) for i in dropped])
        con.execute("DELETE FROM failures WHERE catalog=? AND collection=? AND shard=?", where)
        con.executemany(f"INSERT INTO records VALUES ({','.join('?' * len(RECORD_COLUMNS))})", rows)
        con.executemany("INSERT INTO failures VALUES (?,?,?,?,?,?,?)", failures)
        con.executemany("INSERT OR IGNORE INTO signatures VALUES (?,?)", signatures.items())
        con.execute("INSERT OR REPLACE INTO shards VALUES (?,?,?,?,?,?,?,?,?,?,?)", (*where, *shard_row))
        save_report(con, run_id, f"build:{where[0]}/{where[1]}/{where[2]}", report)


def cache_live_bytes(con: sqlite3.Connection) -> dict[str, int]:
    """Body cache file -> bytes of the bodies its records still point at."""
    return dict(con.execute("SELECT s.cache_file, SUM(r.cache_len) FROM records r JOIN shards s USING (catalog, collection, shard) GROUP BY s.cache_file"))


def shards_of_item(con: sqlite3.Connection, item_id: str) -> list[tuple[str, str, str]]:
    """(catalog, collection, shard) of the records with this item id."""
    return con.execute("SELECT catalog, collection, shard FROM records WHERE item_id=?", (item_id,)).fetchall()


def cache_files(con: sqlite3.Connection, catalog: str, collection: str) -> dict[str, str]:
    """Shard -> its body cache file."""
    return dict(con.execute("SELECT shard, cache_file FROM shards WHERE catalog=? AND collection=?", (catalog, collection)).fetchall())


def cached_bodies(con: sqlite3.Connection, catalog: str, collection: str) -> dict[str, tuple[str, int, int]]:
    """Item id -> (shard, offset, length) of its cached body, by id."""
    rows = con.execute("SELECT item_id, shard, cache_off, cache_len FROM records WHERE catalog=? AND collection=? ORDER BY item_id", (catalog, collection))
    return {r[0]: r[1:] for r in rows}
