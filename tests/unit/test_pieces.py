"""The pgstac piece writer: lines copied from the previous piece and new lines, in a new file
or in the old file itself, give exactly the bytes of the piece written from scratch."""

from __future__ import annotations

import hashlib
import random

import orjson
import pytest

from stacgit.exports import pgstac as exports


def _line(item_id: str, rnd: random.Random) -> bytes:
    return orjson.dumps({"id": item_id, "pad": "x" * rnd.choice([0, 1, 5, 40, 300])}) + b"\n"


def _plan(rnd: random.Random, n_old: int):
    """Old lines, and the steps of a rewrite: ("old", first, count) and ("new", line), with the
    bytes the new piece must have."""
    ids = [f"i{k}" for k in range(n_old)]
    old = [_line(i, rnd) for i in ids]
    steps: list[tuple] = []
    expected: list[bytes] = []
    row = 0
    while row < n_old or rnd.random() < 0.3:
        r = rnd.random()
        if r < 0.25 or row >= n_old:  # new lines here (more than the old ones: the piece grows)
            for _ in range(rnd.choice([1, 1, 2, 8])):
                line = _line(f"new{len(steps)}", rnd)
                steps.append(("new", line))
                expected.append(line)
            if row >= n_old:
                break
        elif r < 0.4:  # old lines left out
            row += rnd.randint(1, 4)
        else:  # a run of old lines
            count = min(rnd.randint(1, 12), n_old - row)
            steps.append(("old", row, count))
            expected += old[row : row + count]
            row += count
    return ids, old, steps, b"".join(expected)


@pytest.mark.parametrize("in_place", [True, False])
def test_a_rewritten_piece_has_the_bytes_of_one_written_from_scratch(tmp_path, monkeypatch, in_place):
    monkeypatch.setattr(exports, "CHECK_EVERY", 1)
    rnd = random.Random(7)
    for case in range(300):
        monkeypatch.setattr(exports, "READ", rnd.choice([1, 2, 7, 64, 1000, 1 << 20]))  # block edges everywhere
        ids, old, steps, expected = _plan(rnd, rnd.choice([0, 1, 3, 20, 120]))
        path = tmp_path / f"{case}.ndjson"
        path.write_bytes(b"".join(old))
        target = path if in_place else tmp_path / f"{case}.new"
        piece = exports.Piece(target, True, old=path, ids=ids)
        at = 0
        for step in steps:
            assert piece.tell() == at  # the offsets recorded for the change feed
            if step[0] == "new":
                piece.add(step[1])
                at += len(step[1])
            else:
                piece.copy_old(step[1], step[2])
                at += sum(map(len, old[step[1] : step[1] + step[2]]))
        sha, size = piece.finish()
        assert target.read_bytes() == expected, case
        assert (sha, size) == (hashlib.sha256(expected).hexdigest(), len(expected))


def test_a_piece_edited_by_hand_is_noticed(tmp_path, monkeypatch):
    monkeypatch.setattr(exports, "READ", 16)
    ids = [f"i{k}" for k in range(40)]
    lines = [orjson.dumps({"id": i}) + b"\n" for i in ids]
    path = tmp_path / "p.ndjson"
    path.write_bytes(b"".join([*lines[:30], lines[31], lines[30], *lines[32:]]))  # two lines swapped
    piece = exports.Piece(path, False, old=path, ids=ids)
    piece.copy_old(0, 29)  # the checked lines (every 32nd) are still in place
    with pytest.raises(exports.Stale):
        monkeypatch.setattr(exports, "CHECK_EVERY", 1)
        piece.copy_old(29, 5)
    piece.close()
    path.write_bytes(b"".join(lines[:-1]))  # a line cut off: the old piece ends too soon
    piece = exports.Piece(tmp_path / "new", False, old=path, ids=ids)
    with pytest.raises(exports.Stale):
        piece.copy_old(0, 40)
    piece.close()


def test_new_pieces_are_written_from_scratch(tmp_path):
    piece = exports.Piece(tmp_path / "p.ndjson", True)
    lines = [orjson.dumps({"id": str(k)}) + b"\n" for k in range(1000)]
    for line in lines:
        piece.add(line)
    assert piece.finish() == (hashlib.sha256(b"".join(lines)).hexdigest(), sum(map(len, lines)))
    assert (tmp_path / "p.ndjson").read_bytes() == b"".join(lines)
