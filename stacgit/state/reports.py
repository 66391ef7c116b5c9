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
