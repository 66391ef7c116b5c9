"""Further export formats (``stacgit.output_formats``) of one collection, in its export step:
each asked-for format's file of every partition whose items changed (or whose file is missing)
written whole, by a temporary file and a rename; files of partitions that are gone, or of
formats no longer asked for, removed."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from stacgit.state import outputs
from stacgit import output_formats as formats
from stacgit.exports.changes import member_rows
from stacgit.hashing import sha256_file
from stacgit.project import CollectionSpec

BUILT_IN_KINDS = ("item", "catalog", "root", "parquet", "pgstac")
"""Outputs that are not further formats."""


def further_outputs(con, key: tuple[str, str]) -> dict[str, str]:
    """Path -> format of the further-format files the state lists for a collection."""
    return outputs.further_outputs(con, key, BUILT_IN_KINDS)


def write_further(con, coll: CollectionSpec, out_dir: Path, tmp_dir: Path, parts: set[str], dirty: set[str], replaced: set[str],
                  config_changed: bool) -> tuple[list[tuple], list[str]]:
    """(path, sha256, size, format) of the files written, and the paths removed. A collection
    that asks for no further format has none to remove unless its export settings changed (a
    format dropped from ``outputs:``): it does not scan its outputs on every export."""
    if not coll.outputs and not config_changed:
        return [], []
    key = (coll.catalog_id, coll.id)
    known = further_outputs(con, key)
    written: list[tuple] = []
    current: set[str] = set()
    for name in coll.outputs:
        fmt = formats.get(name)
        for part in sorted(parts):
            rel = formats.part_path(name, coll.id, part)
            current.add(rel)
            if part not in dirty and rel in known and (out_dir / rel).is_file():
                continue
            tmp = tmp_dir / f"{coll.catalog_id}.{coll.id}.{name}.{part}.tmp"
            items = (orjson.loads((out_dir / m.path).read_bytes()) for m in member_rows(con, key, part, replaced))
            with open(tmp, "wb") as f:
                fmt.write(items, f)
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, out_dir / rel)
            written.append((rel, sha256_file(out_dir / rel), (out_dir / rel).stat().st_size, name))
    gone = sorted(set(known) - current)
    for rel in gone:
        remove(out_dir, rel)
    return written, gone


def remove(out_dir: Path, rel: str) -> None:
    """Remove a further-format file, and its folders when they are left empty."""
    (out_dir / rel).unlink(missing_ok=True)
    for folder in (out_dir / rel).parents:
        if folder == out_dir:
            break
        try:
            folder.rmdir()
        except OSError:
            break
