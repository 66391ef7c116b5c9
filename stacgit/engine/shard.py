"""The shard stage: one source file's records -> item bodies.

``map_shard`` is a function of the shard's bytes, the collection's spec and the shard's prior
state (``state.shards.ShardPrior``): it reads the source, renders, checks and caches the item
bodies, and returns what it found (``ShardResult``: record rows, failures, digests). It never
opens the state store, so where it runs does not change what it produces. ``build_shard`` is
the unit as the runner calls it: read the prior state, map, compact the cache when it is
mostly dead bytes, save.

Records whose bytes (and mapping) are unchanged keep their state row and cached body
untouched; new bodies are appended to the shard's cache file. The cache file is rewritten (and
every row with it) when the mapping changed or it is more than half dead bytes.
"""

from __future__ import annotations

import glob
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from stacgit import columns as C
from stacgit import state as st
from stacgit.errors import BuildError, MappingError, PlanError
from stacgit.geo import bbox_2d, geometry_problem
from stacgit.hashing import canonical_json, digest_bytes, digest_file, digest_obj, pretty_json
from stacgit.mapping import item_time_range
from stacgit.plan import get_mapping
from stacgit.project import CollectionSpec, Project, check_id
from stacgit.sources import LAZY, RecordError, iter_records, parse_lazy, read_columns
from stacgit.state import shards
from stacgit._record_fields import check_columns

COMPACT_SLACK = 4 << 20
"""A shard's cache file is rewritten when its dead bytes exceed its live bytes plus this
(checked after each append, so a cache file never holds more than twice its live bytes)."""


@dataclass(frozen=True)
class BuildOptions:
    strict: bool = False
    run_id: str = ""
    jobs: int = 1
    now: str = ""  # RFC 3339 time of this build: `updated` of items changed by uncommitted patches
    validate: bool = True  # validate what the build wrote (see stacgit.verdicts)
    scheduler: str | None = None  # a Dask cluster's address: item files are written by its workers


@dataclass
class ShardResult:
    """What mapping one shard found: the rows to save and the report."""

    rows: list[tuple]  # new record rows, in ``state.shards.RECORD_COLUMNS`` order
    dropped: list[str]  # ids of prior records no longer in the file (when appending)
    failures: list[tuple]  # (catalog, collection, shard, location, field, reason, item id)
    signatures: dict[str, str]  # field-type signature digest -> its JSON (``undeclared: infer``)
    append: bool  # the rows add to the prior ones (else they replace them)
    cache_name: str  # the body cache file, under ``cache_dir``
    shard_row: tuple  # size, mtime_ns, file digest, config digest, result digest, cache file, items, failed
    report: dict = field(default_factory=dict)
    seconds: float = 0.0  # how long mapping took where it ran


def location(shard: str, loc: str) -> str:
    """``path:12`` for line-based locations, ``path (element 3)`` otherwise."""
    if loc.startswith("line "):
        return f"{shard}:{loc[5:]}"
    return f"{shard} ({loc})"


def failure_message(where: str, field: str, reason: str, more: int = 0) -> str:
    """One line for a record that failed to map: ``file:line: field: reason (and N more)``."""
    return f"{where}: {field}: {reason}" + (f" (and {more} more)" if more else "")


def cache_dir(project: Project, catalog_id: str) -> Path:
    return project.state_dir / "cache" / catalog_id


def _shard_key(coll: CollectionSpec, shard: str) -> str:
    return digest_obj([coll.catalog_id, coll.id, shard])[:20]


def record_digest(raw: bytes | None, rec: dict) -> str:
    if raw is not None:
        return digest_bytes(raw)
    return digest_bytes(orjson.dumps(rec, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str))


def item_box(item: dict) -> tuple:
    """The 2D box an item adds to its collection's extent (None x 4 without a bbox), once its
    geometry and bbox are known to be what the STAC spec allows."""
    why = geometry_problem(item.get("geometry"))
    if why:
        raise MappingError("geometry", why)
    if item.get("bbox") is None:
        return (None, None, None, None)
    try:
        w, s, e, n = bbox_2d(item["bbox"])
    except ValueError as exc:
        raise MappingError("bbox", str(exc)) from None
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise MappingError("bbox", f"{item['bbox']} is outside longitude [-180, 180] / latitude [-90, 90] (a box across the antimeridian has west > east)")
    return w, s, e, n


def build_shard(project: Project, coll: CollectionSpec, shard: str, options: BuildOptions) -> dict:
    """Map one source file and save what it found (the unit the runner runs)."""
    prior = shards.read_prior(st.connect(project.state_dir), (coll.catalog_id, coll.id, shard))
    return save_shard(project, coll, shard, options, prior, map_shard(project, coll, shard, options, prior))


