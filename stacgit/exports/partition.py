"""Writing one partition: its parquet file and pgstac piece in one pass, ``BATCH`` rows at a
time, taking the rows of unchanged items from the previous files."""

from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import orjson

from stacgit.errors import BuildError
from stacgit.fileio import prefetch
from stacgit.mapping import item_time_range
from stacgit.exports.geoparquet import OldPartition, Prepared, convert_rows
from stacgit.exports.pgstac import Piece, pgstac_line

if TYPE_CHECKING:
    import pyarrow as pa

    from stacgit.exports.changes import Converted


BATCH = 2000
"""Items per Arrow batch (and parquet row group)."""


@dataclass
class Member:
    sort: str
    item_id: str
    path: str
    sha: str
    old_row: int | None = None  # unchanged since the last export: its row in the old parquet file and line in the old piece
    pending: bool = True  # changed since the last export: its row in ``exported`` is written again


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Parsed items hold no reference cycles: the cyclic collector would only rescan the
    batch in memory again and again (15-20% of an export's time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def item_start(path: Path) -> str:
    return item_time_range(orjson.loads(path.read_bytes()))[0]


def write_partition(
    out_dir: Path,
    segments: Iterable[Member | range],
    schema: pa.Schema | None,
    prepared: Prepared | None,
    collection_doc: dict,
    parquet_tmp: Path | None,
    piece: Piece,
    on_batch: Callable[[list[tuple[Member, int, int]]], None],
    old: OldPartition | None = None,
    changed: Converted | None = None,
) -> tuple[str | None, int]:
    """Write one partition's parquet (to ``parquet_tmp``, when there is one) and pgstac piece,
    ``BATCH`` rows at a time; ``on_batch`` gets (member, offset, length) of the line of each
    ``pending`` member in the piece. ``segments`` are the partition's rows in order: runs of
    rows of ``old`` and of the piece's old lines (ranges), members with an ``old_row`` (from
    there too: the bytes are the same as converting their unchanged files again), and members
    read and converted, or taken in order from ``changed`` (converted before). Returns the
    piece's sha256 (when hashed: it is published) and size."""
    import pyarrow as pa
    from stac_geoparquet.arrow import to_parquet

    base = str(out_dir)
    target: pa.Schema | None = None  # the converted batches' schema, once known

    def fresh_path(s: Member | range) -> str | None:
        return None if isinstance(s, range) or changed is not None or (old is not None and s.old_row is not None) else os.path.join(base, s.path)

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal target
        for chunk in prefetch(_in_batches(segments, BATCH), fresh_path):
            rows, placed = [], []
            runs: list[list] = []  # [from the old file?, first row, count], in the batch's order
            for s, data in chunk:
                at = piece.tell()
                if isinstance(s, range):
                    piece.copy_old(s.start, len(s))
                    _extend(runs, True, s.start, len(s))
                    continue
                if old is not None and s.old_row is not None:
                    piece.copy_old(s.old_row, 1)
                    _extend(runs, True, s.old_row, 1)
                elif changed is not None:
                    piece.add(changed.lines[changed.used])
                    _extend(runs, False, changed.used, 1)
                    changed.used += 1
                else:
                    item = orjson.loads(readable(out_dir, s.path, data))
                    piece.add(pgstac_line(item))
                    if parquet_tmp is not None:
                        _extend(runs, False, len(rows), 1)
                        rows.append(prepared.row(item))  # type: ignore[union-attr]
                if s.pending:
                    placed.append((s, at, piece.tell() - at))
            on_batch(placed)
            if parquet_tmp is None:
                continue
            if changed is not None:
                fresh_table = changed.table
            else:
                fresh = convert_rows(rows, schema, prepared) if rows else None
                if fresh is not None and target is None:
                    target = fresh.schema
                if len(runs) == 1 and not runs[0][0]:
                    yield fresh
                    continue
                fresh_table = pa.Table.from_batches([fresh]) if fresh is not None else None
            if target is None:
                target = fresh_table.schema if fresh_table is not None else old.schema()  # type: ignore[union-attr]
            tables = []
            for from_old, first, count in runs:
                tables += old.rows_from(first, count, target) if from_old else [fresh_table.slice(first, count)]  # type: ignore[union-attr]
            yield pa.concat_tables(tables).combine_chunks().to_batches()[0]

    with _no_gc():
        if parquet_tmp is None:
            for _ in batches():
                pass
        else:
            gen = batches()
            first = next(gen)
            reader = pa.RecordBatchReader.from_batches(first.schema, _chain(first, gen))
            # no dictionary pages: ids, hrefs and footprints are unique, and zstd packs the repeated
            # strings as well (7% smaller files and 20% faster writes on HLS-like items)
            to_parquet(reader, parquet_tmp, collections={collection_doc["id"]: collection_doc}, compression="zstd", use_dictionary=False, write_statistics=True)
    return piece.finish()


def _in_batches(segments: Iterable[Member | range], size: int) -> Iterator[list[Member | range]]:
    """``segments`` regrouped in lists of ``size`` rows (the last may have fewer): a member is a
    row, a range of old rows is split where a batch ends. The batches are the parquet row
    groups, so they do not depend on which rows came from the old file."""
    batch: list[Member | range] = []
    n = 0
    for s in segments:
        while isinstance(s, range) and n + len(s) > size:
            cut = size - n
            batch.append(s[:cut])
            yield batch
            batch, n = [], 0
            s = s[cut:]
        batch.append(s)
        n += len(s) if isinstance(s, range) else 1
        if n == size:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch


def _extend(runs: list[list], from_old: bool, row: int, count: int) -> None:
    """Rows ``row`` .. ``row + count - 1`` of the old file or of the converted rows go next:
    they extend the last run when they follow on from it."""
    last = runs[-1] if runs else None
    if last is not None and last[0] is from_old and last[1] + last[2] == row:
        last[2] += count
    else:
        runs.append([from_old, row, count])


def _chain(first, rest):
    yield first
    yield from rest


def readable(out_dir: Path, path: str, data: bytes | OSError | None) -> bytes:
    if isinstance(data, OSError):
        raise BuildError(f"{out_dir / path}: cannot read the built item ({data.strerror}); run `stacgit build` again")
    return data  # type: ignore[return-value]
