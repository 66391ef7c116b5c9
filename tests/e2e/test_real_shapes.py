"""Item shapes real providers produce, from a committed file of STAC items (no mapping: items
pass through): each is built as it is, normalised where the spec allows it, or quarantined
with a one-line reason; never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
from stac_geoparquet.arrow import stac_table_to_items

from conftest import REPO, stacgit_proc, tree

SHAPES = REPO / "tests/data/real-shapes/items.ndjson"

CATALOG = """\
id: real
description: Real item shapes.
license: CC-BY-4.0
collections:
  - id: shapes
    description: Items as providers write them.
    source: {type: file, path: sources/items.ndjson}
"""


def test_real_item_shapes_build_or_are_named(tmp_path: Path):
    repo = tmp_path / "repo"
    (repo / "catalogs/real/sources").mkdir(parents=True)
    shutil.copy(SHAPES, repo / "catalogs/real/sources/items.ndjson")
    (repo / "catalogs/real/catalog.yaml").write_text(CATALOG)
    res = stacgit_proc(repo, "build", "--json", "-j", "1")
    assert "Traceback" not in res.stderr and "PythonAction Error" not in res.stderr
    summary = json.loads(res.stdout)
    assert res.returncode == 1  # a quarantined record, and documents the schemas reject
    failed = [json.loads(l) for l in (repo / "build/real/failed.ndjson").read_text().splitlines()]
    assert [(f["location"], f["field"]) for f in failed] == [("catalogs/real/sources/items.ndjson:14", "geometry")]
    assert "outside longitude [-180, 180]" in failed[0]["reason"]
    built = {p.stem: json.loads(p.read_text()) for p in (repo / "build/real/shapes").rglob("*.json") if p.name != "collection.json"}
    expected = {json.loads(l)["id"] for l in SHAPES.read_text().splitlines()} - {"past-180"}
    assert set(built) == expected and summary["items"]["written"] == len(expected)
    assert built["lidar-3d-bbox"]["bbox"] == [-105.1, 39.6, 1520.3, -104.9, 39.8, 1710.9]  # kept as it is
    assert built["landsat-no-bbox"]["bbox"] == [-105.1, 39.6, -104.9, 39.8]  # computed: the spec requires one
    assert built["dt-offset"]["properties"]["datetime"] == "2022-06-01T10:00:00Z"
    assert built["dt-frac6"]["properties"]["datetime"] == "2022-06-01T10:00:00.123456Z"
    assert built["dt-null-range"]["properties"]["datetime"] is None
    assert built["antimeridian"]["bbox"] == [170, -10, -170, 10]
    assert all(b["collection"] == "shapes" and b["stac_version"] == "1.1.0" for b in built.values())
    assert built["relative-and-s3-hrefs"]["assets"]["mirror"]["href"] == "s3://bucket/relative-and-s3-hrefs.tif"
    coll = json.loads((repo / "build/real/shapes/collection.json").read_text())
    assert coll["extent"]["spatial"]["bbox"][0][1] == -10  # the antimeridian item is in the extent
    # GeoParquet holds every built item, with 2D boxes
    ids, boxes = [], []
    for f in (repo / "build/real/shapes/parquet").glob("*.parquet"):
        t = pq.read_table(f)
        ids += t.column("id").to_pylist()
        boxes += t.column("bbox").to_pylist()
    assert sorted(ids) == sorted(expected)
    assert all(b is not None for b in boxes)
    # columns are inferred from the items; a field whose items disagree is named and kept as JSON text
    assert summary["warnings"] == [
        "collection real/shapes: properties.eo:cloud_cover is float64 in 'landsat-no-bbox', string in 'numeric-string': "
        "its GeoParquet column holds JSON text (fix the items, or give it a type in geoparquet.columns)"
    ]
    schema = _schema(repo)
    assert schema["proj:code"] == "string" and schema["pc:count"] == "int64" and schema["eo:cloud_cover"] == "string"
    assert schema["assets"].startswith("struct<data: struct<") and "mirror: struct<description: string, href: string" in schema["assets"]

    # the provider fixes its item: the next (incremental) build types the column, as a clean build does
    lines = [l for l in SHAPES.read_text().splitlines() if '"numeric-string"' not in l]
    (repo / "catalogs/real/sources/items.ndjson").write_text("\n".join(lines) + "\n")
    again = json.loads(stacgit_proc(repo, "build", "--json", "-j", "1").stdout)
    assert again["warnings"] == [] and again["items"]["deleted"] == 1
    assert _schema(repo)["eo:cloud_cover"] == "double"
    back = {i["id"]: i for f in sorted((repo / "build/real/shapes/parquet").glob("*.parquet"))
            for i in stac_table_to_items(pq.read_table(f))}
    assert back["landsat-no-bbox"]["properties"]["eo:cloud_cover"] == 3.2
    assert back["lidar-3d-bbox"]["properties"]["proj:code"] == "EPSG:26913"
    assert back["relative-and-s3-hrefs"]["assets"]["mirror"]["href"] == "s3://bucket/relative-and-s3-hrefs.tif"
    incremental = tree(repo / "build")
    shutil.rmtree(repo / "build")
    shutil.rmtree(repo / ".stacgit")
    stacgit_proc(repo, "build", "--json", "-j", "1")
    assert tree(repo / "build") == incremental


def _schema(repo: Path) -> dict[str, str]:
    """Column name -> Arrow type of the collection's GeoParquet files (all of them agree)."""
    schemas = {str(pq.read_schema(f).remove_metadata()) for f in (repo / "build/real/shapes/parquet").glob("*.parquet")}
    assert len(schemas) == 1
    schema = pq.read_schema(next((repo / "build/real/shapes/parquet").glob("*.parquet")))
    return {f.name: str(f.type) for f in schema}


