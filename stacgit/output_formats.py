"""Further export formats, registered like source formats: a ``OutputFormat`` subclass writes
one partition of a collection's items (its GeoParquet partitions: year, year-month or one file)
to ``build/<catalog>/<name>/<collection>/<partition><suffix>``. A collection asks for it in
catalog.yaml (``outputs: [name]``); the export step rewrites a partition's file whole (temp
file and rename) when any of its items changed, and the manifest and ``publish`` carry it.

A package registers one under the entry-point group ``stacgit.outputs``
(``csv-lines = "mypkg.outputs:CsvLines"``); a script calls ``register(CsvLines)``.
GeoParquet and pgstac are not written through this protocol yet: they share one pass that
reuses the unchanged rows of the previous files (``stacgit.exports.partition``)."""

from __future__ import annotations

import importlib.metadata
from typing import BinaryIO, ClassVar, Iterator

from stacgit.errors import ConfigError

ENTRY_POINT_GROUP = "stacgit.outputs"


class OutputFormat:
    """``name`` (what ``outputs:`` says, and the folder under ``build/<catalog>/``), ``suffix``
    and ``media_type`` (what ``publish`` sends it as); ``version``: bump it when the same items
    give other bytes (every partition is written again)."""

    name: ClassVar[str] = ""
    suffix: ClassVar[str] = ""
    media_type: ClassVar[str] = ""
    version: ClassVar[str] = "1"

    def write(self, items: Iterator[dict], out: BinaryIO) -> None:
        """Write the partition's items (STAC item dicts, by datetime then id) to ``out``."""
        raise NotImplementedError


_FORMATS: dict[str, OutputFormat] = {}
_PLUGINS_LOADED = False


def register(cls: type[OutputFormat]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, OutputFormat) and cls.name and cls.suffix and cls.media_type):
        raise TypeError(f"{cls!r} is not a stacgit OutputFormat subclass with a name, suffix and media type")
    _FORMATS[cls.name] = cls()


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _FORMATS:
            try:
                register(ep.load())
            except Exception as exc:  # a broken plugin must not take stacgit down with a traceback
                raise ConfigError(f"output format '{ep.name}' ({ep.value}) failed to load: {type(exc).__name__}: {exc}") from None


def names() -> list[str]:
    _load_plugins()
    return sorted(_FORMATS)


def get(name: str) -> OutputFormat:
    if name not in _FORMATS:
        _load_plugins()
    try:
        return _FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown output format {name!r} (one of {', '.join(names()) or 'none registered'})") from None


def for_path(rel: str) -> OutputFormat | None:
    """The registered format a built file belongs to (``<name>/<collection>/<partition><suffix>``)."""
    head = rel.split("/", 1)[0]
    fmt = _FORMATS.get(head)
    return fmt if fmt is not None and rel.endswith(fmt.suffix) else None


def part_path(name: str, collection: str, part: str) -> str:
    return f"{name}/{collection}/{part}{get(name).suffix}"
