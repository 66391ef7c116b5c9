"""Writing a snapshot's partition files: items sorted on disk in bounded runs and merged, each
partition compared with its previous file line by line while it is written, so that a refresh
parses only the lines that differ and an unchanged upstream leaves the files untouched."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


from stacgit.errors import SourceError
from stacgit.fileio import sorted_unique
from stacgit.snapshot.items import CollectionReport


class Spool:
    """Per-partition files of ``key<TAB>line`` lines, appended to in any order."""

    def __init__(self, root: Path):
        self.root = root
        self.handles: dict[str, object] = {}

    def add(self, name: str, keyed: bytes) -> None:
        h = self.handles.get(name)
        if h is None:
            h = self.handles[name] = open(self.root / f"{name}.keyed", "wb")
        h.write(keyed)

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles.values():
            h.close()


def write_partitions(spool: Path, out_dir: Path, report: CollectionReport, key_of) -> dict[str, dict]:
    """Write ``out_dir/<name>.ndjson`` for each ``spool/<name>.keyed`` (lines sorted by key,
    one per key), remove partitions that are no longer there, and count records, added,
    changed and removed against the files already there. Returns ``{name: {"items", "sha256"}}``.

    Memory does not grow with the partition: the keyed lines are sorted on disk
    (``fileio.sorted_unique``), and the previous file is compared while the new one is
    written, line by line (``key_of(line)`` parses a previous line only where the two differ).
    An unchanged partition keeps its file untouched."""
    out_dir.mkdir(parents=True, exist_ok=True)
    old = {p.stem: p for p in out_dir.glob("*.ndjson")}
    new = {p.stem: p for p in spool.glob("*.keyed")}
    scratch = spool / "runs"
    scratch.mkdir(exist_ok=True)
    partitions: dict[str, dict] = {}
    gone: set[bytes] = set()  # keys that left a partition; memory follows the change, not the snapshot
    entered: set[bytes] = set()  # keys that entered a partition
    temps: list[Path] = []
    moves: list[tuple[Path, Path | None]] = []  # (file, its new name; None: delete it), applied at the end
    try:
        for name in sorted(set(old) | set(new)):
            target = out_dir / f"{name}.ndjson"
            rows = sorted_unique(new[name], scratch) if name in new else iter(())
            tmp = target.with_name(f".{target.name}.tmp")
            temps.append(tmp)
            digest, count = hashlib.sha256(), 0
            cmp = _Compare(old.get(name), key_of, remember=bool(old))  # on a first snapshot everything is new
            try:
                with open(tmp, "wb") as out:
                    for key, line in rows:
                        out.write(line)
                        digest.update(line)
                        count += 1
                        cmp.take(key, line)
                cmp.finish()
            finally:
                cmp.close()
            report.records += count
            report.changed += cmp.changed
            gone.update(cmp.gone)
            entered.update(cmp.added)
            if not old:
                report.added += cmp.n_added
            if count == 0 or cmp.same:
                moves.append((tmp, None))
            else:
                moves.append((tmp, target))
            if count == 0:
                moves.append((target, None))
            if count:
                partitions[name] = {"items": count, "sha256": digest.hexdigest()}
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    for path, target in moves:  # every partition is ready: now change the files
        if target is None:
            path.unlink(missing_ok=True)
        else:
            os.replace(path, target)
    moved = gone & entered  # e.g. an item whose datetime moved it to another month: changed, not added/removed
    report.added += len(entered - moved)
    report.removed, report.changed = len(gone - moved), report.changed + len(moved)
    return partitions


class _Compare:
    """Walks a partition's previous file alongside the new sorted lines."""

    def __init__(self, path: Path | None, key_of, remember: bool):
        self.key_of = key_of
        self.remember = remember  # keep the added keys (to tell moves from additions), or only count them
        self.n_added = 0
        self.f = open(path, "rb") if path is not None else None
        self.same = path is not None
        self.changed = 0
        self.added: list[bytes] = []
        self.gone: list[bytes] = []
        self.prev_key: bytes | None = None
        self.lineno = 0
        self._next_old()

    def _next_old(self) -> None:
        line = self.f.readline() if self.f is not None else b""
        self.lineno += 1
        if line and not line.endswith(b"\n"):
            line += b"\n"
        self.old, self.old_key = line, None

    def _old_key(self) -> bytes:
        if self.old_key is None:
            try:
                self.old_key = self.key_of(self.old)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise SourceError(f"{self.f.name}:{self.lineno}: not a record of this snapshot ({exc}); restore the file from git or remove it and snapshot again") from None
            if self.prev_key is not None and self.old_key < self.prev_key:
                raise SourceError(f"{self.f.name}:{self.lineno}: lines are not sorted by id; restore the file from git or remove it and snapshot again")
        return self.old_key

    def _pass_old(self, key: bytes) -> None:
        self.prev_key = key
        self._next_old()

    def take(self, key: bytes, line: bytes) -> None:
        while True:
            if not self.old:
                self._add(key)
                return
            if self.old == line:  # the same bytes: the same key
                self._pass_old(key)
                return
            self.same = False
            old_key = self._old_key()
            if old_key == key:
                self.changed += 1
                self._pass_old(key)
                return
            if old_key > key:
                self._add(key)
                return
            self.gone.append(old_key)
            self._pass_old(old_key)

    def _add(self, key: bytes) -> None:
        self.same = False
        self.n_added += 1
        if self.remember:
            self.added.append(key)

    def finish(self) -> None:
        while self.old:
            self.same = False
            self.gone.append(self._old_key())
            self._pass_old(self.old_key)

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


def write_if_changed(path: Path, data: bytes) -> None:
    """Write atomically, and only when the bytes differ: an unchanged snapshot keeps its files."""
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
