"""pgstac NDJSON of a collection's items ("pieces", partitioned like the GeoParquet files): one
line per item as ``pypgstac load`` takes it, and a piece rewritten with the lines of its
unchanged items copied from the previous piece."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import orjson

from stacgit.fileio import pwrite_all
from stacgit.project import CollectionSpec, Project
from stacgit.stac import STRUCTURAL_RELS




CHECK_EVERY = 32
"""A reused pgstac line is checked to be its item's in every this many lines."""


READ = 4 << 20
"""Bytes of an old pgstac piece read at a time (and written at a time)."""


IN_PLACE_LIMIT = 64 << 20
"""A piece is rewritten in its own file when its changed items' files add up to at most this
much: the old bytes the new lines push forward are held in memory until they are copied."""


def pgstac_line(item: dict) -> bytes:
    """An item as ``pypgstac load`` takes it: compact JSON, without the relative structural
    links of the static catalog (pgstac and its API make their own)."""
    links = [l for l in item.get("links") or [] if not (l.get("rel") in STRUCTURAL_RELS and "://" not in str(l.get("href", "")))]
    return orjson.dumps({**item, "links": links}, option=orjson.OPT_SORT_KEYS) + b"\n"


class Piece:
    """A partition's pgstac piece being written: lines of changed items (:meth:`add`) and runs
    of lines of the piece the last export wrote (:meth:`copy_old`), in the partition's order.

    ``old`` is that piece (None: everything is new), ``ids`` the item of each of its lines. Its
    lines are found by reading it in blocks; the id of every ``CHECK_EVERY``-th line is looked
    for, since a line added or removed by hand shifts all that follow (``Stale``).

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
                    raise Stale(ids[self.row + n] if self.row + n < len(ids) else "?")
                continue
            row = self.row + n
            if row % CHECK_EVERY == 0 and (row >= len(ids) or buf.find(b'"id":' + orjson.dumps(ids[row]), off, end) < 0):
                raise Stale(ids[row] if row < len(ids) else "?")
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


class Stale(Exception):
    """The old piece is not the one the state describes (edited or truncated by hand)."""


def pieces_root(project: Project, catalog_id: str) -> Path:
    """Where the pgstac pieces of a catalog's collections with ``pgstac: false`` live:
    ``.stacgit/exports/<catalog>/<collection>/`` (not published; the next export reuses their lines)."""
    return project.state_dir / "exports" / catalog_id


def piece_dirs(project: Project, coll: CollectionSpec) -> tuple[Path, Path]:
    """Where a collection's pgstac pieces are (published under ``build/`` unless its pgstac
    output is off), and the other place, which holds none."""
    published = project.build_dir / coll.catalog_id / pgstac_prefix(coll)
    private = pieces_root(project, coll.catalog_id) / coll.id
    return (published, private) if coll.pgstac else (private, published)


def pieces_dir(project: Project, coll: CollectionSpec) -> Path:
    return piece_dirs(project, coll)[0]


def pgstac_prefix(coll: CollectionSpec) -> str:
    return f"pgstac/{coll.id}/"


def piece_path(coll: CollectionSpec, part: str) -> str:
    """A published pgstac piece, relative to the catalog's build directory."""
    return f"{pgstac_prefix(coll)}{part}.ndjson"
