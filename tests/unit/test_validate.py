"""Validation verdicts and pointers on known-invalid documents, and agreement of the
jsonschema-rs fast path with stac-validator (the reference) on a corpus of documents."""

from __future__ import annotations

import copy

import pytest

from stacgit.extensions.builtin import ALTERNATE_URI, DgeoExtension, multihash
from stacgit.schemas import SchemaStore, SchemaUnavailable, pull
from stacgit.validate import Validator

PC2 = "https://stac-extensions.github.io/pointcloud/v2.0.0/schema.json"
PROJ2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
CID2 = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def item(**changes) -> dict:
    doc = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [PC2, PROJ2, DgeoExtension.schema_uri, ALTERNATE_URI],
        "id": "tile-1",
        "collection": "c",
        "geometry": {"type": "Polygon", "coordinates": [[[-96.9, 47.1], [-96.8, 47.1], [-96.8, 47.2], [-96.9, 47.2], [-96.9, 47.1]]]},
        "bbox": [-96.9, 47.1, -96.8, 47.2],
        "properties": {"datetime": "2019-04-20T00:00:00Z", "pc:count": 10, "pc:type": "lidar", "proj:code": "EPSG:26914", "dgeo:cids": [CID]},
        "links": [{"rel": "collection", "href": "../collection.json", "type": "application/json"}],
        "assets": {
            "data": {
                "href": "s3://bucket/tile-1.laz",
                "type": "application/vnd.laszip",
                "roles": ["data"],
                "dgeo:cid": CID,
                "alternate": {"https": {"href": "https://example.org/tile-1.laz"}},
            }
        },
    }
    doc.update(changes)
    return doc


@pytest.fixture
def validator(schema_mirror) -> Validator:
    return Validator(SchemaStore(dirs=[schema_mirror]))


def errors(result) -> list[tuple[str, str]]:
    return [(p.pointer, p.message) for p in result.problems if p.severity == "error"]


def test_reference_item_is_valid(validator):
    result = validator.check(item())
    assert result.status == "valid", result.problems


def _no_datetime(d):
    del d["properties"]["datetime"]


def _bad_geometry(d):
    d["geometry"] = {"type": "Polygon", "coordinates": [[1, 2]]}


def _bad_cid(d):
    d["properties"]["dgeo:cids"] = ["not-a-cid"]


def _asset_cid_absent(d):
    d["properties"]["dgeo:cids"] = [CID2]


def _empty_alternate(d):
    d["assets"]["data"]["alternate"] = {}


def _alternate_without_href(d):
    d["assets"]["data"]["alternate"] = {"https": {"title": "mirror"}}


def _pc_v1_field(d):
    d["properties"]["pc:encoding"] = "LASzip"


def _extension_not_a_url(d):
    d["stac_extensions"][0] = "pointcloud"


INVALID = {
    "missing datetime": (_no_datetime, "/properties", "datetime"),
    "bad geometry": (_bad_geometry, "/geometry/coordinates/0", "less than 4 items"),
    "bad dgeo CID": (_bad_cid, "/properties/dgeo:cids/0", "does not match"),
    "asset CID absent from dgeo:cids": (_asset_cid_absent, "/assets/data/dgeo:cid", "not listed in properties/dgeo:cids"),
    "empty alternate": (_empty_alternate, "/assets/data/alternate", "non-empty"),
    "alternate without href": (_alternate_without_href, "/assets/data/alternate/https", "needs an href"),
    "pointcloud v1 pc:encoding under the v2 URI": (_pc_v1_field, "/properties", "'pc:encoding' was unexpected"),
}


def test_a_short_extension_name_is_a_warning_not_invalid(validator):
    """The spec says URLs; real items carry short names ("eo"): named, not rejected."""
    doc = item()
    _extension_not_a_url(doc)
    result = validator.check(doc)
    assert result.status == "valid"
    assert any(p.pointer == "/stac_extensions/0" and p.severity == "warning" and "should be schema URLs" in p.message for p in result.problems)


@pytest.mark.parametrize("case", sorted(INVALID))
def test_known_invalid_documents_name_the_pointer(validator, case):
    edit, pointer, message = INVALID[case]
    doc = item()
    edit(doc)
    result = validator.check(doc)
    assert result.status == "invalid"
    assert any(p == pointer and message in m for p, m in errors(result)), errors(result)


def test_unknown_extension_version_is_unavailable_not_valid(validator):
    doc = item()
    doc["stac_extensions"][0] = "https://stac-extensions.github.io/pointcloud/v9.9.9/schema.json"
    result = validator.check(doc)
    assert result.status == "schema_unavailable"
    assert "https://stac-extensions.github.io/pointcloud/v9.9.9/schema.json" in result.unavailable


def test_core_still_validates_when_extension_schemas_are_missing(tmp_path):
    offline = Validator(SchemaStore(dirs=[]))
    doc = item()
    assert offline.check(doc).status == "schema_unavailable"
    _no_datetime(doc)
    result = offline.check(doc)
    assert result.status == "invalid" and ("/properties", '"datetime" is a required property') in errors(result)