def test_a_collection_failing_on_its_first_build_does_not_hold_back_the_root(repo):
    """3dep has two collections; one cannot be read: the other is built and the root links it."""
    import yaml

    from conftest import stacgit

    path = repo / "catalogs/3dep/catalog.yaml"
    doc = yaml.safe_load(path.read_text())
    broken = doc["collections"][0]["id"]
    doc["collections"][0]["source"]["path"] = "sources/missing.json"
    (repo / "catalogs/3dep/sources/missing.json").write_text("[not json")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    res = stacgit(repo, "build", "-j", "1")
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    root = json.loads((repo / "build/3dep/catalog.json").read_text())
    children = [l["href"] for l in root["links"] if l["rel"] == "child"]
    assert children == [f"./{c['id']}/collection.json" for c in doc["collections"][1:]]
    assert (repo / "build/3dep/manifest.json").is_file()
    (repo / "catalogs/3dep/sources/missing.json").write_text("[]")
    stacgit(repo, "build", "-j", "1")
    root = json.loads((repo / "build/3dep/catalog.json").read_text())
    assert f"./{broken}/collection.json" in [l["href"] for l in root["links"] if l["rel"] == "child"]


_UNEXPECTED = """
import sys
from stacgit import engine
def boom(*args, **kwargs):
    raise RuntimeError("boom")
engine.build_collection = boom  # stands for a bug, or input nothing checks yet
from stacgit.cli import main
sys.argv = ["stacgit", "build", "-j", "1"]
main()
"""


def test_an_unexpected_exception_in_a_task_is_one_line(repo):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _UNEXPECTED], cwd=repo, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and "PythonAction Error" not in res.stderr
    line = next(l for l in res.stderr.splitlines() if "collection:shift/aviris-ng-l2a" in l)
    assert "unexpected RuntimeError: boom (traceback in .stacgit/logs/" in line
    log = repo / line.rsplit("traceback in ", 1)[1].rstrip(")")
    assert "RuntimeError: boom" in log.read_text()