def save_shard(project: Project, coll: CollectionSpec, shard: str, options: BuildOptions, prior: shards.ShardPrior | None, result: ShardResult) -> dict:
    """Save what ``map_shard`` found (wherever it ran), compacting the shard's body cache first
    when it is mostly dead bytes."""
    con = st.connect(project.state_dir)
    where = (coll.catalog_id, coll.id, shard)
    cdir = cache_dir(project, coll.catalog_id)
    old_cache = cdir / prior.cache_file if prior and prior.cache_file else None
    rows = result.rows
    if result.append:
        dropped = set(result.dropped)
        live = sum(ln for item_id, ln in prior.records.values() if item_id not in dropped) + sum(r[-1] for r in rows)  # type: ignore[union-attr]
        if os.path.getsize(cdir / result.cache_name) > 2 * live + COMPACT_SLACK:
            cache_name = f"{_shard_key(coll, shard)}-{uuid.uuid4().hex[:12]}.bin"
            kept_rows = [r for r in shards.read_records(con, where) if r[3] not in dropped]
            rows = _compact(kept_rows + rows, cdir / result.cache_name, cdir / cache_name)
            result.cache_name, result.append = cache_name, False
            result.shard_row = (*result.shard_row[:5], cache_name, *result.shard_row[6:])
    shards.save(con, where, replace_all=not result.append, dropped=result.dropped, rows=rows, failures=result.failures,
                signatures=result.signatures, shard_row=result.shard_row, run_id=options.run_id, report=result.report)
    if old_cache is not None and old_cache.name != result.cache_name:
        old_cache.unlink(missing_ok=True)
    return result.report


