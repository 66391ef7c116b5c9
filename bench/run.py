"""Benchmark stacgit builds against a bare orjson write loop and the pystac path.

    python bench/run.py --items 100000 [--items 800000] [--pystac 10000 --pystac 100000] [--runs 3]

Whole-process wall times (median of --runs), peak RSS summed over the process tree (sampled
from /proc), and ratios measured in the same run. Work trees go to bench/work/ (git-ignored).
Prints a Markdown section to append to bench/RESULTS.md and writes bench/work/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402


def _tree_rss_kb(pid: int) -> int:
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in os.listdir(f"/proc/{p}/task"):
                stack.extend(int(c) for c in open(f"/proc/{p}/task/{task}/children").read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS of the process tree in MB, stdout)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kb(proc.pid))
            done.wait(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    elapsed = time.monotonic() - start
    done.set()
    t.join()
    if proc.returncode not in (0,):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    return elapsed, peak / 1024, out


def stacgit_build(repo: Path, jobs: int) -> tuple[float, float, dict]:
    secs, rss, out = timed([sys.executable, "-m", "stacgit", "build", "--json", "-j", str(jobs)], repo)
    return secs, rss, json.loads(out)


def change_records(repo: Path, seed: int) -> None:
    """Change 1,000 records, add 1,000 and remove 1,000, spread over the source files."""
    rng = random.Random(seed)
    files = sorted((repo / "catalogs" / "bench" / "sources").rglob("*.ndjson"))
    lines = {f: f.read_text().splitlines() for f in files}
    refs = [(f, i) for f in files for i in range(len(lines[f]))]
    picked = rng.sample(refs, 2000)
    modify, remove = picked[:1000], set(picked[1000:])
    for f, i in modify:
        rec = json.loads(lines[f][i])
        rec["cloud_cover"] = (rec["cloud_cover"] + 1 + seed) % 101
        lines[f][i] = json.dumps(rec, separators=(",", ":"), sort_keys=True)
    for f in files:
        kept = [l for i, l in enumerate(lines[f]) if (f, i) not in remove]
        lines[f] = kept
    for n in range(1000):
        f = rng.choice(files)
        rec = generate.make_record(rng, f.parent.name, 9_000_000 + seed * 10_000 + n)
        day = min(int(rec["begin"][8:10]), 28)  # keep the record in its month's file, a valid date
        begin, end = (datetime.strptime(rec[k][:19], "%Y-%m-%dT%H:%M:%S") for k in ("begin", "end"))
        rec["begin"] = f"{f.stem}-{day:02d}{rec['begin'][10:]}"
        # the same duration (moving both days apart would put the end before the start)
        rec["end"] = (datetime.strptime(rec["begin"][:19], "%Y-%m-%dT%H:%M:%S") + (end - begin)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines[f].append(json.dumps(rec, separators=(",", ":"), sort_keys=True))
    for f in files:
        f.write_text("\n".join(lines[f]) + "\n")


BARE = r'''
import orjson, os, sys, time, json
from multiprocessing import Barrier, Process
src, dst, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
paths = sorted(os.path.relpath(os.path.join(d, f), src) for d, _, fs in os.walk(src) for f in fs if f.endswith('.json') and f not in ('catalog.json', 'collection.json', 'manifest.json'))
def work(part, barrier):
    docs = [(p, orjson.loads(open(os.path.join(src, p), 'rb').read())) for p in part]
    barrier.wait()
    made = set()
    for p, doc in docs:
        out = os.path.join(dst, p); d = os.path.dirname(out)
        if d not in made:
            os.makedirs(d, exist_ok=True); made.add(d)
        with open(out, 'wb') as f:
            f.write(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b'\n')
barrier = Barrier(jobs + 1)
procs = [Process(target=work, args=(paths[i::jobs], barrier)) for i in range(jobs)]
[p.start() for p in procs]
barrier.wait(); t = time.monotonic()
[p.join() for p in procs]
print(json.dumps({"seconds": time.monotonic() - t, "files": len(paths)}))
'''

FLOOR = r'''
import json, os, sys, time
from multiprocessing import Barrier, Process, Queue
import jsonschema_rs, orjson
from stacgit.schemas import SchemaStore
from stacgit.validate import core_schema_url
src, schema_dir, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs if f.endswith('.json') and f != 'manifest.json')
def work(part, barrier, out):
    store = SchemaStore(dirs=[__import__('pathlib').Path(schema_dir)])
    compiled = {}
    def validator(url):
        if url not in compiled:
            compiled[url] = jsonschema_rs.validator_for(store.get(url), retriever=store.get, base_uri=url, validate_formats=False)
        return compiled[url]
    for p in part[:1]:  # compile the validators a build would have compiled, before the clock starts
        doc = orjson.loads(open(p, 'rb').read())
        for url in [core_schema_url(doc), *doc.get('stac_extensions', [])]:
            validator(url)
    barrier.wait()
    invalid = 0
    for p in part:
        with open(p, 'rb') as f:
            doc = orjson.loads(f.read())
        for url in [core_schema_url(doc), *doc.get('stac_extensions', [])]:
            if not validator(url).is_valid(doc):
                invalid += 1
    out.put(invalid)
barrier, out = Barrier(jobs + 1), Queue()
procs = [Process(target=work, args=(paths[i::jobs], barrier, out)) for i in range(jobs)]
[p.start() for p in procs]
barrier.wait(); t = time.monotonic()
invalid = sum(out.get() for _ in procs)
[p.join() for p in procs]
print(json.dumps({"seconds": time.monotonic() - t, "files": len(paths), "invalid": invalid}))
'''
"""The validation floor: read, parse and validate every written document (core schema and each
declared extension, jsonschema-rs validators compiled once per process) over all cores. A
validating build cannot take less."""

PYSTAC = r'''
import json, os, sys, time
import pystac
src, dst, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
items = []
for d, _, fs in sorted(os.walk(src)):
    for f in sorted(fs):
        if f.endswith('.json') and f not in ('catalog.json', 'collection.json', 'manifest.json'):
            doc = json.load(open(os.path.join(d, f)))
            if doc.get('type') != 'Feature':  # the change feed's index.json
                continue
            items.append(doc)
            if len(items) >= limit: break
    if len(items) >= limit: break
for it in items:
    it['links'] = []
t = time.monotonic()
cat = pystac.Catalog(id='bench', description='bench')
colls = {}
for it in items:
    cid = it['collection']
    if cid not in colls:
        colls[cid] = pystac.Collection(id=cid, description=cid, extent=pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[None, None]])), license='CC0-1.0')
        cat.add_child(colls[cid])
    colls[cid].add_item(pystac.Item.from_dict(it, preserve_dict=False))
for c in colls.values():
    c.update_extent_from_items()
cat.normalize_hrefs(dst)
cat.save(catalog_type=pystac.CatalogType.ABSOLUTE_PUBLISHED)
print(json.dumps({"seconds": time.monotonic() - t, "items": len(items)}))
'''


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def bench_n(n: int, runs: int, jobs: int, pystac_ns: list[int]) -> dict:
    repo = WORK / f"n{n}"
    if repo.exists():
        shutil.rmtree(repo)
    t = time.monotonic()
    generate.write_repo(repo, n, 8)
    shutil.copytree(ROOT / "schemas", repo / "schemas")  # pinned, as a catalog repository does: validation is real
    print(f"[{n}] generated sources in {time.monotonic() - t:.1f}s", flush=True)
    res: dict = {"items": n, "jobs": jobs}

    def settle() -> None:
        subprocess.run(["sync"])
        time.sleep(3)

    full, rss, bare, floor = [], [], [], []
    for r in range(runs):
        # stacgit and the bare loop run alternately under the same conditions: old trees
        # deleted, dirty pages synced, a pause for the disk (ext4 with discard) to settle
        for d in ("build", ".stacgit"):
            shutil.rmtree(repo / d, ignore_errors=True)
        settle()
        secs, peak, summary = stacgit_build(repo, jobs)
        assert summary["items"]["written"] == n, summary["items"]
        assert summary["validation"]["schema_unavailable"] == 0 and summary["validation"]["invalid"] == 0, summary["validation"]
        full.append(secs)
        rss.append(peak)
        dst = WORK / f"bare{n}"
        shutil.rmtree(dst, ignore_errors=True)
        settle()
        out = subprocess.run([sys.executable, "-c", BARE, str(repo / "build" / "bench"), str(dst), str(jobs)], capture_output=True, text=True, check=True)
        bare.append(json.loads(out.stdout)["seconds"])
        shutil.rmtree(dst, ignore_errors=True)
        settle()
        out = subprocess.run([sys.executable, "-c", FLOOR, str(repo / "build" / "bench"), str(repo / "schemas"), str(jobs)], capture_output=True, text=True, check=True)
        checked = json.loads(out.stdout)
        assert checked["invalid"] == 0, checked
        floor.append(checked["seconds"])
        print(f"[{n}] full build {r + 1}: {secs:.1f}s, peak RSS {peak:.0f} MB; bare loop {bare[-1]:.1f}s; validation floor {floor[-1]:.1f}s", flush=True)
    res["full_s"] = full
    res["full_peak_rss_mb"] = max(rss)
    res["bare_s"] = bare
    res["floor_s"] = floor

    noop = []
    for r in range(runs):
        secs, _, summary = stacgit_build(repo, jobs)
        assert summary["files_written"] == 0, summary
        noop.append(secs)
    res["noop_s"] = noop
    print(f"[{n}] no-op: {median(noop):.2f}s", flush=True)

    change = []
    for r in range(runs):
        change_records(repo, r + 1)
        secs, _, summary = stacgit_build(repo, jobs)
        items = summary["items"]
        assert items["written"] == 2000 and items["deleted"] == 1000, items
        change.append(secs)
        res.setdefault("change_items", []).append(items)
    res["change_s"] = change
    print(f"[{n}] 3,000-record change: {median(change):.2f}s ({res['change_items'][-1]})", flush=True)

    res["pystac"] = {}
    for pn in pystac_ns:
        if pn > n:
            continue
        dst = WORK / f"pystac{pn}"
        shutil.rmtree(dst, ignore_errors=True)
        out = subprocess.run([sys.executable, "-c", PYSTAC, str(repo / "build" / "bench"), str(dst), str(pn)], capture_output=True, text=True, check=True)
        res["pystac"][pn] = json.loads(out.stdout)["seconds"]
        shutil.rmtree(dst, ignore_errors=True)
        print(f"[{n}] pystac path at {pn}: {res['pystac'][pn]:.1f}s", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, action="append", required=True)
    ap.add_argument("--pystac", type=int, action="append", default=[])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    WORK.mkdir(exist_ok=True)
    results = [bench_n(n, a.runs, a.jobs, a.pystac) for n in a.items]
    import orjson
    import pystac

    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {"orjson": orjson.__version__, "pystac": pystac.__version__},
    }
    (WORK / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\n## {meta['date']} — {meta['machine']}, Python {meta['python']}, pystac {meta['versions']['pystac']}\n")
    print("| N | full build | bare orjson loop | validation floor | floor (bare + validation) | ratio to floor | peak RSS | no-op | 3,000-record change | pystac (measured) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ps = ", ".join(f"{k}: {v:.1f}s" for k, v in r["pystac"].items()) or "-"
        print(
            f"| {r['items']:,} | {median(r['full_s']):.1f}s | {median(r['bare_s']):.1f}s | {median(r['floor_s']):.1f}s "
            f"| {median(r['bare_s']) + median(r['floor_s']):.1f}s | {median(r['full_s']) / (median(r['bare_s']) + median(r['floor_s'])):.2f}x "
            f"| {r['full_peak_rss_mb']:.0f} MB | {median(r['noop_s']):.2f}s | {median(r['change_s']):.2f}s | {ps} |"
        )


if __name__ == "__main__":
    main()
