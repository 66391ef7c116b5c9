"""The seams: a source format and an output format are each added through their protocol and
registry, without touching the engine; the build reads and writes them incrementally."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import stacgit
from stacgit.output_formats import OutputFormat, register as register_output
from stacgit.sources import FileFormat, RecordError, register


class TsvFormat(FileFormat):
    """Tab-separated values with a header line: a format written for this test."""

    name = "tsv"
    suffixes = (".tsv",)

    def iter_records(self, path, display, *, delimiter=",", lazy=False):
        with open(path, "rb") as f:
            header = f.readline().decode().rstrip("\n").split("\t")
            for lineno, raw in enumerate(f, start=2):
                fields = raw.decode().rstrip("\n").split("\t")
                if len(fields) != len(header):
                    yield f"line {lineno}", RecordError(f"{len(fields)} fields, the header has {len(header)}"), None
                    continue
                yield f"line {lineno}", dict(zip(header, fields)), raw

    def columns(self, path, display, *, delimiter=","):
        with open(path, "rb") as f:
            return f.readline().decode().rstrip("\n").split("\t")


MAPPING = """\
id: {path: name}
datetime: {path: day, format: '%Y-%m-%d', tz: UTC}
geometry: {point: [lon, lat]}
properties: {depth_m: {path: depth, type: float}}
"""


@pytest.fixture
def tsv_repo(tmp_path: Path) -> Path:
    register(TsvFormat)
    repo = tmp_path / "repo"
    (repo / "catalogs/buoys/sources").mkdir(parents=True)
    (repo / "mappings").mkdir()
    (repo / "mappings/buoys.yaml").write_text(MAPPING)
    (repo / "catalogs/buoys/catalog.yaml").write_text(
        "id: buoys\ndescription: Buoy casts.\nlicense: CC0-1.0\ncollections:\n"
        "  - {id: casts, description: d, source: {type: file, path: 'sources/*.tsv'}, mapping: mappings/buoys.yaml}\n"
        "  - {id: more, description: d, source: {type: file, path: sources/more.txt, format: tsv}, mapping: mappings/buoys.yaml}\n"
    )
    rows = ["name\tday\tlon\tlat\tdepth", "b1\t2022-06-01\t-70.5\t41.2\t12.5", "b2\t2022-06-02\t-70.6\t41.3\t8", "b3\t2022-06-03\t-70.7"]
    (repo / "catalogs/buoys/sources/casts.tsv").write_text("\n".join(rows) + "\n")
    (repo / "catalogs/buoys/sources/more.txt").write_text("\n".join(rows[:2]).replace("b1", "m1") + "\n")
    return repo


def test_a_source_format_added_through_the_registry(tsv_repo: Path):
    res = stacgit(tsv_repo, "build", "--json", "-j", "1")
    assert res.exit_code == 1, res.stderr  # b3 is a bad record: named, not fatal
    assert res.json["items"]["written"] == 3
    assert [(f["location"], f["field"]) for f in res.json["failed_records"]] == [("catalogs/buoys/sources/casts.tsv:4", "record")]
    item = json.loads(next((tsv_repo / "build/buoys/casts").rglob("b1.json")).read_text())
    assert item["properties"]["depth_m"] == 12.5 and item["geometry"]["coordinates"] == [-70.5, 41.2]
    assert next((tsv_repo / "build/buoys/more").rglob("m1.json")).is_file()
    # incremental: one changed line rewrites one item
    src = tsv_repo / "catalogs/buoys/sources/casts.tsv"
    src.write_text(src.read_text().replace("\t8\n", "\t9\n"))
    again = stacgit(tsv_repo, "build", "--json", "-j", "1")
    assert again.json["items"]["written"] == 1 and again.json["records"]["mapped"] == 1


def test_an_unknown_format_is_named_with_the_known_ones(tsv_repo: Path):
    cat = tsv_repo / "catalogs/buoys/catalog.yaml"
    cat.write_text(cat.read_text().replace("format: tsv", "format: tvs"))
    res = stacgit(tsv_repo, "build")
    assert res.exit_code == 2
    assert "collections[1].source.format: unknown format 'tvs' (did you mean 'tsv'?)" in res.stderr and "Traceback" not in res.stderr


class CsvLines(OutputFormat):
    """One line per item (id, datetime): an output format written for this test."""

    name = "csv-lines"
    suffix = ".csv"
    media_type = "text/csv"

    def write(self, items, out):
        out.write(b"id,datetime\n")
        for item in items:
            out.write(f"{item['id']},{item['properties'].get('datetime') or item['properties']['start_datetime']}\n".encode())


def test_an_output_format_added_through_the_registry(repo: Path):
    """A further export format, registered in the test: one file per GeoParquet partition,
    rewritten when its items change, in the manifest, gone when no longer asked for."""
    import shutil

    import orjson

    from conftest import tree

    register_output(CsvLines)
    cat = repo / "catalogs/shift/catalog.yaml"
    text = cat.read_text()
    cat.write_text(text.replace("    mapping: mappings/aviris-ng.yaml", "    mapping: mappings/aviris-ng.yaml\n    outputs: [csv-lines]", 1))
    assert stacgit(repo, "build", "-j", "1").exit_code == 0
    folder = repo / "build/shift/csv-lines/aviris-ng-l2a"
    parts = {p.name: p.read_text() for p in folder.iterdir()}
    parquet = sorted(p.stem for p in (repo / "build/shift/aviris-ng-l2a/parquet").glob("*.parquet"))
    assert sorted(n[:-4] for n in parts) == parquet  # one file per partition
    items = sum(len(t.splitlines()) - 1 for t in parts.values())
    assert items == len([p for p in (repo / "build/shift/aviris-ng-l2a").rglob("*.json") if p.name not in ("collection.json", "catalog.json")])
    manifest = orjson.loads((repo / "build/shift/manifest.json").read_bytes())["files"]
    assert {p for p in manifest if p.startswith("csv-lines/")} == {f"csv-lines/aviris-ng-l2a/{n}" for n in parts}

    # one record moved to another day of its month: only that partition's file changes
    csv = repo / "catalogs/shift/sources/flightlines.csv"
    lines = csv.read_text().splitlines(keepends=True)
    row = lines[1].split(",")
    lines[1] = ",".join([row[0] + "x", *row[1:]])  # a new id in the same partition
    csv.write_text("".join(lines))
    assert stacgit(repo, "build", "-j", "1").exit_code == 0
    after = {p.name: p.read_text() for p in folder.iterdir()}
    assert [n for n in sorted(after) if after[n] != parts[n]] and len([n for n in after if after[n] != parts[n]]) == 1
    incremental = tree(repo / "build")
    shutil.rmtree(repo / "build")
    shutil.rmtree(repo / ".stacgit")
    assert stacgit(repo, "build", "-j", "1").exit_code == 0
    assert tree(repo / "build") == incremental

    # no longer asked for: its files and manifest entries go
    cat.write_text(text)
    assert stacgit(repo, "build", "-j", "1").exit_code == 0
    assert not (repo / "build/shift/csv-lines").exists()
    assert not any(p.startswith("csv-lines/") for p in orjson.loads((repo / "build/shift/manifest.json").read_bytes())["files"])


def test_an_unknown_output_format_is_named(repo: Path):
    cat = repo / "catalogs/shift/catalog.yaml"
    cat.write_text(cat.read_text().replace("    mapping: mappings/aviris-ng.yaml", "    mapping: mappings/aviris-ng.yaml\n    outputs: [csv-line]", 1))
    register_output(CsvLines)
    res = stacgit(repo, "build")
    assert res.exit_code == 2 and "outputs[0]: unknown output format 'csv-line' (did you mean 'csv-lines'?)" in res.stderr
