"""The shard work on Dask vs the local process pool, and what the coordinator costs per task.

    python bench/cluster.py --items 100000 [--runs 3] [--jobs 2]

Makes the bench repository (bench/generate.py, 8 collections, pinned schemas: validation is
real) and times whole clean `stacgit build` processes, median of --runs, in turn:
  pool      the default: a local process pool of --jobs processes
  local     `--scheduler local`: a LocalCluster of --jobs worker processes started by the build
  cluster   `--scheduler tcp://...`: a LocalCluster of --jobs worker processes started once by
            this script, as an existing cluster would be
Each run starts with a different mode; before each build the previous build and state are
removed (not timed), then `sync` and a 3 s pause. Every build's manifest (sha256 of every file) must
equal the pool build's. From the builds'
`--json` reports (`shards`: tasks sent, seconds the workers spent in them, seconds the
coordinator spent sending and saving them) it prints the coordinator's overhead per task and the
tasks per second it sustains, and a projection for a 50,000,000-item build on 100 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402
from run import ROOT, WORK, timed  # noqa: E402


def build(repo: Path, jobs: int, *extra: str) -> tuple[float, dict]:
    """A clean build: the previous build and state are removed first, outside the timing (removing
    100,000 files takes 10-25 s on this disk, and slows the writes that follow it: hence the sync
    and pause)."""
    for what in ("build", ".stacgit"):
        shutil.rmtree(repo / what, ignore_errors=True)
    subprocess.run(["sync"])
    time.sleep(3)
    secs, _, out = timed([sys.executable, "-m", "stacgit", "build", "--json", "-j", str(jobs), *extra], repo)
    report = json.loads(out)
    assert report["validation"]["invalid"] == 0 and report["validation"]["schema_unavailable"] == 0, report["validation"]
    return secs, report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    import distributed

    repo = WORK / f"dask{a.items}"
    shutil.rmtree(repo, ignore_errors=True)
    generate.write_repo(repo, a.items, 8)
    shutil.copytree(ROOT / "schemas", repo / "schemas")
    manifest = repo / "build" / "bench" / "manifest.json"
    times: dict[str, list[float]] = {"pool": [], "local": [], "cluster": []}
    reports: dict[str, list[dict]] = {k: [] for k in times}
    expected = None
    with distributed.LocalCluster(n_workers=a.jobs, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0") as cluster:
        modes = {"pool": (), "local": ("--scheduler", "local"), "cluster": ("--scheduler", cluster.scheduler_address)}
        for r in range(a.runs):
            order = list(modes)[r % 3:] + list(modes)[: r % 3]  # each mode goes first in turn: the disk is slower after deletions
            for mode in order:
                extra = modes[mode]
                secs, report = build(repo, a.jobs, *extra)
                assert report["items"]["written"] == a.items, report["items"]
                expected = expected or manifest.read_bytes()
                assert manifest.read_bytes() == expected, f"{mode}: the build differs from the pool build"
                times[mode].append(secs)
                reports[mode].append(report)
                print(f"[{a.items}] {mode} run {r + 1}: {secs:.1f}s; shards {report['shards']}", flush=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    sh = reports["cluster"][-1]["shards"]
    per_task_worker = sh["worker_seconds"] / sh["sent"]
    per_task_coord = sh["coordinator_seconds"] / sh["sent"]
    per_task_cpu = sh["coordinator_cpu_seconds"] / sh["sent"]
    items_per_shard = a.items / sh["sent"]
    print(f"\n## {time.strftime('%Y-%m-%d')}: Dask vs process pool, {a.items:,} items, {a.jobs} workers "
          f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, distributed {distributed.__version__})\n")
    print("| build | median s | runs | vs pool |")
    print("|---|---:|---|---:|")
    for k in times:
        print(f"| {k} | {med[k]:.1f} | {', '.join(f'{x:.1f}' for x in times[k])} | {med[k] / med['pool']:.2f}x |")
    print(f"\nShard tasks: {sh['sent']} of {items_per_shard:.0f} items; a task's own time {per_task_worker * 1000:.1f} ms, "
          f"the coordinator's per task (read prior, submit, save) {per_task_coord * 1000:.2f} ms = "
          f"{100 * per_task_coord / per_task_worker:.1f}% of it (prior {1000 * sh['prior_seconds'] / sh['sent']:.2f}, submit "
          f"{1000 * sh['submit_seconds'] / sh['sent']:.2f}, save {1000 * sh['save_seconds'] / sh['sent']:.2f} ms); its CPU time per task "
          f"(every thread of the process) {per_task_cpu * 1000:.2f} ms = {100 * per_task_cpu / per_task_worker:.1f}%; "
          f"the coordinator sustains {1 / per_task_cpu:,.0f} tasks/s on one core.")
    n, workers = 50_000_000, 100
    shards = n / items_per_shard
    map_s = shards * per_task_worker / workers
    coord_s = shards * per_task_cpu
    print(f"Projection for {n:,} items on {workers} workers at this shard size: {shards:,.0f} shard tasks; mapping "
          f"{map_s:,.0f} s of worker time per worker, coordinator {coord_s:,.0f} s: bound by "
          f"{'the coordinator' if coord_s > map_s else 'the workers'} for the shard stage.")
    (WORK / "cluster.json").write_text(json.dumps({"times": times, "reports": reports}, indent=2))


if __name__ == "__main__":
    main()
