"""Reading many small files fast, and sorting files larger than memory. Standard library only.

A built catalog is hundreds of thousands of small files. Read one after another from a cold
page cache (after a checkout, a CI cache restore, or another program's memory use) each costs
a few hundred microseconds of waiting; threads reading ahead overlap those waits with each
other and with the caller's work on the previous batch.

A snapshot partition can hold more items than fit in memory: ``sorted_unique`` sorts a file of
``key<TAB>payload`` lines in runs of bounded size and merges them.
"""

from __future__ import annotations

import heapq
import itertools
import mmap
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")

READERS = 8
"""Threads reading ahead."""

RUN_BYTES = 16 << 20
"""Bytes of lines sorted in memory at a time by ``sorted_unique``."""


def map_file(path: str | os.PathLike) -> bytes | mmap.mmap:
    """A file's bytes mapped in memory, not read into it: hashing them, or writing them out,
    reads the page cache directly (a large file read whole costs its size in fresh memory,
    slow to fault in on some VMs). The mapping closes when its last view is gone."""
    with open(path, "rb") as f:
        if not os.fstat(f.fileno()).st_size:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def pwrite_all(fd: int, data, offset: int) -> int:
    """Write all of ``data`` (bytes-like) at ``offset`` of ``fd``; returns its length."""
    with memoryview(data) as view:
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)
    return done


def will_need(path: str | os.PathLike) -> None:
    """Ask the kernel to start reading a file that is read whole soon (no-op where unsupported
    or missing): its pages come from disk while other work goes on, not one read-ahead window
    at a time as the reader gets to them."""
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)


def read_file(path: str) -> bytes | OSError:
    """The bytes of a file, or the error reading it (returned, so a caller can report it)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        return exc


def read_ahead(items: Iterable[T], path: Callable[[T], str | None], batch: int, threads: int = READERS) -> Iterator[list[tuple[T, bytes | OSError | None]]]:
    """Batches of ``batch`` (item, bytes of ``path(item)`` or the OSError reading it), in
    order; None for an item whose path is None (nothing to read). The files of the next
    batch are being read while the caller works on this one."""
    it = iter(items)
    return prefetch(iter(lambda: list(itertools.islice(it, batch)), []), path, threads)


def prefetch(batches: Iterable[list[T]], path: Callable[[T], str | None], threads: int = READERS) -> Iterator[list[tuple[T, bytes | OSError | None]]]:
    """Each batch as (item, bytes of ``path(item)`` or the OSError reading it; None when the
    path is None), in order; the next batch's files are being read while the caller works on
    this one."""
    with ThreadPoolExecutor(threads, thread_name_prefix="stacgit-read") as pool:
        ahead: tuple[list[T], list[Future | None]] | None = None
        for chunk in batches:
            reads = [None if (p := path(x)) is None else pool.submit(read_file, p) for x in chunk]
            if ahead is not None:
                yield [(x, None if r is None else r.result()) for x, r in zip(*ahead)]
            ahead = (chunk, reads)
        if ahead is not None:
            yield [(x, None if r is None else r.result()) for x, r in zip(*ahead)]


def sorted_unique(path: str | os.PathLike, scratch: str | os.PathLike, run_bytes: int | None = None) -> Iterator[tuple[bytes, bytes]]:
    """(key, payload) of a file of ``key<TAB>payload<LF>`` lines, in key order, one per key:
    of lines with the same key the greatest wins. Keys must not contain bytes below TAB
    (0x09) or TAB itself, so that sorting whole lines sorts by key. Memory holds about
    ``run_bytes`` (default ``RUN_BYTES``) of lines; larger files are sorted in runs written to
    ``scratch`` and merged. The payload keeps its line feed."""
    run_bytes = RUN_BYTES if run_bytes is None else run_bytes
    runs: list[str] = []
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.readlines(run_bytes)
                if not chunk:
                    break
                if not chunk[-1].endswith(b"\n"):
                    chunk[-1] += b"\n"
                chunk.sort()
                if not runs and not f.peek(1):  # the whole file fitted: no run files
                    yield from _unique(iter(chunk))
                    return
                fd, name = tempfile.mkstemp(dir=scratch, suffix=".run")
                runs.append(name)
                with os.fdopen(fd, "wb") as out:
                    out.writelines(chunk)
                del chunk
        handles = [open(name, "rb") for name in runs]
        try:
            yield from _unique(heapq.merge(*handles))
        finally:
            for h in handles:
                h.close()
    finally:
        for name in runs:
            os.unlink(name)


def _unique(lines: Iterator[bytes]) -> Iterator[tuple[bytes, bytes]]:
    prev_key = prev = None
    for line in lines:
        cut = line.index(b"\t")
        key = line[:cut]
        if key != prev_key and prev is not None:
            yield prev_key, prev[len(prev_key) + 1 :]
        prev_key, prev = key, line
    if prev is not None:
        yield prev_key, prev[len(prev_key) + 1 :]