def test_a_missing_nested_ref_makes_the_schema_unavailable(tmp_path, schema_mirror):
    # projection v2 refers to proj.org's PROJJSON schema: without it, projection is unavailable
    root = tmp_path / "schemas"
    target = root / "stac-extensions.github.io/projection/v2.0.0/schema.json"
    target.parent.mkdir(parents=True)
    target.write_bytes((schema_mirror / "stac-extensions.github.io/projection/v2.0.0/schema.json").read_bytes())
    store = SchemaStore(dirs=[root])
    with pytest.raises(SchemaUnavailable, match="proj.org"):
        list(store.closure(PROJ2))
    result = Validator(store).check(item(stac_extensions=[PROJ2], properties={"datetime": "2019-04-20T00:00:00Z", "proj:code": "EPSG:26914"}))
    assert result.status == "schema_unavailable" and "proj.org" in result.unavailable[PROJ2]


def test_pull_copies_schemas_with_their_refs_byte_for_byte(tmp_path, schema_mirror):
    store = SchemaStore(dirs=[schema_mirror])
    written, failed = pull(store, [PROJ2], tmp_path / "pinned")
    assert not failed
    assert PROJ2 in written and "https://proj.org/schemas/v0.7/projjson.schema.json" in written
    for url in written:
        rel = url.split("://", 1)[1]
        assert (tmp_path / "pinned" / rel).read_bytes() == (schema_mirror / rel).read_bytes()


def test_multihash_checksums():
    hexd = "ab" * 32
    assert multihash(hexd, "sha2-256") == "1220" + hexd
    assert multihash("1220" + hexd, "sha2-256") == "1220" + hexd
    assert multihash("cd" * 16, "md5") == "d510" + "cd" * 16


# --------------------------------------------------------------------------- reference check


@pytest.fixture
def built_examples(tmp_path, schema_mirror) -> list[dict]:
    """Every document of the example catalogs as built."""
    import orjson

    from conftest import copy_examples, stacgit

    repo = copy_examples(tmp_path / "repo")
    assert stacgit(repo, "build", "-j", "1").exit_code == 0
    return [orjson.loads(p.read_bytes()) for p in sorted((repo / "build").rglob("*.json")) if p.name != "manifest.json"]


def test_fast_path_agrees_with_stac_validator(validator, schema_mirror, built_examples):
    from stac_validator.validate import StacValidate

    from stacgit.schemas import core_schema_files

    schema_map = {"https://" + p.relative_to(schema_mirror).as_posix(): str(p) for p in schema_mirror.rglob("*.json")}
    schema_map.update({url: str(path) for url, path in core_schema_files().items()})
    corpus = list(built_examples)
    for case in ("missing datetime", "bad geometry", "bad dgeo CID", "pointcloud v1 pc:encoding under the v2 URI"):
        doc = item()
        INVALID[case][0](doc)
        corpus.append(doc)
    corpus.append(item())
    assert len(corpus) > 80
    disagreements = []
    verdicts = {True: 0, False: 0}
    for doc in corpus:
        ours = validator.schema_check(doc).status == "valid"
        theirs = bool(StacValidate(schema_map=schema_map).validate_dict(copy.deepcopy(doc)))
        verdicts[theirs] += 1
        if ours != theirs:
            disagreements.append((doc.get("id"), ours, theirs))
    assert not disagreements
    assert verdicts[True] and verdicts[False] >= 4  # both verdicts are exercised


def test_lint_pairs_extension_fields_with_their_uris():
    from stacgit.lint import lint

    doc = item()
    doc["properties"]["view:sun_azimuth"] = 120.0
    doc["assets"]["data"]["eo:bands"] = [{"name": "b1", "file:size": 3}]
    found = {(p.schema, p.message.split(" ")[0]) for p in lint(doc)}
    assert ("lint:extension-uri", "'view:'") in found
    assert ("lint:extension-uri", "'eo:'") in found and ("lint:extension-uri", "'file:'") in found
    doc = item()
    del doc["properties"]["proj:code"]
    warnings = [p for p in lint(doc) if p.schema == "lint:extension-fields"]
    assert [p.pointer for p in warnings] == ["/stac_extensions/1"]


def test_lint_links_and_hrefs():
    from stacgit.lint import lint

    doc = item()
    doc["links"] = [
        {"rel": "parent", "href": "../../../../outside.json"},
        {"rel": "root", "href": "https://example.org/catalog.json"},
        {"rel": "about", "href": "file:///home/me/notes.html"},
    ]
    doc["assets"]["data"]["href"] = "/home/me/tile.laz"
    del doc["assets"]["data"]["roles"]
    found = {(p.schema, p.pointer, p.severity) for p in lint(doc, "c/tile-1/tile-1.json", "/build/cat")}
    assert ("lint:link-outside", "/links/0/href", "error") in found
    assert ("lint:link-absolute", "/links/1/href", "warning") in found
    assert ("lint:link-href", "/links/2/href", "warning") in found  # local hrefs: not what the spec forbids
    assert ("lint:asset-href", "/assets/data/href", "warning") in found
    assert ("lint:asset-roles", "/assets/data", "warning") in found


