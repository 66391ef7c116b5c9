"""GeoParquet and pgstac exports of a built collection, partition by partition.

The export task of a collection runs after its items are written. It compares the items'
output digests with the ``exported`` table (the state the exports reflect) and rewrites only
the partitions (year, year-month, or one file) whose items were added, changed or removed:

  build/<catalog>/<collection>/parquet/<partition>.parquet   stac-geoparquet, explicit schema
  build/<catalog>/pgstac/<collection>/<partition>.ndjson     the same items in pgstac form

The pgstac files ("pieces") are partitioned like the parquet files, so a change rewrites (and
publishing uploads) only the partitions it touched, and ``pypgstac load`` takes them one chunk
at a time. With ``pgstac: false`` the pieces are still written, under
``.stacgit/exports/<catalog>/<collection>/``: the export takes unchanged rows from the old
files as they are, and the export of both formats is one pass.

Rows of a partition are sorted by datetime (an item's start: ``start_datetime``, else
``datetime``), then id. Items are read in batches, so memory does not grow with the collection.
The Arrow schema comes from :mod:`stacgit.columns`; an item that does not fit it stops the
export with a "schema drift" error naming the item and field, and the partitions already
written stay as they were.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import bisect
import hashlib
import heapq
import itertools
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple

import orjson

from stacgit.stac import PARQUET, STRUCTURAL_RELS
from stacgit import columns as C
from stacgit import state as st
from stacgit.errors import BuildError
from stacgit.geo import bbox_2d, coords_bbox
from stacgit.fileio import prefetch, pwrite_all, will_need
from stacgit.hashing import digest_obj, sha256_bytes, sha256_file
from stacgit.mapping import item_columns as mapping_columns, item_time_range
from stacgit.plan import Reason, StaleUnit, export_task, extension_uses, get_mapping
from stacgit.project import CollectionSpec, Project

if TYPE_CHECKING:
    import pyarrow as pa

EXPORT_VERSION = "3"
"""Bumped when the bytes of the files change for the same items: every partition is written again."""
BATCH = 2000
"""Items per Arrow batch (and parquet row group)."""
SPILL = 10_000
"""Changed items held before they go to the temporary table."""
_NO_PARTITION = "items"
CHECK_EVERY = 32
"""A reused pgstac line is checked to be its item's in every this many lines."""
READ = 4 << 20
"""Bytes of an old pgstac piece read at a time (and written at a time)."""
IN_PLACE_LIMIT = 64 << 20
"""A piece is rewritten in its own file when its changed items' files add up to at most this
much: the old bytes the new lines push forward are held in memory until they are copied."""


@functools.cache
def _arrow_types() -> tuple[dict, Any]:
    """Column kinds as Arrow types, and the link struct (pyarrow is imported when an export runs:
    a no-op build or `stacgit --help` does not load it)."""
    import pyarrow as pa

    kinds = {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "datetime": pa.string(),  # stac-geoparquet turns the known datetime fields into timestamps
        "list<string>": pa.list_(pa.string()),
        "list<int64>": pa.list_(pa.int64()),
        "list<float64>": pa.list_(pa.float64()),
        "json": pa.string(),
    }
    return kinds, pa.struct([("href", pa.string()), ("rel", pa.string()), ("title", pa.string()), ("type", pa.string())])


_LINK_KEYS = frozenset(("href", "rel", "title", "type"))


def item_columns(project: Project, coll: CollectionSpec) -> C.ItemColumns:
    """The column types of a collection's items (mapping, defaults, extensions, patches,
    overrides; with ``undeclared: infer``, the built items' own field types for the rest)."""
    where = f"{project.catalog(coll.catalog_id).yaml_path}: collections[{coll.index}] ({coll.key})"
    spec = get_mapping(project, coll)
    cols = mapping_columns(spec.data, coll.defaults, where)
    for use in extension_uses(coll):
        C.add_extension_fields(cols, use.ext.columns(use.raw), f"{use.where}: extension {use.ext.name}")
    for patch in project.patches_for(coll):
        C.add_patch_fields(cols, list(patch.ops), patch.where)
    gp = coll.geoparquet or {}
    C.apply_overrides(cols, gp.get("columns") or {}, f"{where}: geoparquet.columns")
    cols.undeclared = gp.get("undeclared", "error")
    if cols.undeclared == "infer":
        C.add_inferred(cols, st.item_signatures(st.connect(project.state_dir), (coll.catalog_id, coll.id)))
    C.finish(cols)
    C.check_names(cols, where)
    return cols


def json_schema(cols: C.ItemColumns) -> pa.Schema:
    """Arrow schema of items as JSON (geometry as WKB), the input of ``StacJsonBatch``."""
    import pyarrow as pa

    kinds, link = _arrow_types()
    props = pa.struct([(n, kinds[t]) for n, t in sorted(cols.properties.items())])
    assets = pa.struct([(k, pa.struct([(f, kinds[t]) for f, t in sorted(fields.items())])) for k, fields in sorted(cols.assets.items())])
    return pa.schema(
        [
            ("type", pa.string()),
            ("stac_version", pa.string()),
            ("stac_extensions", pa.list_(pa.string())),
            ("id", pa.string()),
            ("geometry", pa.binary()),
            ("bbox", pa.list_(pa.float64())),
            ("links", pa.list_(link)),
            ("assets", assets),
            ("collection", pa.string()),
            ("properties", props),
        ]
    )


