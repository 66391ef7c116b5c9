"""GeoParquet of a collection's items: the explicit Arrow schema of its columns, items turned
into rows (checked against it), and the partitions (year, year-month or one file) the files are
split in."""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import orjson

from stacgit import columns as C
from stacgit.geo import bbox_2d, coords_bbox
from stacgit.project import CollectionSpec
from stacgit.stac import PARQUET


if TYPE_CHECKING:
    import pyarrow as pa


NO_PARTITION = "items"


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


PARTITION_WIDTH = {"year": 4, "month": 7}
"""How many characters of a sortable start datetime name its partition."""


def partition_key(start: str, partition: str) -> str:
    """``2021``, ``2021-07`` or ``items`` for a sortable start datetime."""
    width = PARTITION_WIDTH.get(partition)
    return start[:width] if width else NO_PARTITION


def parquet_assets(parts: Iterable[str]) -> dict[str, dict]:
    """The collection's GeoParquet assets: one per partition file, so that every href is a file
    that rustac, pyarrow, DuckDB or an HTTP client opens (a folder is a 404 over HTTP)."""
    return {
        f"geoparquet-{p}": {
            "href": f"./parquet/{p}.parquet",
            "roles": ["stac-items"],
            "title": "GeoParquet of the items" + ("" if p == NO_PARTITION else f" ({p})"),
            "type": PARQUET,
        }
        for p in parts
    }


def _arrow_names(t: pa.DataType) -> pa.DataType:
    import pyarrow as pa

    if pa.types.is_list(t):
        f = t.value_field
        return pa.list_(pa.field("item", _arrow_names(f.type), f.nullable, f.metadata))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _arrow_names(f.type), f.nullable, f.metadata) for f in t])
    return t


class OldPartition:
    """The partition's parquet file as the last export wrote it: unchanged items take their row
    from here instead of being read and converted again. Rows are asked for in increasing order
    (members and old rows share the (datetime, id) order), so only the row groups at hand are in
    memory. ``parquet`` None: the collection has no GeoParquet output (its pgstac lines are
    reused all the same, through :class:`Piece`)."""

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


def convert_rows(rows: list[dict], schema: pa.Schema, prepared: Prepared) -> pa.RecordBatch:
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