def test_real_item_shapes_through_a_snapshot_of_a_stac_api(tmp_path: Path):
    """The same shapes served by a real STAC API (``rustac serve``), snapshotted and built:
    numeric strings of the declared ``numeric`` fields become numbers, so every column is typed."""
    from stac_server import FaultProxy, StacServer

    items = [json.loads(l) for l in SHAPES.read_text().splitlines()]
    for item in items:
        item["collection"] = "upstream"  # the API serves each item in its collection
    proxy = FaultProxy()
    server = StacServer(tmp_path / "server", proxy)
    try:
        server.serve(items, collection="upstream")
        repo = tmp_path / "repo"
        (repo / "catalogs/real").mkdir(parents=True)
        source = {"type": "stac-api", "url": proxy.url, "collection": "upstream", "datetime": "2022-01-01/2022-12-31",
                  "window": "year", "numeric": ["eo:cloud_cover", "gsd"]}
        (repo / "catalogs/real/catalog.yaml").write_text(json.dumps({
            "id": "real", "description": "Real item shapes.", "license": "CC-BY-4.0",
            "collections": [{"id": "shapes", "description": "Items as providers serve them.", "source": source}]}))
        snap = stacgit_proc(repo, "snapshot", "--json")
        assert snap.returncode == 0, snap.stdout + snap.stderr
        report = json.loads(snap.stdout)["collections"]["real/shapes"]
    finally:
        server.stop()
        proxy.close()
    res = stacgit_proc(repo, "build", "--json", "-j", "1")
    assert "Traceback" not in res.stderr
    summary = json.loads(res.stdout)
    built = {p.stem: json.loads(p.read_text()) for p in (repo / "build/real/shapes").rglob("*.json") if p.name != "collection.json"}
    served = {i["id"] for i in items}
    assert report["records"] + report["quarantined"] == len(served)
    assert [(f["field"], "outside longitude [-180, 180]" in f["reason"]) for f in summary["failed_records"]] == [("geometry", True)]
    assert set(built) == served - {"past-180"}
    assert built["numeric-string"]["properties"]["eo:cloud_cover"] == 12.5
    assert built["landsat-no-bbox"]["bbox"] == [-105.1, 39.6, -104.9, 39.8]
    assert summary["warnings"] == []
    schema = _schema(repo)
    assert schema["eo:cloud_cover"] == "double" and schema["proj:code"] == "string" and schema["gsd"] == "int64"


def test_stac_geoparquet_items_pass_through(tmp_path: Path):
    """A stac-geoparquet file of STAC items is a source like an NDJSON file of them: no mapping."""
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    items = [json.loads(l) for l in SHAPES.read_text().splitlines()]
    # stac-geoparquet cannot write mixed 2D/3D boxes, items without one, or a number and a string
    # in one field: those stay out of the file
    flat = [i for i in items if len(i.get("bbox") or []) == 4 and i["id"] not in ("past-180", "numeric-string")]
    repo = tmp_path / "repo"
    (repo / "catalogs/real/sources").mkdir(parents=True)
    to_parquet(parse_stac_items_to_arrow(flat), repo / "catalogs/real/sources/items.parquet")
    (repo / "catalogs/real/catalog.yaml").write_text(CATALOG.replace("items.ndjson", "items.parquet"))
    res = stacgit_proc(repo, "build", "--json", "-j", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    built = {p.stem: json.loads(p.read_text()) for p in (repo / "build/real/shapes").rglob("*.json") if p.name != "collection.json"}
    assert set(built) == {i["id"] for i in flat}
    for item in flat:
        out = built[item["id"]]
        assert out["geometry"] == item["geometry"] and out["bbox"] == item["bbox"] and out["assets"] == item["assets"]
        assert {k: v for k, v in out["properties"].items() if not k.endswith("datetime")} == \
            {k: v for k, v in item["properties"].items() if not k.endswith("datetime")}
    assert built["dt-frac3"]["properties"]["datetime"].startswith("2022-06-01T10:00:00.123")


def test_an_item_without_geometry_is_in_the_geoparquet(tmp_path: Path):
    """STAC allows ``geometry: null`` (and then no bbox): the GeoParquet row has a null geometry
    and a box of NaNs, which no spatial filter matches (found by the property test)."""
    import math

    item = json.loads(SHAPES.read_text().splitlines()[2])
    item.update(id="no-geometry", geometry=None)
    item.pop("bbox", None)
    other = json.loads(SHAPES.read_text().splitlines()[3])
    repo = tmp_path / "repo"
    (repo / "catalogs/real/sources").mkdir(parents=True)
    (repo / "catalogs/real/sources/items.ndjson").write_text(json.dumps(item) + "\n" + json.dumps(other) + "\n")
    (repo / "catalogs/real/catalog.yaml").write_text(CATALOG)
    res = stacgit_proc(repo, "build", "--json", "-j", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {r["id"]: r for f in (repo / "build/real/shapes/parquet").glob("*.parquet") for r in pq.read_table(f).to_pylist()}
    assert rows["no-geometry"]["geometry"] is None and all(math.isnan(v) for v in rows["no-geometry"]["bbox"].values())
    assert rows[other["id"]]["bbox"] == dict(zip(("xmin", "ymin", "xmax", "ymax"), other["bbox"]))
