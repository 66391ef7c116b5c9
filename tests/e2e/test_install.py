"""A plain install, as a new user makes it: ``pip install .`` in a fresh virtual environment,
no extras. Building the examples there must validate every document for real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, copy_examples


@pytest.mark.integration
def test_plain_install_validates_every_document(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    src = tmp_path / "src"  # a copy, so the build of the package leaves nothing in the checkout
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", ".stacgit", "node_modules", "public", "*.egg-info", "__pycache__"))
    got = subprocess.run([str(py), "-m", "pip", "install", "-q", str(src)], capture_output=True, text=True, timeout=900)
    assert got.returncode == 0, got.stderr[-2000:]
    # what the test extra brings is absent: validation must not depend on it
    assert subprocess.run([str(py), "-c", "import jsonschema"], capture_output=True).returncode != 0

    repo = copy_examples(tmp_path / "repo")
    stacgit = [str(venv / "bin" / "stacgit")]
    res = subprocess.run([*stacgit, "build", "--json", "-j", "1"], cwd=repo, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    v = json.loads(res.stdout)["validation"]
    documents = sum(1 for p in (repo / "build").rglob("*.json") if p.name != "manifest.json")
    assert v["valid"] == v["validated"] == documents > 50
    assert v["invalid"] == 0 and v["schema_unavailable"] == 0

    # a document naming an extension schema nobody pinned: reported as unavailable; --strict fails
    doc_path = next(p for p in (repo / "build/shift").rglob("ang*.json"))
    doc = json.loads(doc_path.read_text())
    doc["stac_extensions"].append("https://stac-extensions.github.io/not-pinned/v1.0.0/schema.json")
    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps(doc))
    res = subprocess.run([*stacgit, "validate", str(loose), "--offline", "--json"], cwd=repo, capture_output=True, text=True)
    report = json.loads(res.stdout)
    assert res.returncode == 0 and report["schema_unavailable"] == 1
    assert [u["url"] for u in report["unavailable_schemas"]] == ["https://stac-extensions.github.io/not-pinned/v1.0.0/schema.json"]
    strict = subprocess.run([*stacgit, "validate", str(loose), "--offline", "--strict"], cwd=repo, capture_output=True, text=True)
    assert strict.returncode == 1 and "schema unavailable: https://stac-extensions.github.io/not-pinned" in strict.stdout
    assert "Traceback" not in strict.stderr
