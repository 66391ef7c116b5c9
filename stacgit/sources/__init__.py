"""Record sources, and the registry of file formats.

A collection's ``source: {type: file, path: ..., format: ...}`` is read by a ``FileFormat``:
the built-in ones (``csv``, ``json``, ``ndjson``, ``parquet``, in ``sources.files``), one
registered in-process with ``register(cls)``, or one from an installed package under the
entry-point group ``stacgit.formats`` (``tsv = "package.module:TsvFormat"``), loaded only when a
collection names it or a file's suffix is no built-in one. ``iter_records`` and
``read_columns`` are what the build calls.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Iterator

from stacgit.errors import ConfigError, SourceError
from stacgit.sources.base import LAZY, FileFormat, RecordError
from stacgit.sources.files import BUILTIN, parse_lazy

ENTRY_POINT_GROUP = "stacgit.formats"

_FORMATS: dict[str, FileFormat] = {cls.name: cls() for cls in BUILTIN}
_PLUGINS_LOADED = False


def register(cls: type[FileFormat]) -> None:
    """Make a format available in this process (a plugin package uses the entry point)."""
    if not (isinstance(cls, type) and issubclass(cls, FileFormat) and cls.name):
        raise TypeError(f"{cls!r} is not a stacgit.sources.FileFormat subclass with a name")
    _FORMATS[cls.name] = cls()


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _FORMATS:
            continue
        try:
            cls = ep.load()
            register(cls)
        except Exception as exc:  # a broken plugin must not take stacgit down with a traceback
            raise ConfigError(f"source format '{ep.name}' ({ep.value}) failed to load: {type(exc).__name__}: {exc}") from None


def format_names() -> list[str]:
    _load_plugins()
    return sorted(_FORMATS)


def get_format(name: str) -> FileFormat:
    if name not in _FORMATS:
        _load_plugins()
    fmt = _FORMATS.get(name)
    if fmt is None:
        raise ConfigError(f"unknown source format {name!r} (one of {', '.join(format_names())})")
    return fmt


def format_for(path: str) -> str | None:
    """The format a file's name tells (its suffix), or None."""
    name = path.lower()
    for loaded in (False, True):
        if loaded:
            _load_plugins()
        for fmt in _FORMATS.values():
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
