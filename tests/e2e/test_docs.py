"""The README's walk-through, run as written: each command of "Your first catalog in five
minutes" in a fresh folder, with the edit it asks for in between."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def _blocks(section: str) -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return [[re.sub(r"\s+#.*$", "", line) for line in b.strip().splitlines()] for b in re.findall(r"```\n(.*?)```", body, re.S)]


def test_the_readme_walkthrough_works_as_written(tmp_path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
        "PYTHONWARNINGS": "ignore",
    }
    first, second = _blocks("Your first catalog in five minutes")

    def run(lines: list[str]) -> str:
        res = subprocess.run(["bash", "-eo", "pipefail", "-c", "\n".join(lines)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout + res.stderr

    out = run(first)
    assert "up to date" in out and "valid 4, invalid 0, schema unavailable 0" in out
    repo = tmp_path / "first"
    csv = repo / "catalogs/example/sources/scenes.csv"
    csv.write_text(csv.read_text().replace("scene-002,2024-05-02T10:20:00Z,2.35,48.86,40", "scene-002,2024-05-02T10:20:00Z,2.35,48.86,10"))
    out = run([f"cd {repo}", *second])
    assert "**0 added, 1 modified, 0 deleted**" in out and "```geojson" in out
    assert "items written 1," in out and "patched 1" in out
    index = json.loads((repo / "public/example/changes/index.json").read_text())
    assert index["feeds"][0]["added"] == 2 and index["feeds"][0]["snapshot"] is True
    assert json.loads((repo / "public/example/scenes/scene-001/scene-001.json").read_text())["properties"]["platform"] == "sentinel-2a"
