"""Which items of a collection changed since its last export, worked out in SQLite (temporary
tables; members of a partition read in index order), and the rows that record what the export
wrote."""

from __future__ import annotations

import bisect
import heapq
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NamedTuple

import orjson

from stacgit import state as st
from stacgit.fileio import prefetch
from stacgit.project import CollectionSpec
from stacgit.exports.geoparquet import Prepared, convert_rows, partition_key
from stacgit.exports import partition
from stacgit.exports.partition import Member, item_start, readable
from stacgit.exports.pgstac import pgstac_line, pgstac_prefix

if TYPE_CHECKING:
    import pyarrow as pa


SPILL = 10_000
"""Changed items held before they go to the temporary table."""


def collection_input(con, coll: CollectionSpec) -> str | None:
    row = con.execute("SELECT input_digest FROM aggregates WHERE catalog=? AND collection=?", (coll.catalog_id, coll.id)).fetchone()
    return row[0] if row else None


def read_known_parts(con, coll: CollectionSpec) -> dict[str, tuple]:
    """Partition -> (sha256, size) of its parquet file, as the last export wrote it."""
    rows = con.execute("SELECT part, sha256, size FROM export_parts WHERE catalog=? AND collection=?", (coll.catalog_id, coll.id))
    return {r[0]: r[1:] for r in rows}


def read_piece_sizes(con, coll: CollectionSpec) -> dict[str, int]:
    """Published pgstac piece -> size, as the last export wrote it."""
    return {path: size for path, _, size in st.outputs_under(con, coll.catalog_id, pgstac_prefix(coll))}


def piece_growth(con, catalog: str, part: str) -> int:
    """At most how many bytes a partition's changed items add to its pgstac piece: the sizes of
    their item files (a pgstac line is the same item, compact and without structural links)."""
    sql = "SELECT coalesce(sum(o.size), 0) FROM temp.ex_new n JOIN outputs o ON o.catalog=? AND o.path=n.path WHERE n.part=?"
    return con.execute(sql, (catalog, part)).fetchone()[0]


class Converted:
    """A partition's changed items, read and converted before its piece is rewritten in place,
    in the partition's order (``_FRESH``): their pgstac lines, and their rows (with GeoParquet);
    ``used``: how many the export has taken."""

    def __init__(self, lines: list[bytes], table: pa.Table | None):
        self.lines = lines
        self.table = table
        self.used = 0


def convert_changed(con, out_dir: Path, part: str, schema: pa.Schema | None, prepared: Prepared | None) -> Converted:
    """Read and convert a partition's changed items first: ``Drift`` or ``BuildError`` comes
    now, while its pgstac piece is still the old one, rather than half way through rewriting it
    in place. Their lines and rows are then held, for at most ``IN_PLACE_LIMIT`` bytes of items."""
    import pyarrow as pa

    paths = [r[2] for r in con.execute(_FRESH, (part,))]
    base = str(out_dir)
    lines: list[bytes] = []
    converted = []
    for chunk in prefetch([paths[i : i + partition.BATCH] for i in range(0, len(paths), partition.BATCH)], lambda p: os.path.join(base, p)):
        rows = []
        for path, data in chunk:
            item = orjson.loads(readable(out_dir, path, data))
            lines.append(pgstac_line(item))
            if prepared is not None:
                rows.append(prepared.row(item))
        if rows:
            converted.append(convert_rows(rows, schema, prepared))  # type: ignore[arg-type]
    return Converted(lines, pa.Table.from_batches(converted) if converted else None)


_TEMP_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS ex_new (item_id TEXT PRIMARY KEY, sha256 TEXT, part TEXT, sort TEXT, path TEXT);
CREATE INDEX IF NOT EXISTS temp.ex_new_by_part ON ex_new (part);
CREATE TEMP TABLE IF NOT EXISTS ex_rows (item_id TEXT, sha256 TEXT, part TEXT, sort TEXT, path TEXT, off INTEGER, len INTEGER);
CREATE TEMP TABLE IF NOT EXISTS ex_gone (item_id TEXT PRIMARY KEY, part TEXT);
"""


_CURRENT = """SELECT o.item_id, o.path, o.sha256, o.patch_digest,
       (SELECT r.start FROM records r WHERE r.catalog=o.catalog AND r.collection=o.collection
          AND r.item_id=o.item_id AND r.body_digest=o.body_digest LIMIT 1),
       e.sha256, e.part, e.path
  FROM {source} outputs o {on} LEFT JOIN exported e ON e.catalog=o.catalog AND e.collection=o.collection AND e.item_id=o.item_id
 WHERE o.catalog=? AND o.collection=? AND o.kind='item'"""


_GONE = """SELECT e.item_id, e.part FROM {source} exported e {on} WHERE e.catalog=? AND e.collection=? AND NOT EXISTS (SELECT 1 FROM outputs o
    WHERE o.catalog=e.catalog AND o.collection=e.collection AND o.item_id=e.item_id AND o.kind='item')"""


_FRESH = "SELECT sort, item_id, path, sha256 FROM temp.ex_new WHERE part=? ORDER BY sort, item_id"


_OLD_ROWS = """FROM exported e INDEXED BY exported_in_order
 WHERE e.catalog=? AND e.collection=? AND e.part=? ORDER BY e.sort, e.item_id"""
"""A partition's rows as the last export wrote them, in their order: row numbers of one query
are row numbers of the other."""


_OLD = "SELECT e.sort, e.item_id, e.path, e.sha256 " + _OLD_ROWS


_OLD_KEYS = "SELECT e.sort, e.item_id " + _OLD_ROWS


def member_rows(con, key: tuple[str, str], part: str, replaced: set[str]) -> Iterator[Member]:
    """A partition's items, sorted by datetime then id, each to be read and converted: the
    changed ones, and those unchanged since the last export (not ``replaced``: changed or gone
    from the build)."""
    fresh = (Member(*r) for r in con.execute(_FRESH, (part,)))
    old = (Member(sort, item_id, path, sha, None, False) for sort, item_id, path, sha in con.execute(_OLD, (*key, part)) if item_id not in replaced)
    return heapq.merge(fresh, old, key=lambda m: (m.sort, m.item_id))  # str order is UTF-8 byte order, as SQLite sorts


def read_old_keys(con, key: tuple[str, str], part: str) -> list[tuple[str, str]]:
    """(sort, item id) of the partition's rows as the last export wrote them, in order."""
    return con.execute(_OLD_KEYS, (*key, part)).fetchall()


