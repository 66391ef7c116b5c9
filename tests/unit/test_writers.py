"""Item rendering: splicing links into cached bytes must equal parsing and re-serialising."""

from __future__ import annotations

import copy

import pytest

from stacgit.hashing import pretty_json
from stacgit.writers import AtomicWriter, render_item, splice_links

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
    want = render_item(copy.deepcopy(body), path, "catalog.json", parent, "coll/collection.json")
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
