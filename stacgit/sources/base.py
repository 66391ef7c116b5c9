"""What a file format of records is: the protocol the built-in formats and plugins implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator


@dataclass(frozen=True)
class RecordError:
    """A record that could not be read; reported with its location and skipped."""

    reason: str


LAZY = object()
"""Placeholder record of a lazily read NDJSON line; ``parse_lazy`` turns it into a record."""


class FileFormat:
    """A format of source files. Subclasses set ``name`` (what ``source.format`` says) and
    ``suffixes`` (how a file's name tells it), and implement ``iter_records``.

    ``iter_records`` yields ``(location, record | RecordError, raw bytes | None)``: the location
    names the record in messages (``"line 12"`` reads as ``file:12``, anything else as
    ``file (row 3)``); the raw bytes, when given, are what the record's digest is taken of
    (otherwise its canonical JSON). A file that cannot be read at all raises ``SourceError``
    naming the file and line; a single bad record is yielded as a ``RecordError``."""

    name: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()

    def iter_records(self, path: str, display: str, *, delimiter: str = ",", lazy: bool = False) -> Iterator[tuple[str, Any, bytes | None]]:
        raise NotImplementedError

    def columns(self, path: str, display: str, *, delimiter: str = ",") -> list[str] | None:
        """The fields every record of the file has (a CSV header), or None when records need
        not share fields; a mapping's fields are checked against them before any is read."""
        return None