def map_shard(project: Project, coll: CollectionSpec, shard: str, options: BuildOptions, prior: shards.ShardPrior | None) -> ShardResult:
    """Map the records of one source file (see the module docstring): no state store."""
    mapping = get_mapping(project, coll)
    config_digest = coll.config_digest(mapping.digest)
    abs_path = str(project.root / shard)
    try:
        stat = os.stat(abs_path)
    except FileNotFoundError:
        raise BuildError(f"{shard}: source file disappeared during the build") from None
    file_digest = digest_file(abs_path)

    cdir = cache_dir(project, coll.catalog_id)
    cdir.mkdir(parents=True, exist_ok=True)
    key = _shard_key(coll, shard)
    where = (coll.catalog_id, coll.id, shard)
    old_cache_path = str(cdir / prior.cache_file) if prior and prior.cache_file else None
    for stray in glob.glob(str(cdir / f"{key}-*.bin")):
        if stray != old_cache_path:
            os.unlink(stray)
    # same mapping: unchanged records keep their rows and cached bodies, new ones are appended
    append = bool(prior and prior.config_digest == config_digest and old_cache_path and os.path.exists(old_cache_path))
    known: dict[str, tuple] = prior.records if append else {}  # type: ignore[union-attr]
    if append:
        cache_name = prior.cache_file  # type: ignore[union-attr]
        cache_path = Path(old_cache_path)  # type: ignore[arg-type]
        cache_mode = "ab"
    else:
        # named by what it holds: a second run of the same shard (a task Dask ran twice) writes
        # the same file, through its own temporary name
        cache_name = f"{key}-{digest_obj([file_digest, config_digest])[:12]}.bin"
        cache_path = project.state_dir / "tmp" / f"{cache_name}.{uuid.uuid4().hex[:8]}"
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_mode = "wb"
    rows: list[tuple] = []  # new state rows
    kept: set[str] = set()  # record digests of prior rows that stay as they are
    failures: list[tuple] = []
    seen: dict[str, str] = {}
    seen_folded: dict[str, tuple[str, str]] = {}
    mapped = reused = 0
    fmt = project.source_format(coll, shard)
    columns = read_columns(abs_path, shard, fmt, coll.source.delimiter) if mapping.reads else None
    if columns is not None:
        check_columns(mapping.reads, columns, shard)
    render = mapping.render
    infer = bool(coll.geoparquet and coll.geoparquet["undeclared"] == "infer")
    signatures: dict[str, str] = {}  # digest -> field types, of this shard's new items
    try:
        with open(cache_path, cache_mode) as cache:
            offset = cache.seek(0, os.SEEK_END)
            for loc, rec, raw in iter_records(abs_path, shard, fmt, coll.source.delimiter, lazy=True):
                if isinstance(rec, RecordError):
                    failures.append((loc, "record", rec.reason, None))
                    continue
                rdig = record_digest(raw, rec)
                hit = known.get(rdig)
                if rec is LAZY and (hit is None or rdig in kept):
                    rec = parse_lazy(loc, raw, shard)
                    if isinstance(rec, RecordError):
                        failures.append((loc, "record", rec.reason, None))
                        continue
                if hit is not None and rdig not in kept:
                    item_id = hit[0]
                    reused += 1
                    kept.add(rdig)
                    body = None
                else:
                    item_id = None
                    try:
                        item = render(rec, coll.id, coll.defaults)
                        item_id = item["id"]
                        why = check_id(item_id, "item id")
                        if why is not None:
                            raise MappingError("id", why)
                        start, end = item_time_range(item)
                        w, s, e, n = item_box(item)
                    except MappingError as exc:
                        failures.append((loc, exc.field, exc.reason, item_id if isinstance(item_id, str) else None))
                        continue
                    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, OverflowError) as exc:
                        # a record no check names yet: skipped with the reason, never the whole shard
                        failures.append((loc, "record", f"unexpected {type(exc).__name__}: {str(exc)[:200]}", item_id if isinstance(item_id, str) else None))
                        continue
                    body = pretty_json(item)  # the item file minus its structural links
                    body_digest = digest_bytes(body)
                    sig = None
                    if infer:
                        sig_doc = canonical_json(C.signature(item))
                        sig = digest_bytes(sig_doc)
                        signatures[sig] = sig_doc.decode()
                    mapped += 1
                if item_id in seen:
                    raise PlanError(
                        f"duplicate item id '{item_id}' in collection {coll.key}: {location(shard, seen[item_id])} and {location(shard, loc)}"
                    )
                seen[item_id] = loc
                folded = item_id.casefold()
                if folded in seen_folded and seen_folded[folded][0] != item_id:
                    other, other_loc = seen_folded[folded]
                    raise PlanError(
                        f"item ids '{other}' ({location(shard, other_loc)}) and '{item_id}' ({location(shard, loc)}) of collection "
                        f"{coll.key} differ only in case: their files would collide on case-insensitive file systems"
                    )
                seen_folded[folded] = (item_id, loc)
                if body is not None:
                    cache.write(body)
                    rows.append((*where, item_id, rdig, body_digest, start, end, w, s, e, n, sig, offset, len(body)))
                    offset += len(body)
    except BaseException:
        if not append:
            cache_path.unlink(missing_ok=True)
        raise

    if failures and options.strict:
        if not append:
            cache_path.unlink(missing_ok=True)
        loc, field_, reason, _ = failures[0]
        raise BuildError(failure_message(location(shard, loc), field_, reason, len(failures) - 1))

    if not append:
        os.replace(cache_path, cdir / cache_name)
    dropped = [v[0] for d, v in known.items() if d not in kept]
    new_failures = [(*where, loc, f, reason, iid) for loc, f, reason, iid in failures]
    changes = sorted((r[3], r[5], r[6], r[7], r[8], r[9], r[10], r[11]) for r in rows)
    if append:
        if not rows and not dropped and prior.failures == new_failures:  # type: ignore[union-attr]
            result_digest = prior.result_digest  # type: ignore[union-attr]
        else:
            result_digest = digest_obj([prior.result_digest, config_digest, [changes, sorted(dropped), failures]])  # type: ignore[union-attr]
    else:
        result_digest = digest_obj([config_digest, changes, failures])
    report = {"unit": "shard", "shard": shard, "records": len(seen) + len(failures), "mapped": mapped, "reused": reused, "failed": len(failures)}
    shard_row = (stat.st_size, stat.st_mtime_ns, file_digest, config_digest, result_digest, cache_name, len(seen), len(failures))
    return ShardResult(rows, dropped, new_failures, signatures, append, cache_name, shard_row, report)


def _compact(rows: list[tuple], old_path: Path, new_path: Path) -> list[tuple]:
    """Copy the bodies of ``rows`` from a shard's cache into a fresh file; return the rows, re-offset."""
    out: list[tuple] = []
    try:
        with open(old_path, "rb") as src, open(new_path, "wb") as dst:
            offset = 0
            for r in rows:
                src.seek(r[-2])
                body = src.read(r[-1])
                dst.write(body)
                out.append((*r[:-2], offset, len(body)))
                offset += len(body)
    except BaseException:
        new_path.unlink(missing_ok=True)
        raise
    return out


def find_location(project: Project, coll: CollectionSpec, shard: str, item_id: str) -> str:
    """``file:line`` of the record that produced an item (found again by its record digest)."""
    digest = shards.record_digest(st.connect(project.state_dir), (coll.catalog_id, coll.id, shard), item_id)
    if digest is not None:
        fmt = project.source_format(coll, shard)
        for loc, rec, raw in iter_records(str(project.root / shard), shard, fmt, coll.source.delimiter):
            if not isinstance(rec, RecordError) and record_digest(raw, rec) == digest:
                return location(shard, loc)
    return shard
