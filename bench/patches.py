"""Benchmark patch builds on an already built benchmark repository.

    python bench/patches.py --repo bench/work/n800000 [--runs 3]

Measures, as whole-process wall times (median of --runs, each run adds the patch, builds,
then removes it and builds again untimed):
* adding a patch that selects 100 items by id (items written must be exactly 100);
* adding a CQL2 patch matching ~10% of the largest collection (``eo:cloud_cover >= 91``).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path


def build(repo: Path) -> tuple[float, dict]:
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "stacgit", "build", "--json"], cwd=repo, capture_output=True, text=True)
    secs = time.monotonic() - t
    if out.returncode != 0:
        raise SystemExit(f"build failed: {out.stderr[-2000:]}")
    return secs, json.loads(out.stdout)


def timed_patch(repo: Path, name: str, text: str) -> tuple[float, dict]:
    path = repo / "patches" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    try:
        return build(repo)
    finally:
        path.unlink()
        build(repo)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    con = sqlite3.connect(a.repo / ".stacgit" / "state.sqlite3")
    sizes = con.execute("SELECT catalog, collection, COUNT(*) FROM records GROUP BY catalog, collection ORDER BY 3 DESC").fetchall()
    cat, big, n_big = sizes[0]
    ids = [r[0] for r in con.execute("SELECT item_id FROM records WHERE catalog=? AND collection=? ORDER BY item_id", (cat, big))]
    con.close()
    total = sum(s[2] for s in sizes)
    build(a.repo)
    id_runs, cql_runs = [], []
    for r in range(a.runs):
        pick = sorted(random.Random(r).sample(ids, 100))
        secs, s = timed_patch(a.repo, "bench-ids.yaml", json.dumps({
            "description": "bench: 100 ids", "target": {"catalog": cat, "collection": big},
            "select": {"ids": pick}, "ops": [{"op": "add", "path": "/properties/bench_run", "value": r}],
        }))
        assert s["items"]["written"] == 100 and s["records"]["mapped"] == 0, s["items"]
        id_runs.append(secs)
        print(f"[{total}] 100-id patch: {secs:.2f}s, files written {s['files_written']}", flush=True)
        secs, s = timed_patch(a.repo, "bench-cql2.yaml", json.dumps({
            "description": "bench: cloudy", "target": {"catalog": cat, "collection": big},
            "select": {"cql2": "eo:cloud_cover >= 91"}, "ops": [{"op": "add", "path": "/properties/bench_cloudy", "value": r}],
        }))
        matched = s["patches"]["patches/bench-cql2.yaml"]["patched"]
        assert s["items"]["written"] == matched and s["records"]["mapped"] == 0, s["items"]
        cql_runs.append(secs)
        print(f"[{total}] CQL2 patch on {big} ({n_big} items): {matched} matched ({matched / n_big:.1%}), {secs:.2f}s", flush=True)
    print(json.dumps({
        "items": total, "collection": big, "collection_items": n_big,
        "id_patch_s": id_runs, "id_patch_median_s": statistics.median(id_runs),
        "cql2_patch_s": cql_runs, "cql2_patch_median_s": statistics.median(cql_runs),
    }, indent=2))


if __name__ == "__main__":
    main()
