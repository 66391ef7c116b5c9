"""Verdicts: the validation result of every built STAC document at the sha256 it was validated
at, with the schema set (core + extensions + custom) it was checked against, and the queue of
documents waiting for one (``unvalidated``). ``stacgit.verdicts`` validates; this stores."""

from __future__ import annotations

import sqlite3
from typing import Iterator

import orjson

from stacgit.state.store import STAC_KINDS, Transaction


def schema_sets(con: sqlite3.Connection, catalog: str) -> list[tuple[str, list[str], str]]:
    """(set id, schema URLs, fingerprint when its documents were validated), by set id."""
    rows = con.execute("SELECT set_id, urls, fingerprint FROM schema_sets WHERE catalog=? ORDER BY set_id", (catalog,)).fetchall()
    return [(sid, orjson.loads(urls), fp) for sid, urls, fp in rows]


def revalidate_sets(con: sqlite3.Connection, catalog: str, set_ids: list[str]) -> None:
    """Queue the documents of these schema sets again and forget their verdicts and sets."""
    with Transaction(con):
        for sid in set_ids:
            con.execute("INSERT OR IGNORE INTO unvalidated SELECT catalog, path FROM verdicts WHERE catalog=? AND set_id=?", (catalog, sid))
            con.execute("DELETE FROM verdicts WHERE catalog=? AND set_id=?", (catalog, sid))
            con.execute("DELETE FROM schema_sets WHERE catalog=? AND set_id=?", (catalog, sid))


def status_counts(con: sqlite3.Connection, catalog: str) -> dict[str, int]:
    return dict(con.execute("SELECT status, COUNT(*) FROM verdicts WHERE catalog=? GROUP BY status", (catalog,)).fetchall())


def _within(lo: str, hi: str | None) -> tuple[str, tuple]:
    """The condition on ``u.path`` for a folder's paths (between "<folder>/" and "<folder>0")."""
    return ("u.path > ?" + (" AND u.path < ?" if hi is not None else "")), ((lo, hi) if hi is not None else (lo,))


def drop_gone(con: sqlite3.Connection, catalog: str, lo: str, hi: str | None) -> None:
    """Forget the verdicts of queued documents that are no longer outputs."""
    within, bounds = _within(lo, hi)
    with Transaction(con):
        con.execute(
            "DELETE FROM verdicts WHERE catalog=? AND path IN (SELECT u.path FROM unvalidated u WHERE u.catalog=? AND " + within + " AND NOT EXISTS "
            "(SELECT 1 FROM outputs o WHERE o.catalog=u.catalog AND o.path=u.path AND o.kind IN " + STAC_KINDS + "))",
            (catalog, catalog, *bounds),
        )


def known_sets(con: sqlite3.Connection, catalog: str) -> set[str]:
    return {r[0] for r in con.execute("SELECT set_id FROM schema_sets WHERE catalog=?", (catalog,))}


def queued_page(con: sqlite3.Connection, catalog: str, after: str, hi: str | None, limit: int) -> list[tuple]:
    """(path, collection, item id, sha256) of the next queued documents after ``after`` (and
    below ``hi``) with no verdict at their sha256, in path order."""
    within, bounds = _within(after, hi)
    return con.execute(
        """SELECT o.path, o.collection, o.item_id, o.sha256 FROM unvalidated u
           JOIN outputs o ON o.catalog = u.catalog AND o.path = u.path
           LEFT JOIN verdicts v ON v.catalog = o.catalog AND v.path = o.path AND v.sha256 = o.sha256
           WHERE u.catalog = ? AND o.kind IN """ + STAC_KINDS + """ AND v.path IS NULL AND """ + within + """
           ORDER BY u.path LIMIT ?""",
        (catalog, *bounds, limit),
    ).fetchall()


def save(con: sqlite3.Connection, rows: list[tuple], new_sets: list[tuple]) -> None:
    """Verdict rows (catalog, path, collection, item id, sha256, set id, status, detail) and new
    schema sets (catalog, set id, URLs JSON, fingerprint; a known set keeps its fingerprint)."""
    with Transaction(con):
        con.executemany("INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?,?)", rows)
        con.executemany("INSERT OR IGNORE INTO schema_sets VALUES (?,?,?,?)", new_sets)


def dequeue_done(con: sqlite3.Connection, catalog: str, lo: str, hi: str | None) -> None:
    """What has its verdict now, or is gone, leaves the queue."""
    within, bounds = _within(lo, hi)
    with Transaction(con):
        con.execute(
            """DELETE FROM unvalidated WHERE catalog = ? AND path IN (SELECT u.path FROM unvalidated u
                 LEFT JOIN outputs o ON o.catalog = u.catalog AND o.path = u.path AND o.kind IN """ + STAC_KINDS + """
                 LEFT JOIN verdicts v ON v.catalog = o.catalog AND v.path = o.path AND v.sha256 = o.sha256
                WHERE u.catalog = ? AND """ + within + """ AND (o.path IS NULL OR v.path IS NOT NULL))""",
            (catalog, catalog, *bounds),
        )


def iter_verdicts(con: sqlite3.Connection, catalog: str, failing_only: bool) -> Iterator[tuple]:
    """(path, item id, status, detail) of a catalog's verdicts, by path (not valid ones only)."""
    where = " AND status != 'valid'" if failing_only else ""
    rows = con.execute(f"SELECT path, item_id, status, detail FROM verdicts WHERE catalog=?{where} ORDER BY path", (catalog,))
    try:
        yield from rows
    finally:
        rows.close()


def all_verdicts(con: sqlite3.Connection) -> list[tuple]:
    """(path, sha256, schema set, status, detail) of every stored verdict, by path."""
    return con.execute("SELECT path, sha256, set_id, status, detail FROM verdicts ORDER BY path").fetchall()
