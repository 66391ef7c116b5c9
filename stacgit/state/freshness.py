"""What the up-to-date checks read: each unit's recorded inputs (shard stats and result
digests, collection and catalog input digests, export settings) and whether a unit left paths
pending. ``stacgit.plan`` compares them with the repository as it is now."""

from __future__ import annotations

import sqlite3


def shard_results(con: sqlite3.Connection, catalog: str, collection: str) -> dict[str, str]:
    """Shard -> the digest of what its last build found."""
    return dict(con.execute("SELECT shard, result_digest FROM shards WHERE catalog=? AND collection=?", (catalog, collection)).fetchall())


def shard_stats(con: sqlite3.Connection, catalog: str, collection: str) -> dict[str, tuple]:
    """Shard -> (size, mtime_ns, file digest, config digest, cache file) at its last build."""
    rows = con.execute("SELECT shard, size, mtime_ns, file_digest, config_digest, cache_file FROM shards WHERE catalog=? AND collection=?", (catalog, collection))
    return {r[0]: r[1:] for r in rows}


def touch_shard(con: sqlite3.Connection, catalog: str, collection: str, shard: str, size: int, mtime_ns: int) -> None:
    """Remember a source file's new stat when its bytes are the same (e.g. after git checkout)."""
    con.execute("UPDATE shards SET size=?, mtime_ns=? WHERE catalog=? AND collection=? AND shard=?", (size, mtime_ns, catalog, collection, shard))


def collection_inputs(con: sqlite3.Connection, catalog: str) -> dict[str, str | None]:
    """Collection -> the input digest of its last good build."""
    return dict(con.execute("SELECT collection, input_digest FROM aggregates WHERE catalog=? AND collection != ''", (catalog,)).fetchall())


def export_inputs(con: sqlite3.Connection, catalog: str) -> dict[str, str]:
    """Collection -> its last export's settings and input digests, as one text."""
    return dict(con.execute("SELECT collection, digest || ':' || coalesce(input_digest, '') FROM export_config WHERE catalog=?", (catalog,)).fetchall())


def collection_aggregate(con: sqlite3.Connection, catalog: str, collection: str) -> tuple[str | None, str | None] | None:
    """(input digest, patches digest) of a collection's last good build, or None."""
    return con.execute("SELECT input_digest, patches FROM aggregates WHERE catalog=? AND collection=?", (catalog, collection)).fetchone()


def catalog_input(con: sqlite3.Connection, catalog: str) -> tuple[str | None] | None:
    """(input digest,) of a catalog's last good build, or None."""
    return con.execute("SELECT input_digest FROM aggregates WHERE catalog=? AND collection=''", (catalog,)).fetchone()


def has_pending(con: sqlite3.Connection, catalog: str, collection: str) -> bool:
    """Did a build of the collection stop with paths half written?"""
    return con.execute("SELECT 1 FROM pending WHERE catalog=? AND collection=? LIMIT 1", (catalog, collection)).fetchone() is not None


def output_sha(con: sqlite3.Connection, catalog: str, path: str) -> str | None:
    row = con.execute("SELECT sha256 FROM outputs WHERE catalog=? AND path=?", (catalog, path)).fetchone()
    return row[0] if row else None
