"""Reading ahead: batches keep the caller's order, and a file that cannot be read comes back
as its error (the caller names it) instead of ending the walk."""

from __future__ import annotations

import pytest

from stacgit.fileio import read_ahead


def test_batches_keep_order_and_return_errors(tmp_path):
    paths = []
    for i in range(23):
        p = tmp_path / f"{i:02d}.json"
        if i != 7:
            p.write_bytes(b'{"n": %d}' % i)
        paths.append(p)
    batches = list(read_ahead(paths, str, batch=5, threads=3))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    flat = [x for b in batches for x in b]
    assert [p for p, _ in flat] == paths
    assert isinstance(flat[7][1], FileNotFoundError) and flat[7][1].filename == str(paths[7])
    assert [data for i, (_, data) in enumerate(flat) if i != 7] == [b'{"n": %d}' % i for i in range(23) if i != 7]
    assert list(read_ahead([], str, batch=5)) == []


def test_sorted_unique_sorts_in_runs_by_key_and_keeps_one_line_per_key(tmp_path):
    import random

    from stacgit.fileio import sorted_unique

    rng = random.Random(7)
    keys = [f"k{rng.randrange(400)}" for _ in range(1500)] + ["a", "a b", "a-b", "a.b", "ä", "Z"]
    lines = [(k, f'{{"n":{i}}}') for i, k in enumerate(keys)]
    src = tmp_path / "p.keyed"
    src.write_bytes(b"".join(f"{k}\t{v}\n".encode() for k, v in lines))
    scratch = tmp_path / "runs"
    scratch.mkdir()
    want: dict[str, str] = {}
    for k, v in lines:
        want[k] = max(want.get(k, v), v)  # of lines with one key, the greatest wins
    expected = [(k.encode(), want[k].encode() + b"\n") for k in sorted(want)]
    small = list(sorted_unique(src, scratch, run_bytes=2000))  # about 100 runs, merged
    assert small == expected
    assert list(sorted_unique(src, scratch)) == expected  # one run, in memory
    assert list(scratch.iterdir()) == []  # run files are removed
    src.write_bytes(b"b\tx\na\ty")  # no final line feed
    assert list(sorted_unique(src, scratch)) == [(b"a", b"y\n"), (b"b", b"x\n")]


def test_map_file_gives_the_bytes_and_will_need_is_only_a_hint(tmp_path):
    from stacgit.fileio import map_file, will_need

    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.write_bytes(b"")
    full.write_bytes(b"abc\n" * 1000)
    assert map_file(empty) == b"" and bytes(map_file(full)) == b"abc\n" * 1000
    will_need(full)
    will_need(tmp_path / "missing")  # nothing to read ahead: no error
    with pytest.raises(FileNotFoundError):
        map_file(tmp_path / "missing")
