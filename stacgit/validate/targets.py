"""What ``stacgit validate`` looks at: files, folders and catalog trees, read in batches and
validated in a process pool."""

from __future__ import annotations

import contextlib
import itertools
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import orjson

from stacgit.extensions import Problem
from stacgit.fileio import read_ahead, read_file
from stacgit.validate.core import DocResult, Validator

PARALLEL_MIN = 2000
"""Fewer target files than this are validated in this process (a pool costs more)."""
READ_BATCH = 256
"""Files read ahead at a time."""
from stacgit.validate.report import ValidationReport


@dataclass(frozen=True)
class Target:
    """One file to validate: its path on disk, its path inside a tree (for link checks), the
    tree root, and custom schemas that apply to it."""

    file: str
    rel: str | None = None
    root: str | None = None
    extra: tuple[str, ...] = ()


def read_documents(file: str, data: bytes | OSError | None = None) -> Iterator[tuple[str, dict | None, str | None]]:
    """(location, document, error) of a .json file (one document, or a FeatureCollection's
    features) or an .ndjson file (one per line); ``data``: its bytes, when already read."""
    if data is None:
        data = read_file(file)
    if isinstance(data, OSError):
        yield file, None, f"cannot read: {data.strerror}"
        return
    if file.endswith((".ndjson", ".jsonl")):
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield f"{file}:{n}", None, f"not valid JSON: {exc}"
                continue
            yield f"{file}:{n}", doc, None if isinstance(doc, dict) else "not a JSON object"
        return
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        yield file, None, f"not valid JSON: {exc}"
        return
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
        for i, feat in enumerate(doc["features"]):
            yield f"{file}#/features/{i}", feat, None if isinstance(feat, dict) else "not a JSON object"
        return
    yield file, doc, None if isinstance(doc, dict) else "not a JSON object"


@dataclass(frozen=True)
class Subtree:
    """A directory of a tree, walked (sorted, like :func:`collect_targets`) by the worker that
    validates its files, so a large tree is listed in parallel and never held as one list."""

    dir: str
    root: str
    tree: bool = True  # a STAC tree (a catalog.json or collection.json at its root): links are checked against it


_DOC_SUFFIXES = (".json", ".geojson", ".ndjson", ".jsonl")


def _listing(d: str) -> tuple[list[str], list[str]]:
    """Sorted (document file names, sub-directory names) of a directory."""
    files: list[str] = []
    dirs: list[str] = []
    try:
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    if not e.name.startswith("."):
                        dirs.append(e.name)
                elif e.name.endswith(_DOC_SUFFIXES) and e.name != "manifest.json":
                    files.append(e.name)
    except OSError:
        pass
    files.sort()
    dirs.sort()
    return files, dirs


def _target(d: str, name: str, root: str, tree: bool = True) -> Target:
    full = os.path.join(d, name)
    rel = full[len(root) + 1 :] if full.startswith(root + os.sep) else os.path.relpath(full, root)
    return Target(full, rel.replace(os.sep, "/"), root if tree else None)


def walk_targets(sub: Subtree) -> Iterator[Target]:
    """The files of a subtree in order: a directory's files, then its sub-directories."""
    stack = [sub.dir]
    while stack:
        d = stack.pop()
        files, dirs = _listing(d)
        for f in files:
            yield _target(d, f, sub.root, sub.tree)
        stack += [os.path.join(d, x) for x in reversed(dirs)]


def _file_of(t: Target) -> str:
    return t.file


def _validate_chunk(args: tuple) -> tuple[ValidationReport, list, list]:
    validator, units, keep, identities = args
    report = ValidationReport()
    idents: list[tuple] = []
    kept: list[tuple] = []
    targets = itertools.chain.from_iterable(walk_targets(u) if isinstance(u, Subtree) else (u,) for u in units)
    for batch in read_ahead(targets, _file_of, READ_BATCH):
        for t, data in batch:
            for loc, doc, error in read_documents(t.file, data):
                if doc is None:
                    result = DocResult("invalid", [Problem("json", error or "unreadable", "")])
                    report.add(None, loc, result)
                    continue
                result = validator.check(doc, t.extra, t.rel, t.root)
                item_id = doc.get("id") if isinstance(doc.get("id"), str) else None
                report.add(item_id, loc, result)
                if identities and doc.get("type") == "Feature":
                    idents.append((doc.get("collection"), item_id, loc, result.status))
                if keep:
                    kept.append((t.file, result.status, result.to_row(), result.schemas))
    return report, idents, kept