class Drift(Exception):
    def __init__(self, item_id: str, field: str, reason: str):
        super().__init__(f"item {item_id!r}: {field}: {reason}")
        self.item_id, self.field, self.reason = item_id, field, reason


def _kind_ok(kind: str, v: Any) -> bool:
    if v is None or kind == "json":
        return True
    if kind in ("string", "datetime"):
        return isinstance(v, str)
    if kind == "int64":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "float64":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    inner = kind[5:-1]
    return isinstance(v, list) and all(_kind_ok(inner, x) for x in v)


class Prepared:
    """Turns parsed items into the rows of ``json_schema``, checking them against it."""

    def __init__(self, cols: C.ItemColumns):
        self.cols = cols
        self.json_props = {n for n, t in cols.properties.items() if t == "json"}
        self.json_assets = {k: {f for f, t in fs.items() if t == "json"} for k, fs in cols.assets.items()}

    def _undeclared(self, item_id: str, field: str) -> None:
        if self.cols.undeclared == "error":
            raise Drift(item_id, field, "is not in the collection's GeoParquet schema: give it a type in the mapping, "
                        "or declare it in catalog.yaml geoparquet.columns")

    def row(self, item: dict) -> dict:
        item_id = item.get("id", "?")
        props = item.get("properties") or {}
        declared = self.cols.properties
        extra: dict[str, Any] = {}
        extra_assets: dict[str, Any] = {}
        for k in list(props):
            kind = declared.get(k)
            if kind is None:
                self._undeclared(item_id, f"properties.{k}")
                extra[k] = props.pop(k)
            elif k in self.json_props and props[k] is not None:
                props[k] = orjson.dumps(props[k], option=orjson.OPT_SORT_KEYS).decode()
            elif not _kind_ok(kind, props[k]):
                raise Drift(item_id, f"properties.{k}", f"is {type(props[k]).__name__} {props[k]!r:.40}, the schema says {kind}")
        for key, asset in (item.get("assets") or {}).items():
            fields = self.cols.assets.get(key)
            if fields is None:
                if self.cols.undeclared == "error":
                    raise Drift(item_id, f"assets.{key}", "is not an asset of the collection's GeoParquet schema "
                                "(declare its fields in geoparquet.columns as assets.<key>.<field>)")
                extra_assets[key] = asset
                continue
            json_fields = self.json_assets[key]
            for f in list(asset):
                kind = fields.get(f)
                if kind is None:
                    self._undeclared(item_id, f"assets.{key}.{f}")
                    extra_assets.setdefault(key, {})[f] = asset.pop(f)
                    continue
                if f in json_fields and asset[f] is not None:
                    asset[f] = orjson.dumps(asset[f], option=orjson.OPT_SORT_KEYS).decode()
                elif not _kind_ok(kind, asset[f]):
                    raise Drift(item_id, f"assets.{key}.{f}", f"is {type(asset[f]).__name__}, the schema says {kind}")
        if extra_assets:
            item["assets"] = {k: v for k, v in item["assets"].items() if k not in extra_assets or k in self.cols.assets}
        if extra:
            props[C.EXTRA_PROPERTIES] = orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode()
        if extra_assets:
            props[C.EXTRA_ASSETS] = orjson.dumps(extra_assets, option=orjson.OPT_SORT_KEYS).decode()
        for i, link in enumerate(item.get("links") or []):
            extra = set(link) - _LINK_KEYS
            if extra:
                raise Drift(item_id, f"links[{i}].{sorted(extra)[0]}", "links keep only href, rel, type and title in GeoParquet")
        extra = set(item) - {"type", "stac_version", "stac_extensions", "id", "geometry", "bbox", "links", "assets", "collection", "properties"}
        if extra:
            raise Drift(item_id, sorted(extra)[0], "a top-level field that is not part of a STAC item in GeoParquet")
        if item.get("bbox") is not None:  # GeoParquet's bbox column is 2D: a 3D box keeps its x/y range
            item["bbox"] = list(bbox_2d(item["bbox"]))
        elif item.get("geometry"):
            item["bbox"] = coords_bbox(item["geometry"])
        else:  # no geometry, no box: NaNs, which no spatial filter matches (stac-geoparquet cannot write a null box)
            item["bbox"] = [math.nan] * 4
        return item


def _wkb(geometries: list) -> Any:
    import numpy as np
    import shapely

    texts = np.array([orjson.dumps(g) if g is not None else None for g in geometries], dtype=object)
    return shapely.to_wkb(shapely.from_geojson(texts), flavor="iso")


def pgstac_line(item: dict) -> bytes:
    """An item as ``pypgstac load`` takes it: compact JSON, without the relative structural
    links of the static catalog (pgstac and its API make their own)."""
    links = [l for l in item.get("links") or [] if not (l.get("rel") in STRUCTURAL_RELS and "://" not in str(l.get("href", "")))]
    return orjson.dumps({**item, "links": links}, option=orjson.OPT_SORT_KEYS) + b"\n"


PARTITION_WIDTH = {"year": 4, "month": 7}
"""How many characters of a sortable start datetime name its partition."""


def partition_key(start: str, partition: str) -> str:
    """``2021``, ``2021-07`` or ``items`` for a sortable start datetime."""
    width = PARTITION_WIDTH.get(partition)
    return start[:width] if width else _NO_PARTITION


