"""`stacgit publish --to postgresql://...` vs `pypgstac load items --method insert`, on a real
PostgreSQL + PostGIS + pgstac started on 127.0.0.1 (tests/pg_server.py).

    python bench/pgstac.py --items 100000 [--runs 3]

Builds the bench repository (bench/generate.py, 8 collections), then, each run into fresh
databases, times whole processes:
  pypgstac  `pypgstac load collections` and `pypgstac load items --method insert` of every
            pgstac file of the build (the same NDJSON), one process per file, as the peer
  stacgit   `stacgit publish --to <dsn>` of the same build (a first publish)
  change    after a 3,000-record change (1,000 changed, 1,000 added, 1,000 removed, spread over
            every source file) and `stacgit build`: `stacgit publish` again
and checks that both databases hold the same items. Prints a Markdown section for RESULTS.md.
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
sys.path.insert(0, str(HERE.parent / "tests"))

import generate  # noqa: E402
from pg_server import PgServer  # noqa: E402
from run import ROOT, WORK, change_records, timed  # noqa: E402


def fresh_database(server: PgServer, name: str) -> str:
    import psycopg

    with psycopg.connect(server.dsn.rsplit("/", 1)[0] + "/template1", autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}"')
        con.execute(f'CREATE DATABASE "{name}" TEMPLATE postgres')
    return server.dsn.rsplit("/", 1)[0] + "/" + name


def count(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as con:
        return con.execute("SELECT count(*) FROM pgstac.items").fetchone()[0]


def pypgstac_load(repo: Path, dsn: str) -> float:
    exe = str(Path(sys.executable).parent / "pypgstac")
    pg = repo / "build" / "bench" / "pgstac"
    started = time.monotonic()
    subprocess.run([exe, "load", "collections", str(pg / "collections.ndjson"), "--dsn", dsn, "--method", "insert"], check=True, capture_output=True)
    for piece in sorted(pg.glob("*/*.ndjson")):
        subprocess.run([exe, "load", "items", str(piece), "--dsn", dsn, "--method", "insert"], check=True, capture_output=True)
    return time.monotonic() - started


def count_items(repo: Path) -> int:
    return sum(1 for piece in (repo / "build" / "bench" / "pgstac").glob("*/*.ndjson") for _ in piece.open("rb"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reuse", action="store_true", help="keep the bench repository of an earlier run (and its changes)")
    a = ap.parse_args()
    repo = WORK / f"pgstac{a.items}"
    changes = repo / ".bench-changes"  # how many changes were applied: each new one takes the next seed
    if not (a.reuse and changes.is_file()):
        shutil.rmtree(repo, ignore_errors=True)
        generate.write_repo(repo, a.items, 8)
        shutil.copytree(ROOT / "schemas", repo / "schemas")
        changes.write_text("0")
    subprocess.run([sys.executable, "-m", "stacgit", "build", "-C", str(repo)], check=True, capture_output=True)
    total = count_items(repo)
    server = PgServer().start()
    peer, ours, change = [], [], []
    try:
        for r in range(a.runs):
            dsn_peer, dsn_ours = fresh_database(server, f"peer{r}"), fresh_database(server, f"ours{r}")
            peer.append(pypgstac_load(repo, dsn_peer))
            secs, _, out = timed([sys.executable, "-m", "stacgit", "publish", "--to", dsn_ours, "--json"], repo)
            ours.append(secs)
            assert count(dsn_peer) == count(dsn_ours) == total
            print(f"[{a.items}] run {r + 1}: pypgstac load {peer[-1]:.1f}s, stacgit publish {ours[-1]:.1f}s", flush=True)
        for r in range(a.runs):
            seed = int(changes.read_text()) + 1
            change_records(repo, seed)
            changes.write_text(str(seed))
            subprocess.run([sys.executable, "-m", "stacgit", "build", "-C", str(repo)], check=True, capture_output=True)
            secs, _, out = timed([sys.executable, "-m", "stacgit", "publish", "--to", dsn_ours, "--json"], repo)
            items = json.loads(out)["catalogs"][0]["items"]
            assert items == {"inserted": 1000, "updated": 1000, "deleted": 1000}, items
            change.append(secs)
            print(f"[{a.items}] change {r + 1}: stacgit publish {secs:.1f}s ({items})", flush=True)
    finally:
        server.stop()
    med = {k: statistics.median(v) for k, v in (("pypgstac", peer), ("stacgit", ours), ("change", change))}
    print(f"\n## {time.strftime('%Y-%m-%d')}: publish to pgstac, {a.items:,} items ({platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, PostgreSQL from Debian, pgstac via pypgstac)\n")
    print("| | median s | runs |\n|---|---:|---|")
    print(f"| `pypgstac load items --method insert` (every pgstac file) | {med['pypgstac']:.1f} | {', '.join(f'{x:.1f}' for x in peer)} |")
    print(f"| `stacgit publish --to postgresql://` (first) | {med['stacgit']:.1f} | {', '.join(f'{x:.1f}' for x in ours)} |")
    print(f"| 3,000-record change, `stacgit publish` | {med['change']:.1f} | {', '.join(f'{x:.1f}' for x in change)} |")
    print(f"\nFirst publish vs pypgstac: {med['pypgstac'] / med['stacgit']:.2f}x")
    (WORK / "pgstac.json").write_text(json.dumps({"pypgstac": peer, "stacgit": ours, "change": change}, indent=2))


if __name__ == "__main__":
    main()
