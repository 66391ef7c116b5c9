"""Benchmark `stacgit snapshot` against pystac-client's sequential `items_as_dicts()`.

    python bench/snapshot.py [--items 100000] [--latency 0.05] [--runs 3]

A `rustac serve` (in-memory) holds the items; requests go through the test suite's proxy
(tests/stac_server.py), which adds the latency. Both tools run the same query (one collection,
one year) with the same page size, as whole processes; wall time median of --runs and peak RSS.
Also measured without added latency (stacgit straight at rustac) for items/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from run import timed  # noqa: E402
from stac_server import FaultProxy, StacServer  # noqa: E402

PAGE = 250
RANGE = "2020-01-01/2020-12-31"

PYSTAC_CLIENT = r"""
import sys, json, time
from pystac_client import Client
url, page = sys.argv[1], int(sys.argv[2])
n = 0
for item in Client.open(url).search(collections=["bench"], datetime="2020-01-01T00:00:00Z/2020-12-31T23:59:59Z", limit=page).items_as_dicts():
    n += 1
print(json.dumps({"items": n}))
"""


def make_items(n: int) -> list[dict]:
    out = []
    for k in range(n):
        minute = k * (366 * 24 * 60) // n
        day, rest = divmod(minute, 24 * 60)
        t = time.gmtime(1577836800 + day * 86400 + rest * 60)
        lon, lat = (k % 360) - 180 + 0.5, (k % 170) - 85 + 0.5
        out.append({
            "type": "Feature", "stac_version": "1.1.0", "id": f"G{k:07d}", "collection": "bench",
            "geometry": {"type": "Polygon", "coordinates": [[[lon, lat], [lon + 0.4, lat], [lon + 0.4, lat + 0.4], [lon, lat + 0.4], [lon, lat]]]},
            "bbox": [lon, lat, lon + 0.4, lat + 0.4],
            "properties": {"datetime": time.strftime("%Y-%m-%dT%H:%M:%SZ", t), "eo:cloud_cover": k % 100, "platform": "sentinel-2a"},
            "links": [],
            "assets": {f"B{b:02d}": {"href": f"https://data.example.com/{k}/B{b:02d}.tif", "type": "image/tiff; application=geotiff", "roles": ["data"]} for b in range(1, 7)},
        })
    return out


def repo_for(root: Path, url: str, concurrency: int) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    cat = root / "catalogs" / "mirror"
    cat.mkdir(parents=True)
    src = {"type": "stac-api", "url": url, "collection": "bench", "datetime": RANGE, "page_size": PAGE, "window": "month",
           "concurrency": concurrency, "rate": 1000, "timeout": 60}
    (cat / "catalog.yaml").write_text(json.dumps({"id": "mirror", "description": "bench", "collections": [{"id": "bench", "description": "bench", "source": src}]}))
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=12)
    a = ap.parse_args()
    work = HERE / "work" / "snapshot"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    proxy = FaultProxy()
    server = StacServer(work / "server", proxy)
    t = time.monotonic()
    server.serve(make_items(a.items), collection="bench")
    print(f"rustac serve up with {a.items} items in {time.monotonic() - t:.1f}s", flush=True)
    res: dict = {"items": a.items, "latency_s": a.latency, "page_size": PAGE, "concurrency": a.concurrency}
    try:
        for label, latency in (("latency", a.latency), ("no_latency", 0.0)):
            proxy.latency = latency
            sg, sg_rss, pc, pc_rss = [], [], [], []
            for r in range(a.runs):
                repo = repo_for(work / "repo", proxy.url, a.concurrency)
                secs, rss, out = timed([sys.executable, "-m", "stacgit", "snapshot", "--json"], repo)
                summary = json.loads(out)["collections"]["mirror/bench"]
                assert summary["records"] == a.items and summary["complete"], summary
                sg.append(secs)
                sg_rss.append(rss)
                secs, rss, out = timed([sys.executable, "-c", PYSTAC_CLIENT, proxy.url, str(PAGE)], work)
                assert json.loads(out)["items"] == a.items
                pc.append(secs)
                pc_rss.append(rss)
                print(f"[{label}] run {r + 1}: stacgit {sg[-1]:.1f}s ({sg_rss[-1]:.0f} MB), pystac-client {pc[-1]:.1f}s ({pc_rss[-1]:.0f} MB)", flush=True)
            res[label] = {
                "stacgit_s": sg, "pystac_client_s": pc,
                "stacgit_median_s": statistics.median(sg), "pystac_client_median_s": statistics.median(pc),
                "ratio": statistics.median(pc) / statistics.median(sg),
                "stacgit_items_per_s": a.items / statistics.median(sg),
                "stacgit_peak_rss_mb": max(sg_rss), "pystac_client_peak_rss_mb": max(pc_rss),
            }
    finally:
        server.stop()
        proxy.close()
    print(json.dumps(res, indent=2))
    (HERE / "work" / "snapshot-results.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
