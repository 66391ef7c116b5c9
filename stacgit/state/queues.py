"""The work queues (``item_queue``, ``export_queue``, ``unvalidated``), filled by triggers on the
tables they follow and emptied by the step that consumes them. Each consumer checks its queue
against counts of those tables and compares everything when they disagree, so a lost entry
costs time, never correctness: ``enqueue`` and ``forget_*`` let tests show that."""

from __future__ import annotations

import sqlite3

QUEUES = ("item_queue", "export_queue", "unvalidated")


def queued(con: sqlite3.Connection, queue: str, catalog: str | None = None) -> int:
    """How many entries ``queue`` holds (of one catalog)."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    if catalog is None:
        return con.execute(f"SELECT COUNT(*) FROM {queue}").fetchone()[0]
    return con.execute(f"SELECT COUNT(*) FROM {queue} WHERE catalog=?", (catalog,)).fetchone()[0]


def enqueue_export(con: sqlite3.Connection, catalog: str, collection: str, item_id: str) -> None:
    con.execute("INSERT OR IGNORE INTO export_queue VALUES (?, ?, ?)", (catalog, collection, item_id))


def requeue_validation(con: sqlite3.Connection) -> None:
    """Forget every verdict and queue every STAC document for validation again."""
    from stacgit.state.store import STAC_KINDS, Transaction

    with Transaction(con):
        con.execute("DELETE FROM verdicts")
        con.execute(f"INSERT OR IGNORE INTO unvalidated SELECT catalog, path FROM outputs WHERE kind IN {STAC_KINDS}")
