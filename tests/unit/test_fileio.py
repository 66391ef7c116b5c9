"""Reading ahead: batches keep the caller's order, and a file that cannot be read comes back
as its error (the caller names it) instead of ending the walk."""

from __future__ import annotations

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