def parquet_assets(parts: Iterable[str]) -> dict[str, dict]:
    """The collection's GeoParquet assets: one per partition file, so that every href is a file
    that rustac, pyarrow, DuckDB or an HTTP client opens (a folder is a 404 over HTTP)."""
    return {
        f"geoparquet-{p}": {
            "href": f"./parquet/{p}.parquet",
            "roles": ["stac-items"],
            "title": "GeoParquet of the items" + ("" if p == _NO_PARTITION else f" ({p})"),
            "type": PARQUET,
        }
        for p in parts
    }


@dataclass
class _Member:
    sort: str
    item_id: str
    path: str
    sha: str
    old_row: int | None = None  # unchanged since the last export: its row in the old parquet file and line in the old piece
    pending: bool = True  # changed since the last export: its row in ``exported`` is written again


def _arrow_names(t: pa.DataType) -> pa.DataType:
    import pyarrow as pa

    if pa.types.is_list(t):
        f = t.value_field
        return pa.list_(pa.field("item", _arrow_names(f.type), f.nullable, f.metadata))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _arrow_names(f.type), f.nullable, f.metadata) for f in t])
    return t


class _OldPartition:
    """The partition's parquet file as the last export wrote it: unchanged items take their row
    from here instead of being read and converted again. Rows are asked for in increasing order
    (members and old rows share the (datetime, id) order), so only the row groups at hand are in
    memory. ``parquet`` None: the collection has no GeoParquet output (its pgstac lines are
    reused all the same, through :class:`_Piece`)."""

    def __init__(self, parquet: Path | None):
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(parquet) if parquet is not None else None
        self.starts: list[int] = []
        if self.file is not None:
            md = self.file.metadata
            self.starts = list(itertools.accumulate((md.row_group(i).num_rows for i in range(md.num_row_groups)), initial=0))
        self.groups: dict[int, pa.Table] = {}

    @property
    def rows(self) -> int:
        return self.starts[-1] if self.starts else 0

    def schema(self) -> pa.Schema:
        """The schema a conversion gives: the file's, with Arrow's list item names (a
        parquet file names them ``element``) and without the file's metadata."""
        import pyarrow as pa

        return pa.schema([pa.field(f.name, _arrow_names(f.type), f.nullable, f.metadata) for f in self.file.schema_arrow])  # type: ignore[union-attr]

    def rows_from(self, first: int, count: int, schema: pa.Schema) -> list[pa.Table]:
        """Old rows ``first`` .. ``first + count - 1`` (asked for in increasing order) as slices
        of their row groups, cast to ``schema`` (the conversion's list field names). Slices
        share the groups' buffers: nothing is copied until the batch is put together."""
        out = []
        while count:
            g = bisect.bisect_right(self.starts, first) - 1
            for done in [k for k in self.groups if k < g]:
                del self.groups[done]
            if g not in self.groups:
                self.groups[g] = self.file.read_row_group(g).replace_schema_metadata(None).cast(schema)  # type: ignore[union-attr]
            n = min(count, self.starts[g + 1] - first)
            out.append(self.groups[g].slice(first - self.starts[g], n))
            first += n
            count -= n
        return out

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class _Piece:
    """A partition's pgstac piece being written: lines of changed items (:meth:`add`) and runs
    of lines of the piece the last export wrote (:meth:`copy_old`), in the partition's order.

    ``old`` is that piece (None: everything is new), ``ids`` the item of each of its lines. Its
    lines are found by reading it in blocks; the id of every ``CHECK_EVERY``-th line is looked
    for, since a line added or removed by hand shifts all that follow (``_Stale``).

    ``target`` may be ``old`` itself: the piece is then rewritten in its own file. That spares
    allocating, filling and writing back a new file's pages (~130 MB a partition) for the
    same bytes, which took most of a change's export time. An old byte is read before the new
    piece reaches its offset, so the old bytes held in memory grow by what the new lines add
    before them: the caller rewrites in place only when that is bounded, and marks the piece
    as being rewritten, since a stop half way leaves it neither the old piece nor the new."""

    def __init__(self, target: Path, hash_piece: bool, old: Path | None = None, ids: list[str] | None = None):
        self.in_place = old is not None and old == target
        self.fd = os.open(target, os.O_RDWR if self.in_place else os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            self.old_fd = None if old is None else self.fd if self.in_place else os.open(old, os.O_RDONLY)
        except OSError:
            os.close(self.fd)
            raise
        self.size = os.fstat(self.old_fd).st_size if self.old_fd is not None else 0
        self.ids = ids or []
        self.sha = hashlib.sha256() if hash_piece else None
        self.buf = bytearray()  # old bytes from offset ``base`` on
        self.base = 0
        self.row = 0  # old lines passed
        self.start = 0  # where old line ``row`` starts
        self.pos = 0  # bytes written
        self.out = bytearray()  # new lines not written yet (they go at ``pos``)

    def tell(self) -> int:
        """The new piece's size so far: where the next line goes."""
        return self.pos + len(self.out)

    def add(self, line: bytes) -> None:
        self.out += line
        if len(self.out) >= READ:
            self._flush()

    def copy_old(self, first: int, count: int) -> None:
        """Old lines ``first`` .. ``first + count - 1`` go next (asked for in increasing order;
        the old lines passed over are left out)."""
        self._pass(first - self.row)
        self._flush()
        while count:
            begin = self.start
            count -= self._pass(count, READ)
            stays = self.in_place and self.pos == begin  # the lines are in their place already
            if self.in_place and not stays:
                self._read_to(self.pos + self.start - begin)
            with memoryview(self.buf) as view, view[begin - self.base : self.start - self.base] as lines:
                self._put(lines, write=not stays)
            if self.start - self.base >= READ:  # what is before the next old line is not needed again
                del self.buf[: self.start - self.base]
                self.base = self.start

    def finish(self) -> tuple[str | None, int]:
        """The sha256 (when hashed) and size of the piece, now complete."""
        self._flush()
        if self.in_place:
            os.ftruncate(self.fd, self.pos)
        self.close()
        return (self.sha.hexdigest() if self.sha is not None else None), self.pos

    def close(self) -> None:
        for fd in {self.fd, self.old_fd} - {None}:
            os.close(fd)  # type: ignore[arg-type]
        self.fd = self.old_fd = None

    def _pass(self, count: int, limit: int = 0) -> int:
        """Go past ``count`` old lines, or fewer once ``limit`` bytes are passed; how many."""
        buf, ids, off = self.buf, self.ids, self.start - self.base
        n = 0
        while n < count:
            end = buf.find(b"\n", off)
            if end < 0:
                if not self._read_to(self.base + len(buf) + 1):
                    raise _Stale(ids[self.row + n] if self.row + n < len(ids) else "?")
                continue
            row = self.row + n
            if row % CHECK_EVERY == 0 and (row >= len(ids) or buf.find(b'"id":' + orjson.dumps(ids[row]), off, end) < 0):
                raise _Stale(ids[row] if row < len(ids) else "?")
            off = end + 1
            n += 1
            if limit and off - (self.start - self.base) >= limit:
                break
        self.row += n
        self.start = self.base + off
        return n

    def _read_to(self, end: int) -> bool:
        """Hold the old bytes up to ``end`` (at most the old size; at least a block more than
        held when short); False when there are none left to read."""
        have = self.base + len(self.buf)
        end = min(max(end, have + READ) if end > have else end, self.size)
        got = False
        while have < end:
            data = os.pread(self.old_fd, end - have, have)  # type: ignore[arg-type]
            if not data:
                break
            self.buf += data
            have += len(data)
            got = True
        return got

    def _flush(self) -> None:
        if self.out:
            if self.in_place:
                self._read_to(self.pos + len(self.out))
            self._put(self.out)
            self.out.clear()

    def _put(self, data: bytes | bytearray | memoryview, write: bool = True) -> None:
        if self.sha is not None:
            self.sha.update(data)
        if write:
            pwrite_all(self.fd, data, self.pos)  # type: ignore[arg-type]
        self.pos += len(data)


class _Stale(Exception):
    """The old piece is not the one the state describes (edited or truncated by hand)."""


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


def _item_start(path: Path) -> str:
    return item_time_range(orjson.loads(path.read_bytes()))[0]


def write_partition(
    out_dir: Path,
    segments: Iterable[_Member | range],
    schema: pa.Schema | None,
    prepared: Prepared | None,
    collection_doc: dict,
    parquet_tmp: Path | None,
    piece: _Piece,
    on_batch: Callable[[list[tuple[_Member, int, int]]], None],
    old: _OldPartition | None = None,
    changed: _Converted | None = None,
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

    def fresh_path(s: _Member | range) -> str | None:
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
                    item = orjson.loads(_readable(out_dir, s.path, data))
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
                fresh = _convert(rows, schema, prepared) if rows else None
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


def _in_batches(segments: Iterable[_Member | range], size: int) -> Iterator[list[_Member | range]]:
    """``segments`` regrouped in lists of ``size`` rows (the last may have fewer): a member is a
    row, a range of old rows is split where a batch ends. The batches are the parquet row
    groups, so they do not depend on which rows came from the old file."""
    batch: list[_Member | range] = []
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


def _convert(rows: list[dict], schema: pa.Schema, prepared: Prepared) -> pa.RecordBatch:
    """Rows of ``Prepared.row`` as a stac-geoparquet Arrow batch."""
    import pyarrow as pa
    from stac_geoparquet.arrow._batch import StacJsonBatch

    wkb = _wkb([r.get("geometry") for r in rows])
    for r, g in zip(rows, wkb):
        r["geometry"] = g
    try:
        array = pa.array(rows, type=pa.struct(schema))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        _explain(rows, schema, prepared, exc)
    return StacJsonBatch(pa.RecordBatch.from_struct_array(array)).to_arrow_batch().inner


def _chain(first, rest):
    yield first
    yield from rest


def _explain(rows: list[dict], schema: pa.Schema, prepared: Prepared, exc: Exception):
    """pyarrow refused a batch: find the item and field, for a message a person can act on."""
    import pyarrow as pa

    for r in rows:
        for name in ("properties", "assets", "bbox", "links", "stac_extensions"):
            try:
                pa.array([r.get(name)], type=schema.field(name).type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
                field = name
                if isinstance(r.get(name), dict):
                    for k, v in r[name].items():
                        sub = schema.field(name).type
                        idx = sub.get_field_index(k)
                        if idx >= 0:
                            try:
                                pa.array([v], type=sub.field(idx).type)
                            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                                field = f"{name}.{k}"
                                break
                raise Drift(r.get("id", "?"), field, str(e).splitlines()[0]) from None
    raise Drift("?", "?", str(exc).splitlines()[0]) from None


def collection_doc_for_metadata(out_dir: Path, coll: CollectionSpec, parquet: bool = True) -> dict:
    """The collection document without its structural links, for the metadata of its parquet
    files (without the GeoParquet assets: a file does not list itself) or, ``parquet=False``,
    for pgstac (with them: an API serves them as the collection's assets)."""
    doc = orjson.loads((out_dir / coll.id / "collection.json").read_bytes())
    doc["links"] = [l for l in doc.get("links") or [] if "://" in str(l.get("href", ""))]
    if parquet:
        doc["assets"] = {k: a for k, a in (doc.get("assets") or {}).items() if PARQUET not in str(a.get("type"))}
    if not doc.get("assets"):
        doc.pop("assets", None)
    return doc


def export_config_digest(coll: CollectionSpec, cols: C.ItemColumns | None) -> str:
    return digest_obj([EXPORT_VERSION, coll.export_digest(), cols.to_dict() if cols else None])


def _collection_input(con, coll: CollectionSpec) -> str | None:
    row = con.execute("SELECT input_digest FROM aggregates WHERE catalog=? AND collection=?", (coll.catalog_id, coll.id)).fetchone()
    return row[0] if row else None


def export_stale(project: Project, coll: CollectionSpec) -> StaleUnit | None:
    """Why a collection's exports are stale (None: up to date)."""
    con = st.connect(project.state_dir)
    row = con.execute("SELECT digest, input_digest FROM export_config WHERE catalog=? AND collection=?", (coll.catalog_id, coll.id)).fetchone()
    unit = export_task(coll)
    if row is None:
        return StaleUnit(unit, Reason.NEW)
    cols = item_columns(project, coll) if coll.geoparquet else None
    if row[0] != export_config_digest(coll, cols):
        return StaleUnit(unit, Reason.CONFIG_CHANGED, "export settings or column types")
    if row[1] is None or row[1] != _collection_input(con, coll):
        return StaleUnit(unit, Reason.SOURCE_CHANGED, "items changed since the last export")
    damaged = _damaged_parts(project, con, coll, _known_parts(con, coll))
    if damaged:
        return StaleUnit(unit, Reason.OUTPUT_MODIFIED, "partition files missing or changed: " + ", ".join(sorted(damaged)))
    return None


def _known_parts(con, coll: CollectionSpec) -> dict[str, tuple]:
    """Partition -> (sha256, size) of its parquet file, as the last export wrote it."""
    rows = con.execute("SELECT part, sha256, size FROM export_parts WHERE catalog=? AND collection=?", (coll.catalog_id, coll.id))
    return {r[0]: r[1:] for r in rows}


def _piece_sizes(con, coll: CollectionSpec) -> dict[str, int]:
    """Published pgstac piece -> size, as the last export wrote it."""
    return {path: size for path, _, size in st.outputs_under(con, coll.catalog_id, _pgstac_prefix(coll))}


def _damaged_parts(project: Project, con, coll: CollectionSpec, known: dict[str, tuple]) -> set[str]:
    """Partitions whose parquet file or pgstac piece is missing or changed size since the
    last export (deleted or edited by hand), or whose piece was being rewritten in place when
    an export stopped."""
    parquet_dir = project.build_dir / coll.catalog_id / coll.id / "parquet"
    pdir = pieces_dir(project, coll)
    marks = _rewriting(project, coll)
    sizes = _piece_sizes(con, coll) if coll.pgstac else {}
    damaged = set()
    for part, (_, size) in known.items():
        if (marks / part).exists():  # a rewrite in place stopped half way
            damaged.add(part)
        pq_path = parquet_dir / f"{part}.parquet"
        if coll.geoparquet and (not pq_path.exists() or pq_path.stat().st_size != size):
            damaged.add(part)
        piece = pdir / f"{part}.ndjson"
        if not piece.exists() or (coll.pgstac and piece.stat().st_size != sizes.get(piece_path(coll, part))):
            damaged.add(part)
    return damaged


def _rewriting(project: Project, coll: CollectionSpec) -> Path:
    """Where an export marks the partitions whose pgstac piece it rewrites in place, until the
    state describes the new pieces: ``.stacgit/rewriting/<catalog>/<collection>/<partition>``."""
    return project.state_dir / "rewriting" / coll.catalog_id / coll.id


def _growth(con, catalog: str, part: str) -> int:
    """At most how many bytes a partition's changed items add to its pgstac piece: the sizes of
    their item files (a pgstac line is the same item, compact and without structural links)."""
    sql = "SELECT coalesce(sum(o.size), 0) FROM temp.ex_new n JOIN outputs o ON o.catalog=? AND o.path=n.path WHERE n.part=?"
    return con.execute(sql, (catalog, part)).fetchone()[0]


class _Converted:
    """A partition's changed items, read and converted before its piece is rewritten in place,
    in the partition's order (``_FRESH``): their pgstac lines, and their rows (with GeoParquet);
    ``used``: how many the export has taken."""

    def __init__(self, lines: list[bytes], table: pa.Table | None):
        self.lines = lines
        self.table = table
        self.used = 0


def _convert_changed(con, out_dir: Path, part: str, schema: pa.Schema | None, prepared: Prepared | None) -> _Converted:
    """Read and convert a partition's changed items first: ``Drift`` or ``BuildError`` comes
    now, while its pgstac piece is still the old one, rather than half way through rewriting it
    in place. Their lines and rows are then held, for at most ``IN_PLACE_LIMIT`` bytes of items."""
    import pyarrow as pa

    paths = [r[2] for r in con.execute(_FRESH, (part,))]
    base = str(out_dir)
    lines: list[bytes] = []
    converted = []
    for chunk in prefetch([paths[i : i + BATCH] for i in range(0, len(paths), BATCH)], lambda p: os.path.join(base, p)):
        rows = []
        for path, data in chunk:
            item = orjson.loads(_readable(out_dir, path, data))
            lines.append(pgstac_line(item))
            if prepared is not None:
                rows.append(prepared.row(item))
        if rows:
            converted.append(_convert(rows, schema, prepared))  # type: ignore[arg-type]
    return _Converted(lines, pa.Table.from_batches(converted) if converted else None)


def _readable(out_dir: Path, path: str, data: bytes | OSError | None) -> bytes:
    if isinstance(data, OSError):
        raise BuildError(f"{out_dir / path}: cannot read the built item ({data.strerror}); run `stacgit build` again")
    return data  # type: ignore[return-value]


def pieces_root(project: Project, catalog_id: str) -> Path:
    """Where the pgstac pieces of a catalog's collections with ``pgstac: false`` live:
    ``.stacgit/exports/<catalog>/<collection>/`` (not published; the next export reuses their lines)."""
    return project.state_dir / "exports" / catalog_id


def _piece_dirs(project: Project, coll: CollectionSpec) -> tuple[Path, Path]:
    """Where a collection's pgstac pieces are (published under ``build/`` unless its pgstac
    output is off), and the other place, which holds none."""
    published = project.build_dir / coll.catalog_id / _pgstac_prefix(coll)
    private = pieces_root(project, coll.catalog_id) / coll.id
    return (published, private) if coll.pgstac else (private, published)


def pieces_dir(project: Project, coll: CollectionSpec) -> Path:
    return _piece_dirs(project, coll)[0]


def _pgstac_prefix(coll: CollectionSpec) -> str:
    return f"pgstac/{coll.id}/"


def piece_path(coll: CollectionSpec, part: str) -> str:
    """A published pgstac piece, relative to the catalog's build directory."""
    return f"{_pgstac_prefix(coll)}{part}.ndjson"


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


def _members(con, key: tuple[str, str], part: str, replaced: set[str]) -> Iterator[_Member]:
    """A partition's items, sorted by datetime then id, each to be read and converted: the
    changed ones, and those unchanged since the last export (not ``replaced``: changed or gone
    from the build)."""
    fresh = (_Member(*r) for r in con.execute(_FRESH, (part,)))
    old = (_Member(sort, item_id, path, sha, None, False) for sort, item_id, path, sha in con.execute(_OLD, (*key, part)) if item_id not in replaced)
    return heapq.merge(fresh, old, key=lambda m: (m.sort, m.item_id))  # str order is UTF-8 byte order, as SQLite sorts


def _old_keys(con, key: tuple[str, str], part: str) -> list[tuple[str, str]]:
    """(sort, item id) of the partition's rows as the last export wrote them, in order."""
    return con.execute(_OLD_KEYS, (*key, part)).fetchall()


def _segments(con, key: tuple[str, str], part: str, old_keys: list[tuple[str, str]], replaced: set[str]) -> Iterator[_Member | range]:
    """A partition's rows in order, for an export that reuses the old files: runs of old rows
    unchanged since the last export (ranges of row numbers) and the changed items (members to
    be read and converted). Only the few changed and gone items are looked at one by one, not
    the partition's unchanged rows."""
    fresh = [_Member(*r) for r in con.execute(_FRESH, (part,))]
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


def _insert(con, sql: str, rows: list[tuple]) -> None:
    """Rows into a temporary table, in one transaction of the temp database; empties ``rows``."""
    if rows:
        con.execute("BEGIN")
        con.executemany(sql, rows)
        con.execute("COMMIT")
        rows.clear()


class _Changes(NamedTuple):
    dirty: set[str]  # partitions to write again (or drop)
    parts: set[str]  # partitions that hold the changed items now
    changed: int
    added: int
    gone: dict[str, int]  # partition -> items gone from the build


def _find_changes(con, key: tuple[str, str], out_dir: Path, partition: str, queued: bool, every: bool = False) -> _Changes:
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
        sort = start if (start and patched is None) else _item_start(out_dir / path)
        part = partition_key(sort, partition)
        dirty.add(part)
        parts.add(part)
        if e_part is not None:
            dirty.add(e_part)
        pending.append((item_id, sha, part, sort, path))
        if len(pending) >= SPILL:
            _insert(con, "INSERT INTO temp.ex_new VALUES (?,?,?,?,?)", pending)
    _insert(con, "INSERT INTO temp.ex_new VALUES (?,?,?,?,?)", pending)
    con.execute("BEGIN")
    con.execute("INSERT INTO temp.ex_gone " + _GONE.format_map(st.only_queued("export_queue", "e") if queued else st.EVERY_ITEM), key)
    con.execute("COMMIT")
    gone = dict(con.execute("SELECT part, COUNT(*) FROM temp.ex_gone GROUP BY part").fetchall())
    return _Changes(dirty, parts, changed, added, gone)


def _counts_agree(con, key: tuple[str, str], found: _Changes) -> bool:
    """Whether the exports, with the queued changes, would hold as many items as the build: a
    check (two index counts) that the queue has not missed an item added or removed."""
    built = st.item_count(con, key)
    exported = con.execute("SELECT COUNT(*) FROM exported WHERE catalog=? AND collection=?", key).fetchone()[0]
    return built == exported + found.added - sum(found.gone.values())


def export_collection(project: Project, coll: CollectionSpec, jobs: int = 1) -> dict:
    """Bring a collection's GeoParquet partitions and pgstac NDJSON up to date."""
    con = st.connect(project.state_dir)
    cat_id = coll.catalog_id
    key = (cat_id, coll.id)
    out_dir = project.build_dir / cat_id
    gp = coll.geoparquet
    partition = gp["partition"] if gp else "none"
    cols = item_columns(project, coll) if gp else None
    config_digest = export_config_digest(coll, cols)
    prior_cfg = con.execute("SELECT digest FROM export_config WHERE catalog=? AND collection=?", key).fetchone()
    config_changed = prior_cfg is None or prior_cfg[0] != config_digest
    input_digest = _collection_input(con, coll)

    # Which items changed since the last export, and the partitions that hold them: of the
    # queued items; of them all when the configuration changed, or when the counts show that
    # the queue missed something.
    known_parts = _known_parts(con, coll)
    found = _find_changes(con, key, out_dir, partition, queued=not config_changed, every=config_changed)
    if not config_changed and not _counts_agree(con, key, found):
        found = _find_changes(con, key, out_dir, partition, queued=False)
    dirty, parts, changed, gone = found.dirty, found.parts, found.changed, found.gone
    # every partition exported before (one that loses all its items is dirty, and dropped below)
    parts.update(known_parts)
    removed = sum(gone.values())
    dirty |= set(gone)
    pdir = pieces_dir(project, coll)
    marks = _rewriting(project, coll)
    damaged = _damaged_parts(project, con, coll, known_parts)
    dirty |= damaged
    if config_changed:
        dirty |= parts | set(known_parts)
    dirty |= parts - set(known_parts)

    tmp_dir = project.state_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    pdir.mkdir(parents=True, exist_ok=True)
    schema = json_schema(cols) if cols else None
    prepared = Prepared(cols) if cols else None
    coll_doc = collection_doc_for_metadata(out_dir, coll) if gp else {}
    written_parts: list[tuple[str, str | None, int | None]] = []
    written_pieces: list[tuple[str, str | None, int]] = []  # part, sha256 (when published), size
    deleted_parts: list[str] = []
    parquet_dir = out_dir / coll.id / "parquet"

    def placed(part: str, batch: list[tuple[_Member, int, int]]) -> None:
        _insert(con, "INSERT INTO temp.ex_rows VALUES (?,?,?,?,?,?,?)", [(m.item_id, m.sha, part, m.sort, m.path, off, ln) for m, off, ln in batch])

    # the few changed and queued items as sets: a lookup per old row in SQL cost 3 s at 800K
    replaced = {r[0] for r in con.execute("SELECT item_id FROM temp.ex_new UNION ALL SELECT item_id FROM temp.ex_gone")}
    members = functools.partial(_members, con, key, replaced=replaced)
    reusable = set() if config_changed else (dirty & set(known_parts)) - damaged  # the previous files are the ones the state describes
    for part in sorted(reusable):  # read whole below, one after another: let the disk start on them all now
        will_need(pdir / f"{part}.ndjson")
        if gp:
            will_need(parquet_dir / f"{part}.parquet")
    for part in sorted(dirty):
        pq_rel = f"{coll.id}/parquet/{part}.parquet"
        piece_file = pdir / f"{part}.ndjson"
        old = None
        old_ids: list[str] = []
        if part in reusable:
            old_keys = _old_keys(con, key, part)
            old = _OldPartition(out_dir / pq_rel if gp else None)
            old_ids = [k[1] for k in old_keys]
            if gp and old.rows != len(old_keys):  # not the files the state describes: convert everything
                old.close()
                old = None
        group = _segments(con, key, part, old_keys, replaced) if old is not None else members(part)
        first = next(group, None)
        if first is None:
            if old is not None:
                old.close()
            (out_dir / pq_rel).unlink(missing_ok=True)
            piece_file.unlink(missing_ok=True)
            deleted_parts.append(part)
            parts.discard(part)
            continue
        pq_tmp = tmp_dir / f"{cat_id}.{coll.id}.{part}.parquet.tmp" if gp else None
        piece_tmp = tmp_dir / f"{cat_id}.{coll.id}.{part}.ndjson.tmp"
        in_place = old is not None and _growth(con, cat_id, part) <= IN_PLACE_LIMIT
        write = functools.partial(write_partition, out_dir, schema=schema, prepared=prepared, collection_doc=coll_doc, parquet_tmp=pq_tmp, on_batch=functools.partial(placed, part))
        piece = converted = None
        try:
            try:
                if in_place:  # what could stop the export half way is found while the piece is the old one
                    converted = _convert_changed(con, out_dir, part, schema, prepared)
                    marks.mkdir(parents=True, exist_ok=True)
                    (marks / part).touch()
                piece = _Piece(piece_file if in_place else piece_tmp, coll.pgstac, old=piece_file if old is not None else None, ids=old_ids)
                piece_sha, piece_size = write(itertools.chain([first], group), piece=piece, old=old, changed=converted)
            except _Stale:  # the old piece was changed by hand: convert everything
                piece.close()  # type: ignore[union-attr]
                old.close()  # type: ignore[union-attr]
                old = None
                in_place = False
                con.execute("DELETE FROM temp.ex_rows WHERE part=?", (part,))
                piece = _Piece(piece_tmp, coll.pgstac)
                piece_sha, piece_size = write(members(part), piece=piece, old=None)
        except Drift as d:
            for t in (pq_tmp, piece_tmp):
                if t is not None:
                    t.unlink(missing_ok=True)
            row = con.execute("SELECT path FROM outputs WHERE catalog=? AND collection=? AND item_id=? AND kind='item'", (*key, d.item_id)).fetchone()
            at = f" ({cat_id}/{row[0]})" if row else ""
            raise BuildError(f"{coll.key}: GeoParquet schema drift: item {d.item_id!r}{at}: {d.field}: {d.reason}") from None
        finally:
            if old is not None:
                old.close()
            if piece is not None:
                piece.close()
        if gp:
            parquet_dir.mkdir(parents=True, exist_ok=True)
            os.replace(pq_tmp, out_dir / pq_rel)
            written_parts.append((part, sha256_file(out_dir / pq_rel), (out_dir / pq_rel).stat().st_size))
        else:
            written_parts.append((part, None, None))
        if not in_place:
            os.replace(piece_tmp, piece_file)
        written_pieces.append((part, piece_sha, piece_size))
    if gp is None and parquet_dir.exists():
        shutil.rmtree(parquet_dir)
    if written_parts and gp:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()  # the worker process runs other tasks after this one

    _tidy_pieces(project, coll, parts)
    current = {piece_path(coll, part) for part in parts} if coll.pgstac else set()

    with st.Transaction(con):
        for part in deleted_parts:
            con.execute("DELETE FROM export_parts WHERE catalog=? AND collection=? AND part=?", (*key, part))
            con.execute("DELETE FROM outputs WHERE catalog=? AND path=?", (cat_id, f"{coll.id}/parquet/{part}.parquet"))
        for part, sha, size in written_parts:
            con.execute("INSERT OR REPLACE INTO export_parts VALUES (?,?,?,?,?)", (*key, part, sha, size))
            if sha is not None:
                con.execute("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)", (cat_id, f"{coll.id}/parquet/{part}.parquet", coll.id, None, "parquet", None, sha, size, None))
        if gp is None:
            con.execute("DELETE FROM outputs WHERE catalog=? AND collection=? AND kind='parquet'", key)
        con.execute("DELETE FROM exported WHERE catalog=? AND collection=? AND item_id IN (SELECT item_id FROM temp.ex_gone)", key)
        con.execute(  # rows updated in place (most only move to another offset)
            "INSERT INTO exported SELECT ?, ?, item_id, sha256, part, sort, path, off, len FROM temp.ex_rows WHERE true "
            "ON CONFLICT (catalog, collection, item_id) DO UPDATE SET sha256=excluded.sha256, part=excluded.part, "
            "sort=excluded.sort, path=excluded.path, off=excluded.off, len=excluded.len",
            key,
        )
        for part, sha, size in written_pieces:
            if sha is not None:
                con.execute("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)", (cat_id, piece_path(coll, part), coll.id, None, "pgstac", None, sha, size, None))
        for rel in _piece_sizes(con, coll).keys() - current:  # deleted partitions, an earlier layout, pgstac turned off
            con.execute("DELETE FROM outputs WHERE catalog=? AND path=?", (cat_id, rel))
        con.execute("INSERT OR REPLACE INTO export_config VALUES (?,?,?,?)", (*key, config_digest, input_digest))
        con.execute("DELETE FROM export_queue WHERE catalog=? AND collection=?", key)
    shutil.rmtree(marks, ignore_errors=True)  # the state describes the pieces rewritten in place
    return {
        "unit": "export",
        "collection": coll.key,
        "items_changed": changed,
        "items_removed": removed,
        "partitions_written": len(written_parts),
        "partitions_deleted": len(deleted_parts),
        "partitions": len(parts),
    }


def _tidy_pieces(project: Project, coll: CollectionSpec, parts: set[str]) -> None:
    """Remove pgstac files that are not pieces of the current partitions: the other location's
    (``pgstac`` turned on or off), and an earlier stacgit's (one ``items.ndjson`` per collection,
    and pieces kept under ``.stacgit/exports``)."""
    pdir, other = _piece_dirs(project, coll)
    shutil.rmtree(other, ignore_errors=True)
    keep = {f"{part}.ndjson" for part in parts}
    for f in pdir.iterdir() if pdir.is_dir() else ():
        if f.name not in keep:
            f.unlink()


def catalog_exports(project: Project, con, cat, writer) -> None:
    """After the collections are exported: ``pgstac/collections.ndjson``, the collections in the
    form ``pypgstac load collections`` takes. (What changed since the last publish is computed
    by ``publish`` from the published manifest: the build holds no history.)"""
    out_dir = project.build_dir / cat.id
    pg = [c for c in cat.collections if c.pgstac and (out_dir / c.id / "collection.json").is_file()]  # built ones
    if pg:
        data = b"".join(orjson.dumps(collection_doc_for_metadata(out_dir, c, parquet=False), option=orjson.OPT_SORT_KEYS) + b"\n" for c in pg)
        rel = "pgstac/collections.ndjson"
        if not (out_dir / rel).exists() or (out_dir / rel).read_bytes() != data:
            writer.write(rel, data)
        with st.Transaction(con):
            con.execute("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)", (cat.id, rel, "", None, "pgstac", None, sha256_bytes(data), len(data), None))
    else:
        (out_dir / "pgstac" / "collections.ndjson").unlink(missing_ok=True)
        with st.Transaction(con):
            con.execute("DELETE FROM outputs WHERE catalog=? AND path='pgstac/collections.ndjson'", (cat.id,))


__all__ = ["export_collection", "catalog_exports", "export_stale", "item_columns", "json_schema", "pgstac_line"]
