"""What the build wrote (``outputs``) and what its exports hold (``exported``), as callers
outside the engine read them (verdicts: ``state.verdicts``)."""

from __future__ import annotations

import sqlite3

from stacgit.state.store import STAC_KINDS


def document_paths(con: sqlite3.Connection) -> list[str]:
    """Paths of every STAC document written (items, catalogs, the root), in order."""
    return [r[0] for r in con.execute(f"SELECT path FROM outputs WHERE kind IN {STAC_KINDS} ORDER BY path")]


def item_output(con: sqlite3.Connection, catalog: str, item_id: str) -> str | None:
    """The path of an item's file, or None."""
    row = con.execute("SELECT path FROM outputs WHERE catalog=? AND item_id=? AND kind='item'", (catalog, item_id)).fetchone()
    return row[0] if row else None


def forget_item_output(con: sqlite3.Connection, catalog: str, item_id: str) -> None:
    """Drop an item's output row, as a lost row would be lost."""
    con.execute("DELETE FROM outputs WHERE catalog=? AND item_id=?", (catalog, item_id))


def exported_count(con: sqlite3.Connection, item_id: str) -> int:
    return con.execute("SELECT COUNT(*) FROM exported WHERE item_id=?", (item_id,)).fetchone()[0]


def forget_exported(con: sqlite3.Connection, catalog: str, item_id: str) -> None:
    con.execute("DELETE FROM exported WHERE catalog=? AND item_id=?", (catalog, item_id))


def built_catalogs(con: sqlite3.Connection) -> set[str]:
    """Catalogs the state has built something of."""
    return {r[0] for r in con.execute("SELECT DISTINCT catalog FROM aggregates")}


def schema_urls(con: sqlite3.Connection) -> set[str]:
    """Every schema URL a stored verdict was checked against."""
    import orjson

    return {u for (row,) in con.execute("SELECT urls FROM schema_sets") for u in orjson.loads(row)}


def further_outputs(con: sqlite3.Connection, key: tuple[str, str], built_in: tuple[str, ...]) -> dict[str, str]:
    """Path -> kind of a collection's outputs whose kind is not one of ``built_in``."""
    return dict(con.execute(f"SELECT path, kind FROM outputs WHERE catalog=? AND collection=? AND kind NOT IN {tuple(built_in)}", key).fetchall())
