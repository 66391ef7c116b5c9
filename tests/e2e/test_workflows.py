"""The GitHub Actions workflows: actionlint, and pr.yml's `run:` steps executed in order in a
temporary clone (what GitHub provides is stubbed: its environment variables and a `gh` that
records what it was asked)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
ACTIONLINT = REPO / "tests" / "tools" / "actionlint.cjs"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]


def actionlint(*files: Path) -> list[dict]:
    res = subprocess.run(["node", str(ACTIONLINT), *map(str, files)], capture_output=True, text=True, timeout=120)
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)


def test_all_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} == {"pr.yml", "publish.yml", "snapshot.yml", "ci.yml"}
    assert actionlint(*files) == []


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.no_such_thing }}\n")
    problems = actionlint(bad)
    assert problems and problems[0]["line"] == 6


def test_publish_never_interleaves_and_pr_fetches_history():
    publish = yaml.safe_load((WORKFLOWS / "publish.yml").read_text())
    assert publish["concurrency"]["cancel-in-progress"] is False
    pr = yaml.safe_load((WORKFLOWS / "pr.yml").read_text())
    checkout = next(s for s in pr["jobs"]["change-summary"]["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0


def test_pr_workflow_run_steps_work_in_a_clone(tmp_path, schema_mirror):
    origin = tmp_path / "origin"
    subprocess.run(["git", "clone", "-q", "--no-local", str(REPO), str(origin)], check=True)
    subprocess.run([*GIT, "-C", str(origin), "checkout", "-q", "-B", "main"], check=True, capture_output=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(origin), str(clone)], check=True)
    # the pull request: one patch
    subprocess.run([*GIT, "-C", str(clone), "switch", "-q", "-c", "pr"], check=True)
    rows = (clone / "catalogs/shift/sources/flightlines.csv").read_text().splitlines()
    item_id = rows[1].split(",")[0]
    (clone / "patches" / "0100-pr.yaml").write_text(
        f"description: pr\ntarget: {{catalog: shift, collection: aviris-ng-l2a}}\nselect: {{ids: [{item_id}]}}\n"
        "ops:\n  - {op: add, path: /properties/review, value: done}\n"
    )
    subprocess.run([*GIT, "-C", str(clone), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(clone), "commit", "-q", "-m", "pr"], check=True)
    os.symlink(REPO / ".venv", clone / ".venv")  # already installed: the Install step skips pip

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "gh-calls.jsonl"
    (bin_dir / "gh").write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    (bin_dir / "gh").chmod(0o755)
    summary = tmp_path / "step-summary.md"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_REPOSITORY": "example/catalog",
        "BASE_REF": "main",
        "PR_NUMBER": "7",
        "GH_TOKEN": "stub",
        "STACGIT_SCHEMA_DIR": str(schema_mirror),
        "STACGIT_OFFLINE": "1",
        "PYTHONWARNINGS": "ignore",
    }
    workflow = yaml.safe_load((WORKFLOWS / "pr.yml").read_text())
    steps = [s for s in workflow["jobs"]["change-summary"]["steps"] if "run" in s]
    assert len(steps) >= 6
    for step in steps:
        res = subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"step {step.get('name')!r} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"

    data = json.loads((clone / "diff" / "summary.json").read_text())
    assert data["totals"] == {"added": 0, "modified": 1, "deleted": 0}
    assert list(data["collections"]["shift/aviris-ng-l2a"]["items"]["modified"]) == [item_id]
    assert (clone / "diff" / "changes.geojson").exists()
    comment = (clone / "diff" / "comment.md").read_text()
    assert "**0 added, 1 modified, 0 deleted**" in comment
    assert summary.read_text() == comment
    gh = [json.loads(l) for l in calls.read_text().splitlines()]
    assert gh[0][:2] == ["api", "repos/example/catalog/issues/7/comments"]
    post = gh[-1]
    assert post[:4] == ["api", "--method", "POST", "repos/example/catalog/issues/7/comments"]
    assert post[-1].startswith("body=<!-- stacgit-change-summary -->\n## stacgit change summary")
