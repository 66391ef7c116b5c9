"""manifest.json, put together from one fragment per collection: its entries (path, sha256,
size), in path order, kept under ``.stacgit/fragments/`` and updated by the collection step
where its outputs changed, so that the catalog step concatenates instead of listing every
output again."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from stacgit.state import catalogs
from stacgit import state as st
from stacgit.hashing import digest_bytes
from stacgit.fileio import map_file
from stacgit.project import CatalogSpec, Project


ENTRY = b'\n    %s: {\n      "sha256": "%s",\n      "size": %d\n    },'


def fragment_of(con, cat_id: str, coll_id: str) -> bytes:
    """The manifest entries of one collection's items and (sub-)catalogs, in path order, each
    ending in ','. Its GeoParquet files are not in it: the export task, which rewrites them,
    would have to rewrite the ~23 MB fragment (at 100K items) for a few entries; the catalog
    task reads them from the state instead."""
    # every path of the collection starts with "<id>/": a range of the (catalog, path) key, in order
    return _entries(st.outputs_under(con, cat_id, coll_id + "/", coll_id, parquet=False))


def _entries(rows) -> bytes:
    """Manifest entries of (path, sha256, size) rows."""
    dumps = orjson.dumps
    return b"".join([ENTRY % (dumps(path), sha.encode(), size) for path, sha, size in rows])


def fragments_dir(project: Project, cat_id: str) -> Path:
    return project.state_dir / "fragments" / cat_id


def fragment_path(project: Project, cat_id: str, coll_id: str) -> Path:
    return fragments_dir(project, cat_id) / f"{coll_id}.part"


_ENTRY_START = b'\n    "'
"""How every entry of a fragment starts (a path's JSON escapes newlines, so only entries do)."""


def fragment_digest(con, cat_id: str, coll_id: str) -> str | None:
    return catalogs.fragment_digest(con, cat_id, coll_id)


def _entry_path(buf: bytes, at: int) -> str:
    """The path of the entry that starts at ``at``."""
    end = buf.find(b'": {\n', at)  # (``find``: ``buf`` may be a mapped file)
    if end < 0:
        raise ValueError("not a manifest fragment")
    return orjson.loads(buf[at + len(_ENTRY_START) - 1 : end + 1])


def _entry_after(buf: bytes, at: int) -> int:
    """Where the entry after the one at ``at`` starts (the end of ``buf`` after the last)."""
    nxt = buf.find(_ENTRY_START, at + 1)
    return len(buf) if nxt < 0 else nxt


def _first_at_or_after(buf: bytes, path: str, lo: int, hi: int) -> int:
    """Where the first entry of ``buf[lo:hi]`` whose path is not before ``path`` starts (``hi``
    when there is none); ``lo`` and ``hi`` are entry boundaries. A binary search over byte
    offsets: each probe decodes one path."""
    while lo < hi:
        at = buf.find(_ENTRY_START, (lo + hi) // 2, hi)
        if at < 0:  # no entry starts in the upper half: try the one at lo
            at = lo
        if _entry_path(buf, at) < path:
            lo = _entry_after(buf, at)
            if lo > hi:
                lo = hi
        else:
            hi = at
    return lo


def merge_fragment(old: bytes, changes: dict[str, tuple[str, int] | None]) -> bytes:
    """``old`` (entries as :func:`fragment_of` writes them) with ``changes`` applied: path ->
    (sha256, size) added or replaced, path -> None removed. Entries stay in path order (str
    order is UTF-8 byte order, as SQLite sorts). The old entries are not parsed: each change
    finds its place by a binary search (a collection's fragment at 100K items is ~23 MB;
    parsing it cost 0.15-0.3 s)."""
    return b"".join(fragment_parts(old, changes))


def fragment_parts(old: bytes, changes: dict[str, tuple[str, int] | None]) -> list:
    """:func:`merge_fragment` as the parts whose concatenation it is (views of ``old``)."""
    if old and old[: len(_ENTRY_START)] != _ENTRY_START:
        raise ValueError("not a manifest fragment")
    end = len(old)
    cuts: list[tuple[int, int, bytes]] = []  # (from, to, entry): old[from:to] replaced by entry
    dumps = orjson.dumps
    at = 0
    for path in sorted(changes):
        at = _first_at_or_after(old, path, at, end)
        to = _entry_after(old, at) if at < end and _entry_path(old, at) == path else at
        value = changes[path]
        cuts.append((at, to, ENTRY % (dumps(path), value[0].encode(), value[1]) if value is not None else b""))
    view = memoryview(old)
    out: list = []
    kept = 0  # old[:kept] is dealt with
    for start, to, entry in cuts:  # in path order, so in place order
        if start > kept:
            out.append(view[kept:start])
        out.append(entry)
        kept = max(kept, to)
    out.append(view[kept:])
    return out


def _updated_fragment(project: Project, cat_id: str, coll_id: str, prior: str | None, changes: dict) -> bytes | None:
    """The saved fragment with ``changes`` applied, when it is the one ``prior`` describes."""
    path = fragment_path(project, cat_id, coll_id)
    if prior is None or not path.exists():
        return None
    old = path.read_bytes()
    if digest_bytes(old) != prior:
        return None
    try:
        return merge_fragment(old, changes)
    except ValueError:
        return None


def save_fragment(
    project: Project,
    con,
    cat_id: str,
    coll_id: str,
    data: bytes | None = None,
    *,
    prior: str | None = None,
    changes: dict[str, tuple[str, int] | None] | None = None,
) -> bytes:
    """After a collection's outputs are committed: keep its manifest entries for the catalog
    task, with their digest in the state. The saved fragment whose digest was ``prior`` is
    updated instead of read again from SQL, with ``changes`` (the outputs the task wrote or
    deleted, see :func:`merge_fragment`). A stale or missing file is regenerated from SQL."""
    if data is None and changes is not None:
        data = _updated_fragment(project, cat_id, coll_id, prior, changes)
    if data is None:
        data = fragment_of(con, cat_id, coll_id)
    path = fragment_path(project, cat_id, coll_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    catalogs.set_fragment_digest(con, cat_id, coll_id, digest_bytes(data))
    return data


def manifest_parts(project: Project, con, cat: CatalogSpec, root_entry: tuple[str, int]) -> list:
    """``manifest.json``: every output path -> sha256 and size, as ``pretty_json`` would print
    ``{"catalog", "files", "version"}`` (sorted keys, 2-space indent). Assembled from the
    collections' saved fragments (checked against their digests); paths sort as UTF-8 bytes,
    and every path of a collection starts with ``<id>/``, so fragments sort by that prefix. A
    collection's GeoParquet entries come from the state and go in their places in its fragment.
    Returned as the parts whose concatenation is the file (at 800K items it is ~190 MB: joined,
    and compared with the file read whole, it cost ~2 s of the catalog task)."""
    saved = catalogs.fragment_digests(con, cat.id)
    pieces: list[tuple[bytes, list]] = [(b"catalog.json", [ENTRY % (b'"catalog.json"', root_entry[0].encode(), root_entry[1])])]
    for c in cat.collections:
        data = None
        path = fragment_path(project, cat.id, c.id)
        if saved.get(c.id) and path.exists():
            data = map_file(path)
            if digest_bytes(data) != saved[c.id]:
                data = None
        if data is None:
            data = save_fragment(project, con, cat.id, c.id, fragment_of(con, cat.id, c.id)) if c.id in saved else fragment_of(con, cat.id, c.id)
        parquet = {path: (sha, size) for path, sha, size in st.outputs_under(con, cat.id, f"{c.id}/parquet/", c.id, parquet=True)}
        pieces.append(((c.id + "/").encode(), fragment_parts(data, parquet) if parquet else [data]))
    pieces.append((b"pgstac/", [_entries(st.outputs_under(con, cat.id, "pgstac/"))]))
    for name in sorted({n for c in cat.collections for n in c.outputs}):  # further export formats, in their folders
        pieces.append(((name + "/").encode(), [_entries(st.outputs_under(con, cat.id, name + "/"))]))
    pieces.sort(key=lambda p: p[0])
    body: list = [part for _, parts in pieces for part in parts if len(part)]
    body[-1] = memoryview(body[-1])[:-1]  # no comma after the last entry (catalog.json's, at least)
    return [b'{\n  "catalog": ' + orjson.dumps(cat.id) + b',\n  "files": {', *body, b'\n  },\n  "version": 1\n}\n']
