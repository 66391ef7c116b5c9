"""Benchmark `stacgit snapshot` against pystac-client's sequential `items_as_dicts()`.

    python bench/snapshot.py [--items 100000] [--latency 0.05] [--runs 3]

A `rustac serve` holds the items: in memory (`--server memory`, which scans every item per
request), or over a real pgstac (`--server pgstac`: PostgreSQL + PostGIS started on 127.0.0.1 by
tests/pg_server.py, the items loaded through pgstac's items_staging, `rustac serve --pgstac`);
requests go through the test suite's proxy (tests/stac_server.py), which adds the latency. Both tools run the same query (one collection,
one year) with the same page size, as whole processes; wall time median of --runs and peak RSS.
Also measured without added latency (stacgit straight at rustac) for items/s.
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
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from run import timed  # noqa: E402
from stac_server import FaultProxy, StacServer, free_port, wait_until_served  # noqa: E402

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


class PgstacServer:
    """`rustac serve --pgstac` over a pgstac database on a local PostgreSQL, behind the proxy."""

    def __init__(self, proxy: FaultProxy):
        from pg_server import PgServer

        self.proxy = proxy
        self.pg = PgServer().start()
        self.proc: subprocess.Popen | None = None

    def serve(self, items: list[dict], collection: str) -> None:
        import psycopg

        with psycopg.connect(self.pg.dsn, autocommit=True) as con:
            con.execute("ALTER DATABASE postgres SET search_path TO pgstac, public")  # what rustac's queries expect
            con.execute("SET search_path TO pgstac, public")
            coll = {"type": "Collection", "stac_version": "1.1.0", "id": collection, "description": "bench", "license": "CC0-1.0",
                    "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]}}, "links": []}
            con.execute("SELECT pgstac.upsert_collection(%s::jsonb)", (json.dumps(coll),))
            con.execute("UPDATE pgstac.collections SET partition_trunc='month' WHERE id=%s", (collection,))
            with con.transaction(), con.cursor().copy("COPY pgstac.items_staging (content) FROM STDIN") as copy:
                for item in items:
                    copy.write_row((json.dumps(item),))
        port = free_port()
        exe = shutil.which("rustac") or str(Path(sys.executable).with_name("rustac"))
        self.proc = subprocess.Popen([exe, "serve", "--pgstac", self.pg.dsn, "--addr", f"127.0.0.1:{self.proxy.port}", "--bind", f"127.0.0.1:{port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proxy.upstream = f"http://127.0.0.1:{port}"
        wait_until_served(f"{self.proxy.upstream}/collections/{collection}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.pg.stop()


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
    ap.add_argument("--server", choices=("memory", "pgstac"), default="memory")
    a = ap.parse_args()
    work = HERE / "work" / "snapshot"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    proxy = FaultProxy()
    server = StacServer(work / "server", proxy) if a.server == "memory" else PgstacServer(proxy)
    t = time.monotonic()
    server.serve(make_items(a.items), collection="bench")
    print(f"rustac serve ({a.server}) up with {a.items} items in {time.monotonic() - t:.1f}s", flush=True)
    res: dict = {"server": a.server, "items": a.items, "latency_s": a.latency, "page_size": PAGE, "concurrency": a.concurrency}
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
    (HERE / "work" / f"snapshot-{a.server}-results.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
