"""Which items of a collection changed since its last export (staged by ``state.exports``), and
a partition's members in order: the changed ones merged with the rows the last export wrote."""

from __future__ import annotations

import bisect
import heapq
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NamedTuple

import orjson

from stacgit.state import exports as ex
from stacgit.fileio import prefetch
from stacgit.exports.geoparquet import Prepared, convert_rows, partition_key
from stacgit.exports import partition
from stacgit.exports.partition import Member, item_start, readable
from stacgit.exports.pgstac import pgstac_line

if TYPE_CHECKING:
    import pyarrow as pa


SPILL = 10_000
"""Changed items held before they go to the temporary table."""


class Converted:
    """A partition's changed items, read and converted before its piece is rewritten in place,
    in the partition's order: their pgstac lines, and their rows (with GeoParquet); ``used``:
    how many the export has taken."""

    def __init__(self, lines: list[bytes], table: pa.Table | None):
        self.lines = lines
        self.table = table
        self.used = 0


def convert_changed(con, out_dir: Path, part: str, schema: pa.Schema | None, prepared: Prepared | None) -> Converted:
    """Read and convert a partition's changed items first: ``Drift`` or ``BuildError`` comes
    now, while its pgstac piece is still the old one, rather than half way through rewriting it
    in place. Their lines and rows are then held, for at most ``IN_PLACE_LIMIT`` bytes of items."""
    import pyarrow as pa

    paths = [r[2] for r in ex.fresh_rows(con, part)]
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


def member_rows(con, key: tuple[str, str], part: str, replaced: set[str]) -> Iterator[Member]:
    """A partition's items, sorted by datetime then id, each to be read and converted: the
    changed ones, and those unchanged since the last export (not ``replaced``: changed or gone
    from the build)."""
    fresh = (Member(*r) for r in ex.fresh_rows(con, part))
    old = (Member(sort, item_id, path, sha, None, False) for sort, item_id, path, sha in ex.old_rows(con, key, part) if item_id not in replaced)
    return heapq.merge(fresh, old, key=lambda m: (m.sort, m.item_id))  # str order is UTF-8 byte order, as SQLite sorts


def partition_segments(con, part: str, old_keys: list[tuple[str, str]], replaced: set[str]) -> Iterator[Member | range]:
    """A partition's rows in order, for an export that reuses the old files: runs of old rows
    unchanged since the last export (ranges of row numbers) and the changed items (members to
    be read and converted). Only the few changed and gone items are looked at one by one, not
    the partition's unchanged rows."""
    fresh = [Member(*r) for r in ex.fresh_rows(con, part)]
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


class Changes(NamedTuple):
    dirty: set[str]  # partitions to write again (or drop)
    parts: set[str]  # partitions that hold the changed items now
    changed: int
    added: int
    gone: dict[str, int]  # partition -> items gone from the build


def find_changes(con, key: tuple[str, str], out_dir: Path, partition: str, queued: bool, every: bool = False) -> Changes:
    """Stage the items added or changed since the last export (of the queued ones or of all;
    ``every``: all items, changed or not, as when the configuration changed) with their
    partition, and the items gone from the build. Changed items stream to the staging table,
    not to memory."""
    ex.start_staging(con)
    dirty: set[str] = set()
    parts: set[str] = set()
    changed = added = 0
    pending: list[tuple] = []
    for item_id, path, sha, patched, start, e_sha, e_part, e_path in ex.current_items(con, key, queued, every):
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
            ex.stage_new(con, pending)
    ex.stage_new(con, pending)
    gone = ex.stage_gone(con, key, queued)
    return Changes(dirty, parts, changed, added, gone)


def counts_agree(con, key: tuple[str, str], found: Changes) -> bool:
    """Whether the exports, with the queued changes, would hold as many items as the build."""
    return ex.exports_agree(con, key, found.added, sum(found.gone.values()))