def _chunks(units: list, jobs: int) -> list[list]:
    """Consecutive runs of units, about ``jobs * 8`` of them; a subtree counts as many files."""
    weight = lambda u: PARALLEL_MIN // 4 if isinstance(u, Subtree) else 1  # noqa: E731
    total = sum(weight(u) for u in units)
    size = max(500, total // (jobs * 8))
    out: list[list] = [[]]
    filled = 0
    for u in units:
        if filled >= size:
            out.append([])
            filled = 0
        out[-1].append(u)
        filled += weight(u)
    return [c for c in out if c]


def validate_targets(
    validator: Validator, targets: list[Target | Subtree], jobs: int = 1, keep: bool = False, identities: bool = True, pool: ProcessPoolExecutor | None = None
) -> tuple[ValidationReport, list]:
    """Validate files and subtrees (in ``jobs`` processes when there are many; in ``pool``
    when given). Returns the report and, with ``keep``, (file, status, result row, schema
    urls) for every document. ``identities`` reports an item id seen twice in a collection
    (callers whose ids are unique by construction skip that table of every id)."""
    if jobs <= 1 or (len(targets) < PARALLEL_MIN and not any(isinstance(t, Subtree) for t in targets)):
        parts = [_validate_chunk((validator, targets, keep, identities))]
    else:
        work = [(validator, c, keep, identities) for c in _chunks(targets, jobs)]
        with contextlib.nullcontext(pool) if pool is not None else ProcessPoolExecutor(max_workers=jobs) as workers:
            parts = list(workers.map(_validate_chunk, work))
    report = ValidationReport()
    kept: list = []
    for part, idents, rows in parts:
        report.merge(part)
        kept += rows
        for coll, item_id, loc, status in idents:
            report.add_identity(coll, item_id, loc, status)
    return report, kept


def _split(root: str, want: int, tree: bool = True) -> list[Target | Subtree]:
    """A tree as files and subtrees in walk order: directories are opened level by level
    until there are ``want`` subtrees to hand out, or none left. A tree with fewer than
    ``PARALLEL_MIN`` files comes back as its files (validated in this process)."""
    small = list(itertools.islice(walk_targets(Subtree(root, root, tree)), PARALLEL_MIN))
    if len(small) < PARALLEL_MIN:
        return small  # type: ignore[return-value]
    units: list[Target | Subtree] = [Subtree(root, root, tree)]
    while 0 < sum(isinstance(u, Subtree) for u in units) < want:
        opened: list[Target | Subtree] = []
        for u in units:
            if isinstance(u, Subtree):
                files, dirs = _listing(u.dir)
                opened += [_target(u.dir, f, root, tree) for f in files]
                opened += [Subtree(os.path.join(u.dir, d), root, tree) for d in dirs]
            else:
                opened.append(u)
        units = opened
    return units


def collect_targets(paths: list[str], jobs: int = 1) -> list[Target | Subtree]:
    """Files and subtrees of the given paths, in sorted walk order (JSON/NDJSON only). With
    ``jobs`` > 1, a large directory is handed out as subtrees the workers walk themselves."""
    out: list[Target | Subtree] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            root = str(path).rstrip(os.sep) or os.sep
            tree = any((path / name).is_file() for name in ("catalog.json", "collection.json"))  # else loose files
            if jobs <= 1:
                out += walk_targets(Subtree(root, root, tree))
            else:
                out += _split(root, jobs * 16, tree)
        else:
            out.append(Target(str(path)))
    return out
