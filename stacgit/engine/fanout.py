"""The shard stage over an executor: the coordinator reads each stale shard's prior state,
sends the work to a worker (``map_on_worker``: the checkout's path, names and the prior, never
records or bodies), and saves the results in the order the shards were sent, so the state and
the build never depend on which worker finished first. At most ``2 x slots`` shards are in
flight, so the coordinator holds a bounded number of results.

A shard whose work failed is not saved here: its doit task runs it again, in this process, and
reports the failure as any failed unit is reported.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from concurrent.futures import Future

from stacgit import state as st
from stacgit.engine.shard import BuildOptions, ShardResult, map_shard, save_shard
from stacgit.executors import Workers
from stacgit.project import Project
from stacgit.state import shards

_PROJECTS: dict[tuple[str, str], Project] = {}


def load_project(root: str, run_id: str) -> Project:
    """The project a worker process (or a doit task process) works on: loaded once per process
    and build, not once per task."""
    key = (root, run_id)
    if key not in _PROJECTS:
        _PROJECTS.clear()
        _PROJECTS[key] = Project.load(root)
    return _PROJECTS[key]


def map_on_worker(root: str, catalog_id: str, collection_id: str, shard: str, opts: dict, prior: shards.ShardPrior | None) -> ShardResult:
    """The task a worker runs: load the project from the checkout, map one shard, and return
    rows and digests."""
    options = BuildOptions(**opts)
    project = load_project(root, options.run_id)
    coll = project.catalog(catalog_id).collection(collection_id)
    started = time.perf_counter()
    result = map_shard(project, coll, shard, options, prior)
    result.seconds = time.perf_counter() - started
    return result


@dataclasses.dataclass
class FanoutStats:
    """What the shard stage cost, for ``BuildReport.shards`` and the Dask benchmark."""

    sent: int = 0
    saved: int = 0
    worker_seconds: float = 0.0  # in map_shard, on the workers
    prior_seconds: float = 0.0  # the coordinator reading each shard's prior state
    submit_seconds: float = 0.0  # ... handing the task to the executor
    save_seconds: float = 0.0  # ... saving the results in the state
    coordinator_cpu_seconds: float = 0.0  # this process's CPU time in the stage, every thread (wall time counts waiting for a core)

    @property
    def coordinator_seconds(self) -> float:
        return self.prior_seconds + self.submit_seconds + self.save_seconds

    def to_json(self) -> dict:
        return {"sent": self.sent, "saved": self.saved, "worker_seconds": round(self.worker_seconds, 3),
                "coordinator_seconds": round(self.coordinator_seconds, 3), "prior_seconds": round(self.prior_seconds, 3),
                "submit_seconds": round(self.submit_seconds, 3), "save_seconds": round(self.save_seconds, 3),
                "coordinator_cpu_seconds": round(self.coordinator_cpu_seconds, 3)}


def map_shards(project: Project, units: list[tuple[str, str, str]], options: BuildOptions, workers: Workers) -> FanoutStats:
    """Map and save ``units`` ((catalog, collection, shard))."""
    con = st.connect(project.state_dir)
    opts = dataclasses.asdict(options)
    root = str(project.root)
    window: deque[tuple[tuple[str, str, str], shards.ShardPrior | None, Future]] = deque()
    stats = FanoutStats()
    cpu = time.process_time()

    def save_first() -> None:
        (cat_id, coll_id, shard), prior, future = window.popleft()
        try:
            result = future.result()
        except Exception:  # noqa: BLE001 - the shard's own task runs it again and reports why
            return
        started = time.perf_counter()
        coll = project.catalog(cat_id).collection(coll_id)
        save_shard(project, coll, shard, options, prior, result)
        stats.saved += 1
        stats.worker_seconds += result.seconds
        stats.save_seconds += time.perf_counter() - started

    for unit in units:
        started = time.perf_counter()
        prior = shards.read_prior(con, unit)
        read = time.perf_counter()
        window.append((unit, prior, workers.executor.submit(map_on_worker, root, *unit, opts, prior)))
        stats.sent += 1
        stats.prior_seconds += read - started
        stats.submit_seconds += time.perf_counter() - read
        if len(window) >= 2 * workers.slots:
            save_first()
    while window:
        save_first()
    stats.coordinator_cpu_seconds = time.process_time() - cpu
    return stats
