"""Record sources, and the registry of file formats.

A collection's ``source: {type: file, path: ..., format: ...}`` is read by a ``FileFormat``:
the built-in ones (``csv``, ``json``, ``ndjson``, ``parquet``, in ``sources.files``), one
registered in-process with ``register(cls)``, or one from an installed package under the
entry-point group ``stacgit.formats`` (``tsv = "package.module:TsvFormat"``), loaded only when a
collection names it or a file's suffix is no built-in one. ``iter_records`` and
``read_columns`` are what the build calls.
"""

from __future__ import annotations

import os
from typing import Iterator

from stacgit._registry import Registry
from stacgit.errors import SourceError
from stacgit.sources.base import LAZY, FileFormat, RecordError
from stacgit.sources.files import BUILTIN, parse_lazy

ENTRY_POINT_GROUP = "stacgit.formats"

_REGISTRY: Registry[FileFormat] = Registry("source format", ENTRY_POINT_GROUP, FileFormat, builtin=BUILTIN)
register, format_names, get_format = _REGISTRY.register, _REGISTRY.names, _REGISTRY.get


def format_for(path: str) -> str | None:
    """The format a file's name tells (its suffix), or None."""
    name = path.lower()
    for with_plugins in (False, True):
        for fmt in _REGISTRY.loaded(with_plugins):
            if name.endswith(fmt.suffixes):
                return fmt.name
    return None


def iter_records(path: str, display: str, fmt: str, delimiter: str = ",", lazy: bool = False) -> Iterator[tuple]:
    """Yield ``(location, record | RecordError, raw_bytes | None)`` for every record.

    ``lazy``: NDJSON lines are not parsed; their record is ``LAZY`` and ``parse_lazy(loc, raw,
    display)`` parses one when needed (a build reusing most records hashes lines, not JSON)."""
    if not os.path.isfile(path):
        raise SourceError(f"{display}: source file does not exist")
    return get_format(fmt).iter_records(path, display, delimiter=delimiter, lazy=lazy)


def read_columns(path: str, display: str, fmt: str, delimiter: str = ",") -> list[str] | None:
    """The columns every record of the file has (see ``FileFormat.columns``)."""
    return get_format(fmt).columns(path, display, delimiter=delimiter)


__all__ = ["ENTRY_POINT_GROUP", "LAZY", "FileFormat", "RecordError", "format_for", "format_names", "get_format",
           "iter_records", "parse_lazy", "read_columns", "register"]
