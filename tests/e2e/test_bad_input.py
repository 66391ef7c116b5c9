"""Bad inputs: each gives a clear one-line error naming file and location, exit 1 or 2,
no traceback, and leaves what was built before untouched."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import stacgit_proc, tree

CSV = "catalogs/shift/sources/flightlines.csv"


def _edit(repo: Path, rel: str, fn) -> None:
    p = repo / rel
    p.write_bytes(fn(p.read_bytes()))


def _replace(old: bytes, new: bytes):
    def fn(data: bytes) -> bytes:
        assert old in data
        return data.replace(old, new, 1)

    return fn


def _append(extra: bytes):
    return lambda data: data + extra


CASES = {
    "malformed_yaml": ("catalogs/shift/catalog.yaml", _replace(b"title: SBG SHIFT AVIRIS-NG", b"title: [SBG SHIFT"), 2, r"catalogs/shift/catalog\.yaml:\d+:\d+: invalid YAML"),
    "unknown_mapping_key": ("mappings/aviris-ng.yaml", _replace(b"properties:", b"propertis:"), 2, r"mappings/aviris-ng\.yaml:\d+: propertis: unknown key \(did you mean 'properties'\?\)"),
    "unknown_catalog_key": ("catalogs/shift/catalog.yaml", _replace(b"    source:", b"    sourse:"), 2, r"catalogs/shift/catalog\.yaml:\d+: collections\[0\]\.sourse: unknown key \(did you mean 'source'\?\)"),
    "wrong_type": ("catalogs/shift/catalog.yaml", _replace(b"max_items_per_catalog: 1000", b"max_items_per_catalog: many"), 2, r"catalogs/shift/catalog\.yaml:\d+: collections\[0\]\.layout\.max_items_per_catalog: must be an integer"),
    "bad_mapping_value": ("mappings/aviris-ng.yaml", _replace(b"gsd: {path: pixel_size_m, type: float}", b"gsd: pixel_size_m"), 2, r"mappings/aviris-ng\.yaml:\d+: properties\.gsd: must be a value spec mapping \(write \{path: pixel_size_m\}"),
    "unknown_timezone": ("mappings/aviris-ng.yaml", _replace(b"tz: UTC", b"tz: Mars/Olympus"), 2, r"mappings/aviris-ng\.yaml:\d+: unknown time zone 'Mars/Olympus'"),
    "non_utf8": (CSV, _append(b"ang20220610t101010,SB,-120,34,-119.9,34.1,5.1,4.0,\xff\xfe,good,EPSG:32610\n"), 1, r"catalogs/shift/sources/flightlines\.csv:35: not valid UTF-8"),
    "duplicate_ids": (CSV, lambda d: d + d.splitlines(keepends=True)[1], 1, r"duplicate item id 'ang\d+t\d+' in collection shift/aviris-ng-l2a: catalogs/shift/sources/flightlines\.csv:2 and catalogs/shift/sources/flightlines\.csv:35"),
    "missing_source": ("catalogs/shift/catalog.yaml", _replace(b"sources/flightlines.csv", b"sources/flightline.csv"), 2, r"catalogs/shift/catalog\.yaml: collections\[0\]\.source\.path: 'sources/flightline\.csv' matches no file"),
    "source_escapes": ("catalogs/shift/catalog.yaml", _replace(b"sources/flightlines.csv", b"../3dep/sources/CO_Eastern_B1_2018.json"), 2, r"collections\[0\]\.source\.path: .* must be relative to the catalog directory and stay inside it"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_cleanly(repo, case):
    rel, edit, code, pattern = CASES[case]
    assert stacgit_proc(repo, "build", "-j", "1").returncode == 0
    before = tree(repo / "build")
    _edit(repo, rel, edit)
    proc = stacgit_proc(repo, "build", "-j", "1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out
    error_lines = [l for l in out.splitlines() if l.startswith("error:")]
    assert len(error_lines) == 1, out
    assert re.search(pattern, error_lines[0]), error_lines[0]
    assert tree(repo / "build") == before


@pytest.mark.parametrize(
    "case,edit,pattern",
    [
        ("bad_date", _append(b"ang2022x0610t101010,SB,-120,34,-119.9,34.1,5.1,4.0,coastal,good,EPSG:32610\n"), r"flightlines\.csv:35: datetime: 'ang2022x0610t101010' does not match regex"),
        ("missing_column", _append(b"ang20220610t101010,SB,-120,34\n"), r"flightlines\.csv:35: record: row has 4 fields, header has 11 \(missing: east, north"),
        ("not_a_number", _append(b"ang20220610t101010,SB,-120,34,-119.9,34.1,fine,4.0,coastal,good,EPSG:32610\n"), r"flightlines\.csv:35: properties\.gsd: cannot convert 'fine' to float"),
    ],
)
def test_bad_record_is_skipped_and_reported(repo, case, edit, pattern):
    assert stacgit_proc(repo, "build", "-j", "1").returncode == 0
    before = tree(repo / "build")
    _edit(repo, CSV, edit)
    # --strict: the build fails and nothing changes
    strict = stacgit_proc(repo, "build", "-j", "1", "--strict")
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    assert re.search(pattern, strict.stdout + strict.stderr)
    assert tree(repo / "build") == before
    # default: the record is skipped, reported, listed in failed.ndjson; exit 1
    proc = stacgit_proc(repo, "build", "-j", "1", "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["items"]["failed"] == 1 and summary["items"]["written"] == 0
    assert re.search(pattern, f"{summary['failed_records'][0]['location']}: {summary['failed_records'][0]['field']}: {summary['failed_records'][0]['reason']}")
    failed = [json.loads(l) for l in (repo / "build/shift/failed.ndjson").read_text().splitlines()]
    assert len(failed) == 1 and failed[0]["location"].endswith("flightlines.csv:35")
    after = tree(repo / "build")
    assert {k: v for k, v in after.items() if k not in ("shift/failed.ndjson",)} == before


def test_unsafe_id_never_leaves_build_dir(repo):
    _edit(repo, "catalogs/3dep/sources/CO_Eastern_B1_2018.json", _replace(b'"tile": "w1000n4400"', b'"tile": "../../../x"'))
    proc = stacgit_proc(repo, "build", "-j", "1", "--json")
    assert proc.returncode == 1
    rec = json.loads(proc.stdout)["failed_records"][0]
    assert rec["field"] == "id" and "contains a path separator" in rec["reason"]
    assert rec["location"] == "catalogs/3dep/sources/CO_Eastern_B1_2018.json (element 1)"
    assert not list(repo.parent.rglob("x.json")) and not (repo / "x").exists()
    proc = stacgit_proc(repo, "build", "-j", "1", "--strict")
    assert proc.returncode == 1 and "contains a path separator" in proc.stderr


def test_second_build_in_same_checkout_is_refused(repo):
    from stacgit.errors import PlanError
    from stacgit.project import Project
    from stacgit.runner import acquire_lock, release_lock

    project = Project.discover(repo)
    acquire_lock(project)
    try:
        proc = stacgit_proc(repo, "build", "-j", "1")
        assert proc.returncode == 1
        assert "another build is running in this checkout" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        release_lock(project)
    assert stacgit_proc(repo, "build", "-j", "1").returncode == 0
    assert PlanError
