"""What the CQL2 patches of a collection last selected: which patch versions were evaluated
(``patch_evals``), the items each matched (``patch_matches``) and the body digest of each item
when they looked at it (``patch_seen``), so that only new or changed items are evaluated again."""

from __future__ import annotations

import sqlite3

from stacgit.state.store import Transaction

Key = tuple[str, str]  # (catalog, collection)


def forget(con: sqlite3.Connection, key: Key) -> None:
    with Transaction(con):
        for table in ("patch_evals", "patch_matches", "patch_seen"):
            con.execute(f"DELETE FROM {table} WHERE catalog=? AND collection=?", key)


def evaluated(con: sqlite3.Connection, key: Key) -> dict[str, str]:
    """Patch key -> the digest of the version last evaluated."""
    return dict(con.execute("SELECT patch_key, digest FROM patch_evals WHERE catalog=? AND collection=?", key).fetchall())


def seen(con: sqlite3.Connection, key: Key) -> dict[str, str]:
    """Item id -> its body digest when the patches last looked at it."""
    return dict(con.execute("SELECT item_id, body_digest FROM patch_seen WHERE catalog=? AND collection=?", key).fetchall())


def matches(con: sqlite3.Connection, key: Key, patch_key: str) -> list[str]:
    return [i for (i,) in con.execute("SELECT item_id FROM patch_matches WHERE catalog=? AND collection=? AND patch_key=?", (*key, patch_key))]


def save(con: sqlite3.Connection, key: Key, evals: list[tuple[str, str]], found: dict[str, set[str]], forget_seen: bool,
         gone: list[str], seen_now: list[tuple[str, str]]) -> None:
    """Record an evaluation: the patch versions, what each matched, and the items looked at
    (all of them forgotten first when ``forget_seen``; ``gone`` ones dropped)."""
    with Transaction(con):
        con.execute("DELETE FROM patch_evals WHERE catalog=? AND collection=?", key)
        con.executemany("INSERT INTO patch_evals VALUES (?,?,?,?)", [(*key, k, d) for k, d in evals])
        con.execute("DELETE FROM patch_matches WHERE catalog=? AND collection=?", key)
        con.executemany("INSERT INTO patch_matches VALUES (?,?,?,?)", [(*key, k, i) for k, ids in found.items() for i in sorted(ids)])
        if forget_seen:
            con.execute("DELETE FROM patch_seen WHERE catalog=? AND collection=?", key)
        con.executemany("DELETE FROM patch_seen WHERE catalog=? AND collection=? AND item_id=?", [(*key, i) for i in gone])
        con.executemany("INSERT OR REPLACE INTO patch_seen VALUES (?,?,?,?)", [(*key, i, d) for i, d in seen_now])
