"""Benchmark full validation: `stacgit validate` of a built tree against stac-validator.

    python bench/validate.py --tree bench/work/n800000/build --runs 3 --sv-items 500

Both validate offline against the schema mirror (../shared/stac-schemas, or --mirror): stacgit
through STACGIT_SCHEMA_DIR, stac-validator through a URL -> file schema map of the whole
mirror. Whole-process wall times; stac-validator validates the first --sv-items item files of
the same tree (core + the items' extensions) with its Python API, one process, as documented.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIRROR = HERE.parent.parent / "shared" / "stac-schemas"

SV = r'''
import json, os, sys, time
from pathlib import Path
from stac_validator.validate import StacValidate
mirror, files = Path(sys.argv[1]), json.loads(sys.argv[2])
schema_map = {"https://" + p.relative_to(mirror).as_posix(): str(p) for p in mirror.rglob("*.json")}
valid = 0
for f in files:
    v = StacValidate(schema_map=schema_map)
    valid += bool(v.validate_dict(json.load(open(f))))
print(json.dumps({"valid": valid, "checked": len(files)}))
'''


def item_files(tree: Path, n: int) -> list[str]:
    out = []
    for d, dirs, files in os.walk(tree):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".json") and f not in ("catalog.json", "collection.json", "manifest.json"):
                out.append(os.path.join(d, f))
                if len(out) >= n:
                    return out
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=0, help="stacgit validate -j (default: stacgit's own default)")
    ap.add_argument("--sv-items", type=int, default=500)
    ap.add_argument("--mirror", default=str(MIRROR))
    args = ap.parse_args()
    env = {**os.environ, "STACGIT_SCHEMA_DIR": args.mirror, "XDG_CACHE_HOME": str(HERE / "work" / "xdg")}
    times, checked = [], None
    for r in range(args.runs):
        subprocess.run(["sync"])
        t = time.monotonic()
        jobs = ["-j", str(args.jobs)] if args.jobs else []
        p = subprocess.run([sys.executable, "-m", "stacgit", "validate", args.tree, "--offline", "--json", *jobs], capture_output=True, text=True, env=env)
        times.append(time.monotonic() - t)
        rep = json.loads(p.stdout)
        checked = rep["checked"]
        print(f"stacgit validate run {r + 1}: {times[-1]:.1f}s, checked {checked}, valid {rep['valid']}, invalid {rep['invalid']}, unavailable {rep['schema_unavailable']}, exit {p.returncode}", flush=True)
    files = item_files(Path(args.tree), args.sv_items)
    sv_times = []
    for r in range(args.runs):
        t = time.monotonic()
        p = subprocess.run([sys.executable, "-c", SV, args.mirror, json.dumps(files)], capture_output=True, text=True, env=env)
        sv_times.append(time.monotonic() - t)
        print(f"stac-validator run {r + 1}: {sv_times[-1]:.1f}s for {len(files)} items ({p.stdout.strip() or p.stderr[-300:]})", flush=True)
    ours = checked / statistics.median(times)
    theirs = len(files) / statistics.median(sv_times)
    result = {
        "documents": checked,
        "stacgit_s": times,
        "stacgit_median_s": statistics.median(times),
        "stacgit_docs_per_s": ours,
        "stac_validator_items": len(files),
        "stac_validator_s": sv_times,
        "stac_validator_items_per_s": theirs,
        "ratio": ours / theirs,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
