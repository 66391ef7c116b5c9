"""The official STAC 1.1.0 examples (tests/data/stac-examples, with their provenance) validate
in stacgit, each file on its own, against the schemas this repository pins: no schema error and
no lint error (lint warns about what the spec allows)."""

from __future__ import annotations

import pytest

from conftest import REPO, stacgit

EXAMPLES = sorted((REPO / "tests/data/stac-examples/v1.1.0").rglob("*.json"))
NOT_PINNED = {"https://stac-extensions.github.io/remote-data/v1.0.0/schema.json"}  # not in the mirror the pins came from


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.relative_to(REPO / "tests/data/stac-examples").as_posix())
def test_official_example_validates(path):
    res = stacgit(REPO, "validate", str(path), "--offline", "--json")
    report = res.json
    assert report["checked"] == 1 and report["invalid"] == 0, report["errors"]
    assert report["errors"] == []
    assert {u["url"] for u in report["unavailable_schemas"]} <= NOT_PINNED
    assert res.exit_code == 0


def test_the_examples_as_one_directory_schema_only():
    """Together they are not one catalog (two examples share an item id, which lint reports);
    ``--schema-only`` judges each by the schemas alone."""
    folder = str(REPO / "tests/data/stac-examples/v1.1.0")
    report = stacgit(REPO, "validate", folder, "--offline", "--json", "--schema-only").json
    assert report["checked"] == len(EXAMPLES) and report["invalid"] == 0, report["errors"]
    linted = stacgit(REPO, "validate", folder, "--offline", "--json").json
    assert [e["schema"] for e in linted["errors"]] == ["lint:duplicate-id"]
