"""Per-run summaries of each build unit (``reports``): what ``stacgit build --json`` adds up.
A unit saves its report in the transaction that commits its work, so a report exists exactly
when the work it describes does."""

from __future__ import annotations

import sqlite3

import orjson


def save_report(con: sqlite3.Connection, run_id: str, unit: str, report: dict) -> None:
    if run_id:
        con.execute("INSERT OR REPLACE INTO reports VALUES (?, ?, ?)", (run_id, unit, orjson.dumps(report).decode()))


def read_reports(con: sqlite3.Connection) -> dict[str, dict]:
    """Unit -> report, of every run the store remembers."""
    return {unit: orjson.loads(data) for unit, data in con.execute("SELECT unit, data FROM reports")}


def run_reports(con: sqlite3.Connection, run_id: str, kinds: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    """(unit, report) of one run, by unit; only units starting with ``kinds`` (e.g. ``"catalog:"``) when given."""
    rows = con.execute("SELECT unit, data FROM reports WHERE run_id=? ORDER BY unit", (run_id,))
    return [(unit, orjson.loads(data)) for unit, data in rows if not kinds or unit.startswith(kinds)]


def failed_units(con: sqlite3.Connection, run_id: str) -> set[str]:
    """Units of a run that saved an error instead of a report."""
    return {r[0] for r in con.execute("SELECT unit FROM reports WHERE run_id=? AND data LIKE '{\"error\"%'", (run_id,))}


def unit_ran(con: sqlite3.Connection, run_id: str, unit: str) -> bool:
    return con.execute("SELECT 1 FROM reports WHERE run_id=? AND unit=?", (run_id, unit)).fetchone() is not None


def failure_count(con: sqlite3.Connection) -> int:
    """Records that failed to map, and patch operations that failed, in the whole build."""
    return con.execute("SELECT COUNT(*) FROM failures").fetchone()[0] + con.execute("SELECT COUNT(*) FROM patch_failures").fetchone()[0]


def first_failures(con: sqlite3.Connection, limit: int) -> list[tuple]:
    """(catalog, collection, shard, location, field, reason) of the first failed records."""
    return con.execute("SELECT catalog, collection, shard, loc, field, reason FROM failures ORDER BY catalog, collection, shard, rowid LIMIT ?", (limit,)).fetchall()


def first_patch_failures(con: sqlite3.Connection, limit: int) -> list[tuple]:
    """(catalog, collection, patch key, op index, item id, reason) of the first failed patch operations."""
    return con.execute(
        "SELECT catalog, collection, patch_key, op_index, item_id, reason FROM patch_failures ORDER BY catalog, collection, patch_key, item_id LIMIT ?",
        (limit,),
    ).fetchall()


def patch_stats(con: sqlite3.Connection) -> list[tuple]:
    """(catalog, collection, patch key, matched, patched, deleted, failed, unmatched ids) rows."""
    return [(*r[:7], orjson.loads(r[7])) for r in con.execute("SELECT * FROM patch_stats")]


def item_counts(con: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """(catalog, collection) -> items built."""
    return {(c, coll): n for c, coll, n in con.execute("SELECT catalog, collection, COUNT(*) FROM outputs WHERE item_id IS NOT NULL GROUP BY 1, 2")}


def verdict_totals(con: sqlite3.Connection) -> dict[str, int]:
    """Status -> documents, over every stored verdict (read in index order)."""
    totals: dict[str, int] = {}
    for _, status, n in con.execute("SELECT catalog, status, COUNT(*) FROM verdicts GROUP BY catalog, status"):
        totals[status] = totals.get(status, 0) + n
    return totals


def catalogs_not_valid(con: sqlite3.Connection) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT catalog FROM verdicts WHERE status != 'valid' ORDER BY catalog")]


def saved_verdict_summary(con: sqlite3.Connection) -> tuple[str | None, dict | None]:
    """The verdicts' change count, and the summary saved at that count (None when it moved)."""
    count = con.execute("SELECT value FROM meta WHERE key='verdicts_changed'").fetchone()
    saved = con.execute("SELECT value FROM meta WHERE key='verdicts_summary'").fetchone()
    if count is None or saved is None:
        return (count[0] if count else None), None
    summary = orjson.loads(saved[0])
    return count[0], (summary if summary.pop("at") == count[0] else None)


def save_verdict_summary(con: sqlite3.Connection, count: str, summary: dict) -> None:
    from stacgit.state.store import Transaction

    with Transaction(con):
        con.execute("INSERT OR REPLACE INTO meta VALUES ('verdicts_summary', ?)", (orjson.dumps({**summary, "at": count}).decode(),))


def save_error(con: sqlite3.Connection, run_id: str, unit: str, message: str) -> None:
    """A unit that failed: its one-line error stands for its report."""
    con.execute("INSERT OR REPLACE INTO reports VALUES (?, ?, ?)", (run_id, unit, orjson.dumps({"error": message}).decode()))


def clear(con: sqlite3.Connection) -> None:
    """Forget the reports of earlier runs (before a run starts)."""
    con.execute("DELETE FROM reports")
