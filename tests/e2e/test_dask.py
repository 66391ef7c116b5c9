"""Builds on a real Dask cluster (a LocalCluster of worker processes on 127.0.0.1) equal the
local build byte for byte: clean, incremental, with a worker killed half way; and a cluster whose
workers run another stacgit is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import add_synthetic, copy_examples, stacgit, stacgit_proc, tree

import distributed  # a test dependency (stacgit[dask] is in [test]): missing, these tests fail


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0") as c:
        yield c.scheduler_address


def twins(tmp_path: Path, synthetic: int = 0) -> tuple[Path, Path]:
    """Two copies of the same catalog repository: one built here, one on the cluster."""
    a, b = copy_examples(tmp_path / "local"), copy_examples(tmp_path / "cluster")
    if synthetic:
        add_synthetic(a, synthetic)
        add_synthetic(b, synthetic)
    return a, b


def build_local(repo: Path) -> dict:
    res = stacgit(repo, "build", "--json", "-j", "2")
    assert res.exit_code == 0, res.stderr
    return res.json


def build_on(repo: Path, address: str, *args: str) -> dict:
    import json

    proc = stacgit_proc(repo, "build", "--json", "--scheduler", address, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def counts(report: dict) -> tuple:
    return report["items"], report["records"], report["files_written"], report["files_deleted"], report["exports"]


def test_examples_on_a_cluster_equal_the_local_build(tmp_path, cluster):
    a, b = twins(tmp_path)
    local, remote = build_local(a), build_on(b, cluster)
    assert counts(local) == counts(remote) and local["items"]["written"] > 50
    assert tree(a / "build") == tree(b / "build")


def test_generated_catalog_clean_and_incremental_builds_on_a_cluster(tmp_path, cluster):
    a, b = twins(tmp_path, synthetic=3000)
    local, remote = build_local(a), build_on(b, cluster)
    assert counts(local) == counts(remote) and local["items"]["written"] > 3000
    ta = tree(a / "build")
    assert ta == tree(b / "build")
    for repo in (a, b):  # one record changed, one removed, in two source files
        files = sorted((repo / "catalogs" / "synthetic" / "sources").rglob("*.ndjson"))
        first = files[0].read_text().splitlines(keepends=True)
        files[0].write_text("".join(first[1:]))
        last = files[-1].read_text()
        assert '"cloud_cover":' in last
        files[-1].write_text(last.replace('"cloud_cover":', '"cloud_cover":1,"was":', 1))
    local, remote = build_local(a), build_on(b, cluster)
    assert counts(local) == counts(remote)
    assert local["items"]["deleted"] == 1 and 1 <= local["items"]["written"] <= 3
    assert tree(a / "build") == tree(b / "build") != ta
    assert counts(build_on(b, cluster))[0]["written"] == 0  # nothing left to do


def test_a_worker_killed_mid_build_changes_nothing(tmp_path):
    a, b = twins(tmp_path, synthetic=4000)
    build_local(a)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0") as c, \
            distributed.Client(c) as client:
        pids = client.run(os.getpid)
        proc = subprocess.Popen([sys.executable, "-m", "stacgit", "build", "--json", "--scheduler", c.scheduler_address], cwd=b,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cache = b / ".stacgit" / "cache"
        deadline = time.monotonic() + 120
        while not any(cache.rglob("*.bin")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the build finished before a worker could be killed; raise the item count"
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        client.wait_for_workers(2, timeout=60)
        assert victim not in client.run(os.getpid).values()  # the nanny started a new worker
    assert tree(a / "build") == tree(b / "build")


def test_a_task_run_twice_leaves_the_same_bytes(tmp_path, cluster):
    """Dask may run a shard task again (a lost worker, a retry): the second run writes the same
    cache file, and the build it feeds is the same."""
    a, b = twins(tmp_path, synthetic=600)
    build_local(a)
    build_on(b, cluster)
    cache = b / ".stacgit" / "cache"
    before = {p.name: p.read_bytes() for p in cache.rglob("*.bin")}
    again = build_on(b, cluster, "--full")  # every shard is sent again
    assert again["records"]["mapped"] == again["records"]["processed"] > 600
    assert {p.name: p.read_bytes() for p in cache.rglob("*.bin")} == before
    assert tree(a / "build") == tree(b / "build")


def test_workers_of_another_stacgit_are_refused(tmp_path):
    fake = tmp_path / "other-site"
    (fake / "stacgit-9.9.9.dist-info").mkdir(parents=True)
    (fake / "stacgit-9.9.9.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: stacgit\nVersion: 9.9.9\n")
    repo = copy_examples(tmp_path / "repo")
    with distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=":0") as c:
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", c.scheduler_address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
            env={**os.environ, "PYTHONPATH": str(fake)}, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            with distributed.Client(c) as client:
                client.wait_for_workers(1, timeout=60)
            proc = stacgit_proc(repo, "build", "--scheduler", c.scheduler_address)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    assert proc.returncode == 1
    assert "runs stacgit 9.9.9, this stacgit runs" in proc.stderr and "Traceback" not in proc.stderr
    assert not (repo / "build" / "shift").exists()  # refused before any work was sent


def test_an_unreachable_scheduler_is_one_line(repo):
    proc = stacgit_proc(repo, "build", "--scheduler", "tcp://127.0.0.1:9", timeout=120)
    assert proc.returncode == 2 and "cannot connect" in proc.stderr and "Traceback" not in proc.stderr


def test_a_failing_source_on_a_cluster_fails_as_it_does_locally(tmp_path, cluster):
    """A source that cannot be read fails its collection, once, with the same message as a local
    build, and every other collection, the exports and the catalogs are built all the same."""
    a, b = twins(tmp_path)
    for repo in (a, b):
        (repo / "catalogs" / "3dep" / "sources" / "CO_Eastern_B1_2018.json").write_text("{not json")
    runs = []
    for repo, args in ((a, ["-j", "2"]), (b, ["--scheduler", cluster])):
        proc = stacgit_proc(repo, "build", *args)
        runs.append((proc.returncode, sorted(l for l in proc.stderr.splitlines() if l.startswith("error:"))))
    assert runs[0] == runs[1] and runs[0][0] == 1, runs
    assert len(runs[0][1]) == 1 and "CO_Eastern_B1_2018.json" in runs[0][1][0], runs
    assert tree(a / "build") == tree(b / "build")
    assert (b / "build" / "3dep" / "MN_RedRiver_2019" / "collection.json").is_file()
