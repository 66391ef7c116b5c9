"""Item rendering: splicing links into cached bytes must equal parsing and re-serialising."""

from __future__ import annotations

import copy

import orjson
import pytest

from stacgit.hashing import pretty_json
from stacgit.writers import AtomicWriter, splice_links, structural_links

BODIES = [
    {"type": "Feature", "id": "a", "links": [], "assets": {}, "properties": {"datetime": "2020-01-01T00:00:00Z"}},
    {"id": "b", "links": [{"rel": "license", "href": "https://x/y", "type": "text/html"}], "properties": {}},
    {  # strings that look like the links key, nested "links" arrays, non-ASCII text
        "id": "c",
        "assets": {"x": {"href": 'a\n  "links": [', "title": "Été \u2013 \"quoted\"", "links": [{"rel": "self", "href": "z"}]}},
        "links": [{"rel": "via", "href": "https://example.com/ü"}],
        "properties": {"links": []},
    },
]
PATHS = [
    ("coll/2020/01/05/a/a.json", "coll/2020/01/05/catalog.json"),
    ("coll/a/a.json", "coll/collection.json"),
    ("coll/h3/a.json", "coll/h3/catalog.json"),  # item_path "{id}.json": the item sits beside its parent
]


@pytest.mark.parametrize("body", BODIES, ids=["empty-links", "one-link", "tricky"])
@pytest.mark.parametrize("path,parent", PATHS)
def test_splice_equals_render(body, path, parent):
    doc = copy.deepcopy(body)  # the item file by definition: structural links first, then the body's own
    doc["links"] = structural_links(path, "catalog.json", parent, "coll/collection.json") + doc["links"]
    want = pretty_json(doc)
    got = splice_links(pretty_json(body), path, "catalog.json", parent, "coll/collection.json")
    assert got == want


def test_splice_needs_a_links_array():
    with pytest.raises(ValueError, match="no top-level links"):
        splice_links(pretty_json({"id": "a"}), "c/a/a.json", "catalog.json", "c/collection.json", "c/collection.json")


def test_fresh_write_never_clobbers_silently(tmp_path):
    w = AtomicWriter(tmp_path / "out", tmp_path / "tmp")
    w.write("a/b.json", b"one", fresh=True)
    assert (tmp_path / "out/a/b.json").read_bytes() == b"one"
    w.write("a/b.json", b"two", fresh=True)  # exists after all: replaced via temp + rename
    assert (tmp_path / "out/a/b.json").read_bytes() == b"two"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_manifest_from_fragments_equals_pretty_json_of_the_dict(tmp_path):
    """The manifest is assembled from per-collection fragments (items and catalogs), the
    collections' GeoParquet entries and the pgstac entries from the state; it must equal
    pretty_json of the same dict, also when a fragment file is stale or missing."""
    import random
    from types import SimpleNamespace

    from stacgit import state as st
    from stacgit.engine.manifest import manifest_parts as _manifest, save_fragment

    con = st.connect(tmp_path)
    project = SimpleNamespace(state_dir=tmp_path)
    colls = ["a", "a-b", "b", "Z", "日本", "c~1"]
    names = ["x.json", "é/é.json", "q\"q/1.json", "%20.json", "zz/catalog.json"]
    rng = random.Random(3)
    rows = [("t", f"{c}/{n}", c, None, "item", None, f"{rng.getrandbits(256):064x}", rng.randrange(10**6), None) for c in colls for n in names]
    rows += [("t", f"{c}/parquet/{y}.parquet", c, None, "parquet", None, f"{rng.getrandbits(256):064x}", rng.randrange(10**6), None) for c in colls[::2] for y in (2021, 2022)]
    rows += [("t", f"pgstac/{c}/{y}.ndjson", c, None, "pgstac", None, f"{rng.getrandbits(256):064x}", rng.randrange(10**6), None) for c in colls[1::2] for y in (2021, 2022)]
    con.executemany("INSERT INTO outputs VALUES (?,?,?,?,?,?,?,?,?)", rows)
    con.executemany("INSERT INTO aggregates VALUES (?,?,?,?,?,?)", [("t", c, "d", None, None, None) for c in colls])
    cat = SimpleNamespace(id="t", collections=[SimpleNamespace(id=c, outputs=()) for c in colls])
    root = ("f" * 64, 123)
    files = {r[1]: {"sha256": r[6], "size": r[7]} for r in rows}
    files["catalog.json"] = {"sha256": root[0], "size": root[1]}
    want = pretty_json({"catalog": "t", "files": files, "version": 1})
    assert b"".join(_manifest(project, con, cat, root)) == want  # no fragments saved yet: from SQL
    for c in colls:
        save_fragment(project, con, "t", c)
    assert b"parquet" not in (tmp_path / "fragments" / "t" / "a.part").read_bytes()  # the export task does not rewrite it
    assert b"".join(_manifest(project, con, cat, root)) == want
    (tmp_path / "fragments" / "t" / "b.part").write_bytes(b"stale")
    (tmp_path / "fragments" / "t" / "a.part").unlink()
    assert b"".join(_manifest(project, con, cat, root)) == want
    # a fragment updated with a task's changes equals the one read again from SQL
    from stacgit.engine.manifest import fragment_of as _fragment, fragment_digest

    for c in colls:
        save_fragment(project, con, "t", c)
    for step in range(6):
        c = rng.choice(colls)
        prior = fragment_digest(con, "t", c)
        paths = [r[0] for r in con.execute("SELECT path FROM outputs WHERE catalog='t' AND collection=? AND kind='item'", (c,))]
        changes = {p: None for p in rng.sample(paths, min(2, len(paths)))}  # deleted
        changes.update({p: (f"{rng.getrandbits(256):064x}", rng.randrange(10**6)) for p in rng.sample(paths, min(2, len(paths)))})  # rewritten
        changes.update({f"{c}/{n}{step}": ("0" * 64, step) for n in ("new.json", "\"q\": {\n.json", "ü/x.json", "0.json")})  # added
        for p, v in changes.items():
            if v is None:
                con.execute("DELETE FROM outputs WHERE catalog='t' AND path=?", (p,))
            else:
                con.execute("INSERT OR REPLACE INTO outputs VALUES ('t',?,?,NULL,'item',NULL,?,?,NULL)", (p, c, *v))
        data = save_fragment(project, con, "t", c, prior=prior, changes=changes)
        assert data == _fragment(con, "t", c)
        assert (tmp_path / "fragments" / "t" / f"{c}.part").read_bytes() == data
    files = {r[0]: {"sha256": r[1], "size": r[2]} for r in con.execute("SELECT path, sha256, size FROM outputs WHERE catalog='t'")}
    files["catalog.json"] = {"sha256": root[0], "size": root[1]}
    assert b"".join(_manifest(project, con, cat, root)) == pretty_json({"catalog": "t", "files": files, "version": 1})
    (tmp_path / "fragments" / "t" / "a.part").write_bytes(b"\n    garbage")  # not the fragment the state describes: SQL
    assert save_fragment(project, con, "t", "a", prior=fragment_digest(con, "t", "a"), changes={}) == _fragment(con, "t", "a")
    empty = SimpleNamespace(id="e", collections=[])
    assert b"".join(_manifest(project, con, empty, root)) == pretty_json({"catalog": "e", "files": {"catalog.json": {"sha256": root[0], "size": root[1]}}, "version": 1})


