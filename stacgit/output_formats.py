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

from typing import BinaryIO, ClassVar, Iterator

from stacgit._registry import Registry

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


_REGISTRY: Registry[OutputFormat] = Registry("output format", ENTRY_POINT_GROUP, OutputFormat, ("name", "suffix", "media_type"))
register, names, get = _REGISTRY.register, _REGISTRY.names, _REGISTRY.get


def for_path(rel: str) -> OutputFormat | None:
    """The registered format a built file belongs to (``<name>/<collection>/<partition><suffix>``)."""
    head = rel.split("/", 1)[0]
    fmt = _REGISTRY.find(head)
    return fmt if fmt is not None and rel.endswith(fmt.suffix) else None


def part_path(name: str, collection: str, part: str) -> str:
    return f"{name}/{collection}/{part}{get(name).suffix}"
