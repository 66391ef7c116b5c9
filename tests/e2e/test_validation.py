"""Validation as users run it: builds validate what they wrote, `stacgit validate` reports,
schemas are pinned with `stacgit schemas pull`, and a third-party extension package works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, stacgit, stacgit_proc, tree

CSV = "catalogs/shift/sources/flightlines.csv"


def build(repo: Path, *args: str):
    res = stacgit(repo, "build", "-j", "1", "--json", *args)
    assert res.exit_code == 0, res.stdout + res.stderr
    return res.json


def test_examples_validate_fully_with_the_mirror(repo, schema_mirror):
    summary = build(repo)
    v = summary["validation"]
    assert v["invalid"] == 0 and v["schema_unavailable"] == 0 and v["valid"] == v["validated"] > 50
    res = stacgit(repo, "validate", "--strict", "--json")
    assert res.exit_code == 0, res.stdout
    report = res.json
    assert report["checked"] == report["valid"] == v["valid"] and report["errors"] == [] and report["unavailable_schemas"] == []
    # the extensions were applied: pointcloud/projection/dgeo on 3dep, alternate-assets on shift
    docs = [json.loads(p.read_text()) for p in (repo / "build").rglob("*.json") if p.name not in ("manifest.json",)]
    exts = {u for d in docs for u in d.get("stac_extensions", [])}
    assert {"https://stac-extensions.github.io/pointcloud/v2.0.0/schema.json", "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"} <= exts
    assert any(u.startswith("https://raw.githubusercontent.com/DecentralizedGeo/") for u in exts)


def test_an_unpinned_extension_schema_is_unavailable_core_still_runs(repo):
    shutil.rmtree(repo / "schemas/stac-extensions.github.io/projection")  # named by items, not pinned
    res = stacgit(repo, "build", "-j", "1", "--json")
    assert res.exit_code == 0  # unavailable is not invalid
    report = stacgit(repo, "validate", "--json").json
    assert report["invalid"] == 0 and report["schema_unavailable"] > 0 and report["valid"] > 0
    urls = {u["url"] for u in report["unavailable_schemas"]}
    assert urls == {"https://stac-extensions.github.io/projection/v2.0.0/schema.json"}
    shown = stacgit_proc(repo, "build")
    assert "schema unavailable: https://stac-extensions.github.io/projection/v2.0.0/schema.json" in shown.stdout + shown.stderr
    assert all("network is off" in u["why"] for u in report["unavailable_schemas"])
    # core validation did run: breaking an item's core fields is caught offline
    item = next(p for p in (repo / "build/shift").rglob("ang*.json"))
    doc = json.loads(item.read_text())
    del doc["properties"]["datetime"]
    item.write_text(json.dumps(doc))
    res = stacgit(repo, "validate", str(item), "--offline", "--json")
    assert res.exit_code == 1 and res.json["invalid"] == 1
    assert res.json["errors"][0]["examples"][0]["pointer"] == "/properties"
    # --strict fails on unavailable schemas (build and validate)
    assert stacgit(repo, "validate", "--strict").exit_code == 1
    strict = stacgit_proc(repo, "build", "--strict")
    assert strict.returncode == 1 and "schema unavailable (--strict)" in strict.stderr


def test_incremental_build_validates_only_what_it_wrote(repo, schema_mirror):
    build(repo)
    before = tree(repo / "build")
    csv = repo / CSV
    lines = csv.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace(",good,", ",fair,") if ",good," in lines[3] else lines[3].replace(",fair,", ",good,")
    csv.write_text("".join(lines))
    summary = build(repo)
    after = tree(repo / "build")
    changed = {p for p in after if before.get(p) != after[p] and p.endswith(".json") and not p.endswith("manifest.json")}
    assert changed and summary["validation"]["validated"] == len(changed)
    assert build(repo)["validation"]["validated"] == 0


def test_a_changed_schema_revalidates_the_documents_that_use_it(repo):
    build(repo)
    schema = repo / "schemas/stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"  # as pinned
    doc = json.loads(schema.read_text())
    doc["required"] = doc.get("required", []) + ["stacgit_test_field"]
    schema.write_text(json.dumps(doc))
    res = stacgit(repo, "build", "-j", "1", "--json")
    assert res.exit_code == 1
    v = res.json["validation"]
    assert v["invalid"] == v["validated"] > 0  # exactly the documents declaring alternate-assets
    assert v["errors"][0]["schema"] == "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"
    assert "stacgit_test_field" in v["errors"][0]["message"]


def test_custom_collection_schema_is_enforced(repo, schema_mirror):
    rules = repo / "schemas/usgs.gov/3dep/tile-rules.json"
    rules.write_text(rules.read_text().replace('"QL 0", "QL 1", "QL 2", "QL 3"', '"QL 0", "QL 1"'))
    res = stacgit(repo, "build", "-j", "1", "--json")
    assert res.exit_code == 1
    err = res.json["validation"]["errors"][0]
    assert err["schema"].endswith("/schemas/usgs.gov/3dep/tile-rules.json") and err["examples"][0]["pointer"] == "/properties/quality_level"
    assert all("MN_RedRiver_2019" in e["path"] for e in err["examples"])


def test_schemas_pull_pins_what_the_catalogs_reference(repo, schema_mirror, monkeypatch):
    res = stacgit(repo, "schemas", "pull", "--offline", "--json")
    assert res.exit_code == 0, res.stdout
    lock = json.loads((repo / "schemas/schemas.lock.json").read_text())
    for url in (
        "https://stac-extensions.github.io/pointcloud/v2.0.0/schema.json",
        "https://proj.org/schemas/v0.7/projjson.schema.json",
        "https://raw.githubusercontent.com/DecentralizedGeo/dgeo-asset/refs/heads/pgstac-variant/json-schema/schema.json",
    ):
        assert url in lock
    monkeypatch.delenv("STACGIT_SCHEMA_DIR")
    assert build(repo)["validation"]["schema_unavailable"] == 0  # offline, from the repo's schemas/
    assert stacgit(repo, "validate", "--strict").exit_code == 0


def test_validate_any_files_and_ndjson(tmp_path, schema_mirror, repo):
    build(repo)
    items = sorted((repo / "build/shift").rglob("ang*.json"))[:3]
    lines = [json.dumps(json.loads(p.read_text())) for p in items]
    bad = json.loads(lines[1])
    bad["geometry"] = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}  # bow tie
    bad["bbox"] = [0, 0, 1, 1]
    lines[1] = json.dumps(bad)
    lines.append(lines[0])  # a duplicate id
    nd = tmp_path / "items.ndjson"
    nd.write_text("\n".join(lines) + "\n")
    res = stacgit_proc(repo, "validate", str(nd), "--offline", "--json")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    report = json.loads(res.stdout)
    assert report["checked"] == 4 and report["invalid"] == 1
    kinds = {(e["schema"], e["examples"][0]["path"]) for e in report["errors"]}
    assert kinds == {("lint:duplicate-id", f"{nd}:4")}
    warned = {(e["schema"], e["examples"][0]["path"]) for e in report["warnings"]}
    assert ("lint:geometry", f"{nd}:2") in warned  # a self-intersection: schema-valid, named
    missing = stacgit_proc(repo, "validate", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "nope.json: no such file" in missing.stderr and "Traceback" not in missing.stderr


def test_extension_config_errors_name_file_and_key(repo):
    yaml_path = repo / "catalogs/shift/catalog.yaml"
    text = yaml_path.read_text()
    yaml_path.write_text(text.replace("- name: alternate-assets", "- name: alternate-asets"))
    res = stacgit_proc(repo, "build")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "catalogs/shift/catalog.yaml:" in res.stderr and "unknown extension 'alternate-asets'" in res.stderr and "did you mean 'alternate-assets'" in res.stderr
    yaml_path.write_text(text.replace("          name: S3\n", "          nmae: S3\n"))
    res = stacgit_proc(repo, "build")
    assert res.returncode == 2 and "config.nmae: unknown key" in res.stderr
    assert not (repo / "build").exists()


def test_third_party_extension_package(tmp_path, schema_mirror, repo):
    """A package that registers `stacgit.extensions` works without touching stacgit."""
    site = tmp_path / "site"
    src = tmp_path / "demo_src"
    shutil.copytree(REPO / "tests/data/demo_extension", src)
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(src)],
        capture_output=True, text=True,
    )
    assert pip.returncode == 0, pip.stderr
    shutil.copytree(src / "schema", repo / "schemas", dirs_exist_ok=True)
    yaml_path = repo / "catalogs/shift/catalog.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("    extensions:\n", "    extensions:\n      - name: demo\n        config: {quality: {path: quality, optional: true}}\n", 1))

    without = stacgit_proc(repo, "build")
    assert without.returncode == 2 and "unknown extension 'demo'" in without.stderr

    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONWARNINGS": "ignore"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "stacgit", *a], cwd=repo, capture_output=True, text=True, env=env)
    res = run("build", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["validation"]["invalid"] == 0 and summary["validation"]["schema_unavailable"] == 0
    doc = json.loads(next((repo / "build/shift").rglob("ang*.json")).read_text())
    assert doc["properties"]["demo:quality"] in ("GOOD", "FAIR") and "https://example.org/stac/demo/v1.0.0/schema.json" in doc["stac_extensions"]
    # the plugin's own check runs on documents from anywhere
    doc["properties"]["demo:quality"] = "BAD"
    one = tmp_path / "one.json"
    one.write_text(json.dumps(doc))
    res = run("validate", str(one), "--offline", "--json")
    assert res.returncode == 1
    assert json.loads(res.stdout)["errors"][0]["message"] == "demo:quality must not be BAD"


def test_validation_in_pages_gives_the_same_verdicts(repo, schema_mirror, monkeypatch):
    from stacgit import state as st
    from stacgit import verdicts as verdicts_module
    from stacgit.state import queues, verdicts

    rules = repo / "schemas/usgs.gov/3dep/tile-rules.json"
    rules.write_text(rules.read_text().replace('"QL 0", "QL 1", "QL 2", "QL 3"', '"QL 0", "QL 1"'))  # some items invalid
    built = stacgit(repo, "build", "-j", "1", "--json")
    assert built.exit_code == 1 and built.json["validation"]["invalid"] > 0
    con = st.connect(repo / ".stacgit")
    whole, report = verdicts.all_verdicts(con), stacgit(repo, "validate", "--json").json
    assert len(whole) == built.json["validation"]["validated"] > 8
    queues.requeue_validation(con)  # forget every verdict, and queue every document again
    monkeypatch.setattr(verdicts_module, "PAGE", 4)  # many pages, each committed on its own
    paged = stacgit(repo, "validate", "--json")
    assert paged.exit_code == 1 and paged.json == report
    assert verdicts.all_verdicts(con) == whole


def test_verdicts_of_removed_outputs_are_dropped(repo, schema_mirror):
    from stacgit import state as st
    from stacgit.state import outputs, verdicts as stored

    build(repo)
    csv = repo / CSV
    lines = csv.read_text().splitlines(keepends=True)
    gone = lines[4].split(",")[0]
    csv.write_text("".join(lines[:4] + lines[5:]))
    build(repo)
    con = st.connect(repo / ".stacgit")
    verdicts = [v[0] for v in stored.all_verdicts(con)]
    assert verdicts == outputs.document_paths(con) and not any(gone in p for p in verdicts)


def test_collection_tasks_validate_what_they_wrote(repo, schema_mirror):
    """Documents are validated in the collection task that wrote them (collection tasks run
    beside each other); the catalog task, which runs alone after them, is left the root."""
    from stacgit import state as st
    from stacgit.state import queues, reports

    build(repo)
    csv = repo / CSV
    lines = csv.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace(",good,", ",fair,") if ",good," in lines[3] else lines[3].replace(",fair,", ",good,")
    csv.write_text("".join(lines))
    summary = build(repo)
    con = st.connect(repo / ".stacgit")
    saved = reports.read_reports(con)
    by_collection = {u: r["validation"]["validated"] for u, r in saved.items() if u.startswith("collection:")}
    assert by_collection == {"collection:shift/aviris-ng-l2a": summary["validation"]["validated"]} and summary["validation"]["validated"] >= 1
    assert saved["catalog:shift"]["validation"]["validated"] == 0
    assert queues.queued(con, "unvalidated") == 0