def test_same_content_compares_parts_with_the_file(tmp_path):
    """A large file written from parts is compared part by part through a 1 MiB buffer."""
    from stacgit.writers import AtomicWriter, same_content

    big = bytes(range(256)) * 9000  # crosses the buffer's boundary
    parts = [b"{", big, memoryview(b"tail,")[:-1]]
    AtomicWriter(tmp_path / "out", tmp_path / "tmp").write("m.json", parts)
    path = tmp_path / "out" / "m.json"
    assert path.read_bytes() == b"{" + big + b"tail"
    assert same_content(path, parts)
    assert same_content(path, [path.read_bytes()])
    assert not same_content(path, [b"{", big, b"tall"])  # same size, last byte differs
    changed = bytearray(big)
    changed[(1 << 20) + 5] ^= 1  # in the second buffer
    assert not same_content(path, [b"{", bytes(changed), b"tail"])
    assert not same_content(path, [b"{", big, b"tail!"])  # longer
    assert not same_content(tmp_path / "missing.json", [b""])


def test_merge_fragment_equals_the_fragment_written_again():
    """A fragment merged with changes (binary searches in the old bytes) equals the fragment
    written from the resulting entries: paths with quotes, newlines, non-ASCII and astral
    characters, changes before, between and after the old entries. The parts the manifest is
    written from are the same bytes, with views of the old fragment in them."""
    import random

    from stacgit.engine.manifest import ENTRY as _ENTRY, fragment_parts, merge_fragment

    def fragment(entries: dict) -> bytes:
        return b"".join(_ENTRY % (orjson.dumps(p), v[0].encode(), v[1]) for p, v in sorted(entries.items()))

    rng = random.Random(7)
    alphabet = ["a", "b", "/", "é", "z", "0", "\U0001f600", "\n", '"', " ", "~"]

    def path() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))

    for _ in range(2000):
        entries = {path(): ("s" * rng.randint(1, 3), rng.randrange(100)) for _ in range(rng.randint(0, 40))}
        changes = {}
        for _ in range(rng.randint(0, 10)):
            p = rng.choice(sorted(entries)) if entries and rng.random() < 0.5 else path()
            changes[p] = None if rng.random() < 0.3 else ("x", rng.randrange(100))
        want = dict(entries)
        for p, v in changes.items():
            if v is None:
                want.pop(p, None)
            else:
                want[p] = v
        old = fragment(entries)
        assert merge_fragment(old, changes) == fragment(want), (entries, changes)
        assert b"".join(bytes(p) for p in fragment_parts(old, changes)) == fragment(want)
    with pytest.raises(ValueError):
        merge_fragment(b"garbage", {})


def test_overwrite_leaves_exactly_the_parts(tmp_path):
    writer = AtomicWriter(tmp_path / "out", tmp_path / "tmp")
    target = tmp_path / "out" / "manifest.json"
    writer.overwrite("manifest.json", [b"abc", memoryview(b"defgh")[1:]])  # a new file
    assert target.read_bytes() == b"abcefgh"
    writer.overwrite("manifest.json", [b"x" * 100_000, b"y"])  # longer
    assert target.read_bytes() == b"x" * 100_000 + b"y"
    writer.overwrite("manifest.json", [b"z", b""])  # shorter: the rest is cut off
    assert target.read_bytes() == b"z"
