"""The built-in file formats: CSV, JSON (array / object / FeatureCollection), NDJSON and Parquet
(stac-geoparquet files are read back as STAC items).

Memory stays bounded by one record (CSV, NDJSON), one record batch (Parquet) or, for JSON files
over ``_JSON_STREAM_BYTES``, one array element (ijson); smaller JSON files are parsed whole with
orjson because that is faster.
"""

from __future__ import annotations

import csv
import os
from typing import Iterator

import orjson

from stacgit.errors import SourceError
from stacgit.sources.base import LAZY, FileFormat, RecordError

_JSON_STREAM_BYTES = 64 << 20
_PARQUET_BATCH = 4096


def _decoded_lines(f, display: str) -> Iterator[str]:
    for lineno, raw in enumerate(f, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(f"{display}:{lineno}: not valid UTF-8 (byte {exc.start + 1} of the line)") from exc
        if lineno == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield text


def _iter_csv(path: str, display: str, delimiter: str):
    with open(path, "rb") as f:
        reader = csv.reader(_decoded_lines(f, display), delimiter=delimiter, strict=True)
        try:
            header = next(reader, None)
            if not header:
                raise SourceError(f"{display}:1: empty CSV file (a header row is required)")
            header = [h.strip() for h in header]
            dupes = sorted({h for h in header if header.count(h) > 1})
            if dupes:
                raise SourceError(f"{display}:1: duplicate CSV column(s): {', '.join(dupes)}")
            if "" in header:
                raise SourceError(f"{display}:1: CSV header has an empty column name (column {header.index('') + 1})")
            width = len(header)
            start = reader.line_num
            for row in reader:
                loc = f"line {start + 1}"
                start = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != width:
                    missing = header[len(row):] if len(row) < width else []
                    why = (
                        f"row has {len(row)} fields, header has {width} (missing: {', '.join(missing)})"
                        if missing
                        else f"row has {len(row)} fields, header has {width}"
                    )
                    yield loc, RecordError(why), None
                    continue
                rec = {h: (v if v != "" else None) for h, v in zip(header, row)}
                yield loc, rec, delimiter.join(row).encode()
        except csv.Error as exc:
            raise SourceError(f"{display}:{reader.line_num}: malformed CSV: {exc}") from exc


def _json_error(display: str, exc: orjson.JSONDecodeError) -> SourceError:
    return SourceError(f"{display}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}")


def _iter_ndjson(path: str, display: str, lazy: bool = False):
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            if lazy:  # the caller parses only the lines it needs (see parse_lazy)
                yield f"line {lineno}", LAZY, line
                continue
            yield f"line {lineno}", parse_ndjson_line(line, display, lineno), line


def parse_ndjson_line(line: bytes, display: str, lineno: int) -> dict | RecordError:
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise SourceError(f"{display}:{lineno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(rec, dict):
        return RecordError(f"expected a JSON object, got {type(rec).__name__}")
    return rec


def parse_lazy(loc: str, raw: bytes, display: str) -> dict | RecordError:
    return parse_ndjson_line(raw, display, int(loc[5:]))


def _records_of(doc, display: str):
    if isinstance(doc, list):
        items, what = doc, "element"
    elif isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        items, what = doc.get("features") or [], "feature"
    elif isinstance(doc, dict):
        items, what = [doc], "object"
    else:
        raise SourceError(f"{display}:1: expected a JSON array, object or FeatureCollection")
    for i, rec in enumerate(items, start=1):
        loc = f"{what} {i}"
        if not isinstance(rec, dict):
            yield loc, RecordError(f"expected a JSON object, got {type(rec).__name__}"), None
        else:
            yield loc, rec, None


def _iter_json(path: str, display: str):
    size = os.path.getsize(path)
    if size <= _JSON_STREAM_BYTES:
        with open(path, "rb") as f:
            data = f.read()
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _json_error(display, exc) from exc
        yield from _records_of(doc, display)
        return
    import ijson

    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        f.seek(0)
        prefix = "item" if head.startswith(b"[") else "features.item"
        what = "element" if prefix == "item" else "feature"
        try:
            for i, rec in enumerate(ijson.items(f, prefix, use_float=True), start=1):
                if not isinstance(rec, dict):
                    yield f"{what} {i}", RecordError(f"expected a JSON object, got {type(rec).__name__}"), None
                else:
                    yield f"{what} {i}", rec, None
        except ijson.JSONError as exc:
            raise SourceError(f"{display}: invalid JSON: {exc}") from exc


def _open_parquet(path: str, display: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"{display}: cannot read Parquet: {exc}") from exc


def _is_stac_geoparquet(pf) -> bool:
    """A stac-geoparquet file (its metadata key, or GeoParquet with the item columns; older
    writers did not add the key): its rows are STAC items, read back as items."""
    meta = pf.schema_arrow.metadata or {}
    return b"stac-geoparquet" in meta or (b"geo" in meta and {"type", "stac_version", "id", "geometry"} <= set(pf.schema_arrow.names))


def _absent_nulls(item: dict) -> dict:
    """A stac-geoparquet row has every column of its file: a field another item has comes back
    as null. Nulls are taken as absent (but ``datetime: null``, which says "see the range")."""
    props = item.get("properties") or {}
    item["properties"] = {k: v for k, v in props.items() if v is not None or k == "datetime"}
    assets = item.get("assets") or {}
    item["assets"] = {k: {f: x for f, x in a.items() if x is not None} for k, a in assets.items() if a is not None}
    for key in [k for k, v in item.items() if v is None and k not in ("geometry", "properties")]:
        del item[key]
    return item


def _iter_parquet(path: str, display: str):
    pf = _open_parquet(path, display)
    items = _is_stac_geoparquet(pf)
    if items:
        import pyarrow as pa
        from stac_geoparquet.arrow import stac_table_to_items
    row = 0
    for batch in pf.iter_batches(batch_size=_PARQUET_BATCH):
        try:
            records = [_absent_nulls(i) for i in stac_table_to_items(pa.Table.from_batches([batch]))] if items else batch.to_pylist()
        except (ValueError, TypeError, KeyError, pa.ArrowException) as exc:
            raise SourceError(f"{display}: rows {row + 1}-{row + batch.num_rows}: cannot read them as STAC items: {exc}") from exc
        for rec in records:
            row += 1
            yield f"row {row}", rec, None


# --------------------------------------------------------------------------- the built-in formats


class CsvFormat(FileFormat):
    name = "csv"
    suffixes = (".csv",)

    def iter_records(self, path: str, display: str, *, delimiter: str = ",", lazy: bool = False):
        return _iter_csv(path, display, delimiter)

    def columns(self, path: str, display: str, *, delimiter: str = ",") -> list[str] | None:
        with open(path, "rb") as f:
            first = next(_decoded_lines(f, display), "")
        header = next(csv.reader([first], delimiter=delimiter), [])
        return [h.strip() for h in header] or None


class NdjsonFormat(FileFormat):
    name = "ndjson"
    suffixes = (".ndjson", ".jsonl")

    def iter_records(self, path: str, display: str, *, delimiter: str = ",", lazy: bool = False):
        return _iter_ndjson(path, display, lazy)


class JsonFormat(FileFormat):
    name = "json"
    suffixes = (".geojson", ".json")

    def iter_records(self, path: str, display: str, *, delimiter: str = ",", lazy: bool = False):
        return _iter_json(path, display)


class ParquetFormat(FileFormat):
    name = "parquet"
    suffixes = (".parquet", ".geoparquet")

    def iter_records(self, path: str, display: str, *, delimiter: str = ",", lazy: bool = False):
        return _iter_parquet(path, display)

    def columns(self, path: str, display: str, *, delimiter: str = ",") -> list[str] | None:
        pf = _open_parquet(path, display)
        return None if _is_stac_geoparquet(pf) else list(pf.schema_arrow.names)


BUILTIN = (CsvFormat, NdjsonFormat, JsonFormat, ParquetFormat)
