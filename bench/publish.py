"""Publish benchmark: `stacgit publish` vs `aws s3 sync` (awscli) of the same build, both
against moto's S3 server on 127.0.0.1.

    python bench/publish.py --items 100000 [--runs 3] [--work bench/work/publish]

Makes a catalog repository with bench/generate.py (one collection), builds it once, starts
`moto_server`, then times whole processes:
  first     the first publish of the build (stacgit into one bucket, aws s3 sync into another)
  no-op     publishing the same build again (median of --runs)
  change    after changing 1,000 source records and rebuilding: the upload, and how many
            objects each tool sent (stacgit's count must equal the files whose bytes changed)
Prints JSON. Needs the bench extra (`pip install -e '.[bench]'`: awscli, moto[server]).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate import edit_records  # noqa: E402

VENV_BIN = Path(sys.executable).parent
ENV = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "PYTHONWARNINGS": "ignore",
}


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{cmd} failed: {res.stderr[-2000:]}")
    return wall, res.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_files(cat_dir: Path) -> dict[str, bytes]:
    files = json.loads((cat_dir / "manifest.json").read_bytes())["files"]
    return {rel: (cat_dir / rel).read_bytes() for rel in files}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--work", type=Path, default=HERE / "work" / "publish")
    args = ap.parse_args()
    repo = args.work / f"n{args.items}"
    stacgit, aws = str(VENV_BIN / "stacgit"), str(VENV_BIN / "aws")
    if not (repo / "build").exists():
        shutil.rmtree(repo, ignore_errors=True)
        subprocess.run([sys.executable, str(HERE / "generate.py"), "--repo", str(repo), "--items", str(args.items), "--collections", "1"], check=True)
        subprocess.run([stacgit, "build", "--no-validate"], cwd=repo, check=True, capture_output=True)
    cat_dir = next(p for p in (repo / "build").iterdir() if (p / "manifest.json").exists())
    cat = cat_dir.name

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        for bucket in ("ours", "theirs"):
            run([aws, "s3api", "create-bucket", "--bucket", bucket, "--endpoint-url", endpoint], repo)
        ours = [stacgit, "publish", cat, "--to", "s3://ours/stac", "--endpoint-url", endpoint, "--json", "--concurrency", str(args.concurrency), "--prune"]
        theirs = [aws, "s3", "sync", str(cat_dir), f"s3://theirs/stac/{cat}", "--endpoint-url", endpoint, "--no-progress", "--delete"]
        files = len(json.loads((cat_dir / "manifest.json").read_bytes())["files"])

        first_ours, out = run(ours, repo)
        first_uploaded = json.loads(out)["uploaded"]
        first_theirs, out = run(theirs, repo)
        first_theirs_uploaded = out.count("upload:")

        noop_ours, noop_theirs = [], []
        for _ in range(args.runs):
            wall, out = run(ours, repo)
            assert json.loads(out)["uploaded"] == 0, out
            noop_ours.append(wall)
            wall, out = run(theirs, repo)
            noop_theirs.append(wall)

        before = build_files(cat_dir)
        edited = edit_records(repo, 1000)
        run([stacgit, "build", "--no-validate"], repo)
        after = build_files(cat_dir)
        changed = sorted(rel for rel, data in after.items() if before.get(rel) != data)
        removed = sorted(set(before) - set(after))
        feed = len(list((cat_dir / "changes").glob("*.ndjson")))

        change_ours, out = run(ours, repo)
        change_ours_uploaded = json.loads(out)["uploaded"]
        change_theirs, out = run(theirs, repo)
        change_theirs_uploaded = out.count("upload:")
    finally:
        server.terminate()
        server.wait(timeout=30)

    result = {
        "items": args.items,
        "files_in_build": files,
        "first_publish_s": {"stacgit": round(first_ours, 2), "aws_s3_sync": round(first_theirs, 2), "stacgit_uploaded": first_uploaded, "aws_uploaded": first_theirs_uploaded},
        "noop_publish_s": {"stacgit": round(statistics.median(noop_ours), 2), "aws_s3_sync": round(statistics.median(noop_theirs), 2), "runs": args.runs},
        "change_1000": {
            "records_edited": edited,
            "build_files_changed": len(changed),
            "build_files_removed": len(removed),
            "stacgit_s": round(change_ours, 2),
            "stacgit_uploaded": change_ours_uploaded,
            "expected_uploads": len(changed) + 2,  # + the new feed record and the feed index
            "aws_s3_sync_s": round(change_theirs, 2),
            "aws_uploaded": change_theirs_uploaded,
            "feed_records_in_build": feed,
        },
    }
    result["noop_ratio"] = round(result["noop_publish_s"]["aws_s3_sync"] / result["noop_publish_s"]["stacgit"], 1)
    result["change_ratio"] = round(change_theirs / change_ours, 1)
    result["first_ratio"] = round(first_theirs / first_ours, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