def partition_segments(con, key: tuple[str, str], part: str, old_keys: list[tuple[str, str]], replaced: set[str]) -> Iterator[Member | range]:
    """A partition's rows in order, for an export that reuses the old files: runs of old rows
    unchanged since the last export (ranges of row numbers) and the changed items (members to
    be read and converted). Only the few changed and gone items are looked at one by one, not
    the partition's unchanged rows."""
    fresh = [Member(*r) for r in con.execute(_FRESH, (part,))]
    places = [bisect.bisect_left(old_keys, (m.sort, m.item_id)) for m in fresh]  # the old row each goes before
    marked = [i for i, k in enumerate(old_keys) if k[1] in replaced]
    at = f = 0  # old rows before ``at`` are placed, and fresh members before ``f``
    for i in [*marked, len(old_keys)]:
        while f < len(fresh) and places[f] <= i:
            if places[f] > at:
                yield range(at, places[f])
                at = places[f]
            yield fresh[f]
            f += 1
        if i > at:
            yield range(at, i)
        if i == len(old_keys):
            return
        at = i + 1


def insert_rows(con, sql: str, rows: list[tuple]) -> None:
    """Rows into a temporary table, in one transaction of the temp database; empties ``rows``."""
    if rows:
        con.execute("BEGIN")
        con.executemany(sql, rows)
        con.execute("COMMIT")
        rows.clear()


class Changes(NamedTuple):
    dirty: set[str]  # partitions to write again (or drop)
    parts: set[str]  # partitions that hold the changed items now
    changed: int
    added: int
    gone: dict[str, int]  # partition -> items gone from the build


def find_changes(con, key: tuple[str, str], out_dir: Path, partition: str, queued: bool, every: bool = False) -> Changes:
    """Fill ``temp.ex_new`` (items added or changed since the last export, of the queued ones or
    of all; ``every``: all items, changed or not, as when the configuration changed) with their
    partition, and ``temp.ex_gone`` (items gone from the build). Rows stream: changed items go
    to the temporary table, not to memory, and unchanged ones are left to SQLite."""
    con.executescript(_TEMP_TABLES)
    for table in ("ex_new", "ex_rows", "ex_gone"):
        con.execute(f"DELETE FROM temp.{table}")
    query = _CURRENT.format_map(st.only_queued("export_queue", "o") if queued else st.EVERY_ITEM)
    if not every:
        query += " AND (e.sha256 IS NOT o.sha256 OR e.path IS NOT o.path)"
    dirty: set[str] = set()
    parts: set[str] = set()
    changed = added = 0
    pending: list[tuple] = []
    for item_id, path, sha, patched, start, e_sha, e_part, e_path in con.execute(query, key):
        changed += 1
        added += e_sha is None
        sort = start if (start and patched is None) else item_start(out_dir / path)
        part = partition_key(sort, partition)
        dirty.add(part)
        parts.add(part)
        if e_part is not None:
            dirty.add(e_part)
        pending.append((item_id, sha, part, sort, path))
        if len(pending) >= SPILL:
            insert_rows(con, "INSERT INTO temp.ex_new VALUES (?,?,?,?,?)", pending)
    insert_rows(con, "INSERT INTO temp.ex_new VALUES (?,?,?,?,?)", pending)
    con.execute("BEGIN")
    con.execute("INSERT INTO temp.ex_gone " + _GONE.format_map(st.only_queued("export_queue", "e") if queued else st.EVERY_ITEM), key)
    con.execute("COMMIT")
    gone = dict(con.execute("SELECT part, COUNT(*) FROM temp.ex_gone GROUP BY part").fetchall())
    return Changes(dirty, parts, changed, added, gone)


def counts_agree(con, key: tuple[str, str], found: Changes) -> bool:
    """Whether the exports, with the queued changes, would hold as many items as the build: a
    check (two index counts) that the queue has not missed an item added or removed."""
    built = st.item_count(con, key)
    exported = con.execute("SELECT COUNT(*) FROM exported WHERE catalog=? AND collection=?", key).fetchone()[0]
    return built == exported + found.added - sum(found.gone.values())
