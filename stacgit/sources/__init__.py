"""Record sources: ``iter_records(path, display, format)`` streams
``(location, record | RecordError, raw_bytes | None)``.

A file that cannot be read at all (bad encoding, broken JSON) raises SourceError naming the
file and line. A single bad record (a CSV row with missing columns) is yielded as a
``RecordError`` in place of the record so the build can report it and go on.
"""

from stacgit.sources.files import LAZY, RecordError, iter_records, parse_lazy, read_columns

__all__ = ["LAZY", "RecordError", "iter_records", "parse_lazy", "read_columns"]
