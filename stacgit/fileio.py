"""Reading many small files fast. Standard library only.

A built catalog is hundreds of thousands of small files. Read one after another from a cold
page cache (after a checkout, a CI cache restore, or another program's memory use) each costs
a few hundred microseconds of waiting; threads reading ahead overlap those waits with each
other and with the caller's work on the previous batch.
"""

from __future__ import annotations

import itertools
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")

READERS = 8
"""Threads reading ahead."""


def read_file(path: str) -> bytes | OSError:
    """The bytes of a file, or the error reading it (returned, so a caller can report it)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        return exc


def read_ahead(items: Iterable[T], path: Callable[[T], str], batch: int, threads: int = READERS) -> Iterator[list[tuple[T, bytes | OSError]]]:
    """Batches of ``batch`` (item, bytes of ``path(item)`` or the OSError reading it), in
    order. The files of the next batch are being read while the caller works on this one."""
    it = iter(items)
    with ThreadPoolExecutor(threads, thread_name_prefix="stacgit-read") as pool:
        ahead: tuple[list[T], list[Future]] | None = None
        while True:
            chunk = list(itertools.islice(it, batch))
            reads = [pool.submit(read_file, path(x)) for x in chunk]
            if ahead is not None:
                yield [(x, r.result()) for x, r in zip(*ahead)]
            if not chunk:
                return
            ahead = (chunk, reads)
