"""Property test: generated records, geometries and ids, through a mapping and through
pass-through, built by the real CLI. Whatever the input, the build never raises, never writes
outside ``build/`` and ``.stacgit/``, and every record is either built or named as a failure
(file, location, field, reason), or its collection fails with one line naming it."""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import stacgit

CATALOG = """\
id: gen
description: Generated records.
license: CC0-1.0
collections:
  - {id: items, description: STAC items that pass through, source: {type: file, path: sources/items.ndjson}}
  - {id: rows, description: CSV rows through a mapping, source: {type: file, path: sources/rows.csv}, mapping: mappings/rows.yaml}
"""
MAPPING = """\
id: {path: id}
datetime: {path: when, format: ['%Y-%m-%dT%H:%M:%S%z', '%Y/%m/%d'], tz: UTC}
geometry: {point: [lon, lat]}
bbox: {path: box, json: true, optional: true}
properties:
  value: {path: value, type: float, optional: true}
  tags: {path: tags, split: ';', optional: true}
  meta: {path: meta, json: true, optional: true}
"""

numbers = st.one_of(
    st.floats(-400, 400, allow_nan=False), st.integers(-200, 200), st.sampled_from([math.nan, math.inf, -math.inf, 1e308]),
    st.text(max_size=3), st.none(),
)
finite = st.one_of(st.floats(-400, 400, allow_nan=False), st.integers(-200, 200), st.text(max_size=3), st.none())
"""Numbers of items written as JSON (NaN is not JSON: a file holding it fails as a whole, named)."""
position = st.lists(finite, min_size=0, max_size=4)
nested = st.recursive(position, lambda inner: st.lists(inner, max_size=4), max_leaves=30)


@st.composite
def box_polygon(draw):
    w = draw(st.floats(-180, 179))
    s = draw(st.floats(-90, 89))
    e = draw(st.floats(w, 180))
    n = draw(st.floats(s, 90))
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    return {"type": "Polygon", "coordinates": [draw(st.sampled_from([ring, ring[:-1], ring[::-1]]))]}


geometries = st.one_of(
    box_polygon(),
    st.builds(lambda p: {"type": "Point", "coordinates": p}, position),
    st.builds(lambda t, c: {"type": t, "coordinates": c}, st.sampled_from(["Polygon", "MultiPolygon", "LineString", "Shape", ""]), nested),
    st.none(), st.text(max_size=4), st.integers(),
)
good_ids = st.from_regex(r"[A-Za-z0-9_\-]{1,12}", fullmatch=True)
ids = st.one_of(
    good_ids,
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=10),
    st.sampled_from(["../x", "a/b", "A", "a", "catalog", "x" * 260, "#x", "ok-1", "ok-2", ".", "..", "con"]),
)
times = st.one_of(
    st.sampled_from(["2022-06-01T10:00:00Z", "2022-06-01T10:00:00+00:00", "2022-06-01T10:00:00.123Z", "2022-06-01", "2022/06/01",
                     "2022-13-01T00:00:00Z", "", "9999-12-31T23:59:59Z"]),
    st.text(max_size=8), st.integers(), st.none(),
)
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4)),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)


@st.composite
def stac_item(draw):
    good = draw(st.booleans())  # half the items are well formed but for their extra fields
    item = {"type": "Feature", "stac_version": "1.0.0", "id": draw(good_ids if good else ids),
            "geometry": draw(box_polygon() if good else geometries),
            "properties": {"datetime": draw(st.just("2022-06-01T10:00:00Z") if good else times),
                           **draw(st.dictionaries(st.text(max_size=6), json_values, max_size=3))},
            "assets": draw(st.dictionaries(st.text(max_size=4), st.fixed_dictionaries({"href": st.text(max_size=6)}), max_size=2)),
            "links": []}
    if draw(st.booleans()):
        item["bbox"] = draw(st.lists(finite, max_size=6))
    return item


COLUMNS = ["id", "when", "lon", "lat", "box", "value", "tags", "meta"]
good_rows = st.fixed_dictionaries({
    "id": good_ids, "when": st.just("2022/06/01"), "lon": st.floats(-180, 180).map(str), "lat": st.floats(-90, 90).map(str),
    "box": st.just(""), "value": st.floats(-1e6, 1e6).map(str), "tags": st.text(max_size=6), "meta": json_values.map(json.dumps),
})
hostile_rows = st.fixed_dictionaries({
    "id": ids, "when": times.map(lambda t: "" if t is None else str(t)), "lon": numbers.map(str), "lat": numbers.map(str),
    "box": st.one_of(st.just(""), st.lists(numbers, max_size=5).map(json.dumps), st.text(max_size=6)),
    "value": st.one_of(st.just(""), numbers.map(str)), "tags": st.text(max_size=6),
    "meta": st.one_of(st.just(""), json_values.map(json.dumps), st.text(max_size=5)),
})
rows = st.one_of(good_rows, hostile_rows)


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(items=st.lists(stac_item(), min_size=1, max_size=6), table=st.lists(rows, min_size=1, max_size=6))
def test_generated_input_is_built_or_named_never_a_crash(items, table):
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        (repo / "catalogs/gen/sources").mkdir(parents=True)
        (repo / "mappings").mkdir()
        (repo / "catalogs/gen/catalog.yaml").write_text(CATALOG)
        (repo / "mappings/rows.yaml").write_text(MAPPING)
        (repo / "catalogs/gen/sources/items.ndjson").write_text("".join(json.dumps(i) + "\n" for i in items))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
        (repo / "catalogs/gen/sources/rows.csv").write_text(out.getvalue())
        before = _files(repo)

        res = stacgit(repo, "build", "--json", "-j", "1")  # an exception would propagate: catch_exceptions=False

        assert res.exit_code in (0, 1), res.stderr
        assert "Traceback" not in res.stderr + res.stdout
        logs = list((repo / ".stacgit/logs").glob("*.log")) if (repo / ".stacgit/logs").exists() else []
        assert not logs, f"an unexpected exception was logged: {logs[0].read_text()[-2000:]}"
        made = _files(repo) - before
        assert all(f.startswith(("build/gen/", ".stacgit/")) for f in made), sorted(made)
        summary = res.json
        errors = summary["errors"]
        assert all(e["message"] and "\n" not in e["message"] for e in errors)
        failed = [json.loads(l) for l in (repo / "build/gen/failed.ndjson").read_text().splitlines()] \
            if (repo / "build/gen/failed.ndjson").exists() else []
        for f in failed:
            assert f["location"].startswith(("catalogs/gen/sources/items.ndjson", "catalogs/gen/sources/rows.csv"))
            assert f["field"] and f["reason"]
        for coll, n_records in (("items", len(items)), ("rows", len(table))):
            if any(f"gen/{coll}" in e["unit"] or f"gen/{coll}" in e["message"] for e in errors):
                continue  # the collection failed as a whole (e.g. a duplicate id), named in one line
            built = [p for p in (repo / "build/gen" / coll).rglob("*.json") if p.name != "collection.json"] \
                if (repo / "build/gen" / coll).exists() else []
            named = [f for f in failed if f["collection"] == coll]
            assert len(built) + len(named) == n_records, (coll, len(built), named)