def test_large_trees_are_walked_by_the_workers_with_the_same_report(validator, tmp_path, monkeypatch):
    """A directory split into subtrees that two worker processes walk gives the report of a
    one-process walk: same counts, same examples in the same order, duplicates across subtrees."""
    import orjson

    from stacgit import validate as v
    from stacgit.validate import targets

    root = tmp_path / "tree"
    n = 0
    for year in ("2020", "2021"):
        for month in ("01", "02", "03"):
            for k in range(6):
                n += 1
                doc = item(id=f"tile-{year}-{month}-{k}")
                doc["links"].append({"rel": "parent", "href": "../../catalog.json" if k else "../../../../x.json", "type": "application/json"})
                if k == 5:
                    del doc["properties"]["datetime"]
                if (year, month, k) == ("2021", "03", 4):
                    doc["id"] = "tile-2020-01-4"  # the same id as an item in another subtree
                path = root / year / month / doc["id"] / f"{doc['id']}-{k}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(orjson.dumps(doc))
        (root / year / "catalog.json").write_bytes(orjson.dumps({"type": "Catalog", "stac_version": "1.1.0", "id": year, "description": "d", "links": []}))
    (root / "catalog.json").write_bytes(orjson.dumps({"type": "Catalog", "stac_version": "1.1.0", "id": "root", "description": "d", "links": []}))  # a tree
    monkeypatch.setattr(targets, "PARALLEL_MIN", 8)
    serial, _ = v.validate_targets(validator, v.collect_targets([str(root)], 1), 1)
    units = v.collect_targets([str(root)], 2)
    assert sum(isinstance(u, targets.Subtree) for u in units) >= 6  # split into month (or deeper) subtrees
    parallel, _ = v.validate_targets(validator, units, 2)
    assert parallel.to_json() == serial.to_json()
    report = serial.to_json()
    assert report["checked"] == n + 3
    rules = {e["schema"]: e["count"] for e in report["errors"]}
    assert rules["lint:duplicate-id"] == 1 and rules["lint:link-outside"] == 6
    assert report["invalid"] == 6 + 6 + 1 and report["valid"] == n + 3 - report["invalid"]
    loose = tmp_path / "loose"  # the same files without a root document: loose items, no tree to leave
    root.rename(loose)
    (loose / "catalog.json").unlink()
    rules = {e["schema"]: e["count"] for e in v.validate_targets(validator, v.collect_targets([str(loose)], 1), 1)[0].to_json()["errors"]}
    assert "lint:link-outside" not in rules and rules["lint:duplicate-id"] == 1


def test_stored_report_counts_repeated_verdicts_as_adding_each_does(tmp_path):
    """Stored verdicts repeat (the same unavailable schema, the same error on many items): the
    report adds each distinct result's documents in bulk once its groups have their examples,
    and must give what adding every document gives, with and without a limit."""
    import random

    from stacgit import state as st
    from stacgit.validate import DocResult, Problem, ValidationReport
    from stacgit.verdicts import stored_report

    rnd = random.Random(3)
    results = [
        DocResult("valid"),
        DocResult("schema_unavailable", [], {"https://x/eo.json": "offline"}),
        DocResult("schema_unavailable", [Problem("lint", "odd href", "/assets/a/href", "warning")], {"https://x/eo.json": "offline"}),
        DocResult("invalid", [Problem("core", "missing id", "/id", "error"), Problem("core", "missing id", "/bbox", "error")]),
        DocResult("invalid", [Problem("eo", "bad band", "/properties/eo:bands/0", "error")]),
    ]
    con = st.connect(tmp_path)
    rows = []
    for cat in ("a", "b"):
        for i in range(400):
            r = rnd.choice(results)
            rows.append((cat, f"c/{i:04d}.json", "c", f"i{i}", "sha", "set", r.status, r.to_row()))
    con.executemany("INSERT INTO verdicts VALUES (?,?,?,?,?,?,?,?)", rows)
    for failing_only in (False, True):
        for limit in (None, 0, 1, 7, 399, 400, 401, 650, 10_000):
            expected = ValidationReport()
            for cat in ("a", "b"):
                for _, path, _, item_id, _, _, status, detail in sorted(r for r in rows if r[0] == cat):
                    if (failing_only and status == "valid") or (limit is not None and expected.checked >= limit):
                        continue
                    expected.add(item_id, f"build/{cat}/{path}", DocResult.from_row(status, detail))
            got = stored_report(con, ["a", "b"], lambda c: f"build/{c}", failing_only=failing_only, limit=limit)
            assert got.to_json() == expected.to_json() and got.checked == expected.checked, (failing_only, limit)
