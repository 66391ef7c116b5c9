"""Generate realistic synthetic sources: CMR/HLS-like granule records (polygon footprints,
6-15 assets after mapping, ~3-4 KB per item), NDJSON partitioned by collection and month.

Deterministic: the same arguments always give byte-identical files.

    python bench/generate.py --repo DIR --items 100000 [--collections 8]   # a whole catalog repo
    python bench/generate.py --sources-only catalogs/synthetic/sources --items 1200 --collections 2   # the committed example
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAPPING = HERE.parent / "mappings" / "hls-like.yaml"
BANDS_S30 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
BANDS_L30 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B09", "B10", "B11"]
START = datetime(2021, 1, 1, tzinfo=timezone.utc)
DAYS = 3 * 365


def collection_names(n: int) -> list[str]:
    return [f"hls-{'s30' if i % 2 == 0 else 'l30'}-{i // 2:02d}" for i in range(n)]


def _footprint(rng: random.Random, lon: float, lat: float) -> dict:
    pts = []
    for k in range(6):
        ang = 2 * math.pi * k / 6 + rng.uniform(-0.2, 0.2)
        r = rng.uniform(0.35, 0.5)
        pts.append([round(max(-179.9, min(179.9, lon + r * math.cos(ang))), 6), round(max(-89.9, min(89.9, lat + r * math.sin(ang))), 6)])
    pts.append(pts[0])
    return {"type": "Polygon", "coordinates": [pts]}


def make_record(rng: random.Random, coll: str, n: int) -> dict:
    s30 = "s30" in coll
    t = START + timedelta(seconds=rng.randrange(DAYS * 86400))
    zone = rng.randrange(1, 61)
    band = "CDEFGHJKLMNPQRSTUVWX"[rng.randrange(20)]
    tile = f"T{zone:02d}{band}{rng.choice('ABCDEFGHJK')}{rng.choice('ABCDEFGHJK')}"
    doy = t.strftime("%Y%j")
    gid = f"HLS.{'S30' if s30 else 'L30'}.{tile}.{doy}T{t.strftime('%H%M%S')}.v2.0.{n:07d}"
    lon = -180 + (zone - 0.5) * 6
    lat = -80 + "CDEFGHJKLMNPQRSTUVWX".index(band) * 8 + 4
    bands = BANDS_S30 if s30 else BANDS_L30
    k = rng.randrange(3, len(bands) + 1)
    return {
        "granule_ur": gid,
        "producer_granule_id": gid.rsplit(".", 1)[0],
        "collection_concept_id": f"C{2021957295 + len(coll)}-LPCLOUD",
        "begin": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rng.randrange(1000):03d}Z",
        "end": (t + timedelta(seconds=rng.randrange(1, 30))).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platform": rng.choice(["sentinel-2a", "sentinel-2b"]) if s30 else rng.choice(["landsat-8", "landsat-9"]),
        "instrument": "msi" if s30 else "oli-tirs",
        "tile": tile,
        "mgrs": {"utm_zone": zone, "latitude_band": band, "grid_square": tile[-2:]},
        "epsg": (32600 if lat >= 0 else 32700) + zone,
        "cloud_cover": rng.randrange(0, 101),
        "spatial_coverage": rng.randrange(1, 101),
        "sun_azimuth": round(rng.uniform(0, 360), 4),
        "sun_elevation": round(rng.uniform(5, 75), 4),
        "footprint": _footprint(rng, lon + rng.uniform(-2.5, 2.5), lat + rng.uniform(-3.5, 3.5)),
        "bands": ",".join(bands[:k]),
        "size_bytes": rng.randrange(10_000_000, 90_000_000),
        "production_date": (t + timedelta(days=rng.randrange(1, 20))).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_sources(out: Path, items: int, collections: int, seed: int = 42) -> dict[str, int]:
    """Write ``out/<collection>/<yyyy-mm>.ndjson``; return items per collection."""
    if out.exists():
        shutil.rmtree(out)
    names = collection_names(collections)
    counts = {}
    for ci, coll in enumerate(names):
        n_coll = items // collections + (1 if ci < items % collections else 0)
        rng = random.Random(f"{seed}-{coll}")
        parts: dict[str, list[str]] = {}
        for n in range(n_coll):
            rec = make_record(rng, coll, n)
            parts.setdefault(rec["begin"][:7], []).append(json.dumps(rec, separators=(",", ":"), sort_keys=True))
        d = out / coll
        d.mkdir(parents=True, exist_ok=True)
        for month, lines in sorted(parts.items()):
            (d / f"{month}.ndjson").write_text("\n".join(lines) + "\n")
        counts[coll] = n_coll
    return counts


def write_repo(repo: Path, items: int, collections: int, max_items: int = 1000) -> dict[str, int]:
    """A complete catalog repository with one catalog 'bench'."""
    cat = repo / "catalogs" / "bench"
    counts = write_sources(cat / "sources", items, collections)
    (repo / "mappings").mkdir(parents=True, exist_ok=True)
    shutil.copy(MAPPING, repo / "mappings" / "hls-like.yaml")
    lines = [
        "id: bench",
        "title: Benchmark catalog (HLS-like)",
        "description: Synthetic CMR/HLS-like granules for benchmarks.",
        "license: CC0-1.0",
        f"layout: {{max_items_per_catalog: {max_items}, split: [year, month, day]}}",
        "collections:",
    ]
    for coll in counts:
        lines += [
            f"  - id: {coll}",
            f"    title: {coll.upper()} (synthetic)",
            "    description: Synthetic harmonized Landsat/Sentinel-2 granules.",
            "    license: CC0-1.0",
            "    providers: [{name: LP DAAC, roles: [producer, host]}]",
            f"    source: {{type: file, path: 'sources/{coll}/*.ndjson'}}",
            "    mapping: mappings/hls-like.yaml",
        ]
    (cat / "catalog.yaml").write_text("\n".join(lines) + "\n")
    return counts


def edit_records(repo: Path, n: int = 1000, files: int | None = None) -> int:
    """Change ``n`` source records of a generated repository (their cloud cover), spread over
    its source files (or the first ``files`` of them); returns how many were changed."""
    sources = sorted((repo / "catalogs").rglob("*.ndjson"))[:files]
    per_file = -(-n // len(sources))
    edited = 0
    for src in sources:
        lines = src.read_bytes().splitlines(keepends=True)
        for i in range(min(per_file, len(lines), n - edited)):
            lines[i] = lines[i].replace(b'"cloud_cover":', b'"cloud_cover":1', 1)
            edited += 1
        src.write_bytes(b"".join(lines))
    return edited


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, required=True)
    ap.add_argument("--collections", type=int, default=8)
    ap.add_argument("--max-items", type=int, default=1000)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--repo", type=Path, help="write a whole catalog repository here")
    g.add_argument("--sources-only", type=Path, help="write only source files here")
    a = ap.parse_args()
    if a.repo:
        counts = write_repo(a.repo, a.items, a.collections, a.max_items)
    else:
        counts = write_sources(a.sources_only, a.items, a.collections)
    print(f"wrote {sum(counts.values())} records in {len(counts)} collections")


if __name__ == "__main__":
    main()
