"""GeoParquet export benchmark: stacgit's partitioned write vs `rustac translate` on the same items.

    python bench/exports.py --items 100000 [--runs 3] [--work bench/work/exports]

Makes a catalog repository with bench/generate.py, builds it once, then times (whole processes,
median of --runs):
  stacgit   `stacgit build` after removing every GeoParquet partition and pgstac piece: the
            export tasks rewrite all partitions (nothing else is stale)
  rustac    `rustac translate items.ndjson out.parquet` on the same items (the collection's pgstac
            NDJSON concatenated), the peer tool
  change    `stacgit build` after changing 1,000 source records of one month (one source file):
            partitions rewritten
  diff      `stacgit diff --old <the build before the change> --format json`: the change summary
            between two builds differing in 1,000 items (the old build is a hard-link copy,
            which the build's atomic renames leave intact)
and peak RSS of each (GNU time). Before each timed command the page cache is dropped (when
this process may: root on Linux), so both tools start cold; `--warm` keeps it. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate import edit_records  # noqa: E402

VENV_BIN = Path(sys.executable).parent


COLD = [True]


def drop_caches() -> bool:
    """Empty the page cache (both tools then read their input from disk); False if not allowed."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(cmd: list[str], cwd: Path) -> tuple[float, int, str]:
    if COLD[0]:
        COLD[0] = drop_caches()
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{cmd} failed: {res.stderr[-2000:]}")
    rss_kb = int(res.stderr.strip().splitlines()[-1])
    return wall, rss_kb // 1024, res.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=HERE / "work" / "exports")
    ap.add_argument("--warm", action="store_true", help="do not drop the page cache before each command")
    ap.add_argument("--no-diff", dest="diff", action="store_false", help="skip the stacgit diff step (it copies the build)")
    args = ap.parse_args()
    COLD[0] = not args.warm
    repo = args.work / f"n{args.items}"
    stacgit = str(VENV_BIN / "stacgit")
    if not (repo / "build").exists():
        shutil.rmtree(repo, ignore_errors=True)
        subprocess.run([sys.executable, str(HERE / "generate.py"), "--repo", str(repo), "--items", str(args.items), "--collections", "1"], check=True)
        subprocess.run([stacgit, "build", "--no-validate"], cwd=repo, check=True, capture_output=True)
    cat = next(p for p in (repo / "build").iterdir() if (p / "manifest.json").exists())
    coll = next(p.name for p in cat.iterdir() if (p / "collection.json").exists())
    ndjson = args.work / f"n{args.items}-items.ndjson"
    with open(ndjson, "wb") as out:  # the collection's pgstac pieces, in partition order
        for piece in sorted((cat / "pgstac" / coll).glob("*.ndjson")):
            with open(piece, "rb") as f:
                shutil.copyfileobj(f, out)

    ours, theirs = [], []
    for _ in range(args.runs):
        shutil.rmtree(cat / coll / "parquet", ignore_errors=True)
        shutil.rmtree(cat / "pgstac" / coll, ignore_errors=True)
        ours.append(timed([stacgit, "build", "--no-validate", "--json"], repo))
        out = args.work / "rustac.parquet"
        out.unlink(missing_ok=True)
        theirs.append(timed([str(VENV_BIN / "rustac"), "translate", str(ndjson), str(out)], args.work))
    # a 1,000-record change, and the change summary against the build before it
    old_build = args.work / f"n{args.items}-old-build"
    shutil.rmtree(old_build, ignore_errors=True)
    if args.diff:
        subprocess.run(["cp", "-al", str(repo / "build"), str(old_build)], check=True)
    edit_records(repo, 1000, files=1)
    change = timed([stacgit, "build", "--no-validate", "--json"], repo)
    diffs = [timed([stacgit, "diff", "--old", str(old_build), "--format", "json"], repo) for _ in range(args.runs)] if args.diff else []
    shutil.rmtree(old_build, ignore_errors=True)
    partitions = len(list((cat / coll / "parquet").glob("*.parquet")))
    result = {
        "items": args.items,
        "stacgit_geoparquet_s": statistics.median(w for w, _, _ in ours),
        "stacgit_peak_rss_mb": max(r for _, r, _ in ours),
        "rustac_translate_s": statistics.median(w for w, _, _ in theirs),
        "rustac_peak_rss_mb": max(r for _, r, _ in theirs),
        "partitions": partitions,
        "change_1000_s": change[0],
        "change_1000_partitions_written": json.loads(change[2])["exports"]["partitions_written"],
        "cold_cache": COLD[0],
        "stacgit_runs_s": [round(w, 2) for w, _, _ in ours],
        "rustac_runs_s": [round(w, 2) for w, _, _ in theirs],
    }
    if diffs:
        result["diff_s"] = statistics.median(w for w, _, _ in diffs)
        result["diff_runs_s"] = [round(w, 2) for w, _, _ in diffs]
        result["diff_peak_rss_mb"] = max(r for _, r, _ in diffs)
        result["diff_totals"] = json.loads(diffs[0][2])["totals"]
    result["ratio_vs_rustac"] = round(result["stacgit_geoparquet_s"] / result["rustac_translate_s"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
