"""Where a build's shard work runs: a ``concurrent.futures.Executor``.

* no scheduler: a local process pool (``jobs`` processes);
* ``local``: a Dask ``LocalCluster`` of ``jobs`` worker processes started for the build;
* ``tcp://host:port`` (or any address ``distributed.Client`` takes): an existing Dask cluster,
  through ``Client.get_executor()``.

Dask is optional (``pip install 'stacgit[dask]'``). Workers read the checkout and write the build
through the file system, so on a cluster the checkout must be on a file system every worker sees
at the same path; the state store stays with the coordinator.

The bytes of a build depend on the versions of stacgit, pyarrow and stac-geoparquet, so a cluster
whose workers run other versions than the coordinator is refused before any work is sent.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from stacgit.errors import ConfigError, PlanError

SCHEDULER_ENV = "STACGIT_SCHEDULER"

VERSIONED = ("stacgit", "pyarrow", "stac-geoparquet")
"""Packages whose versions decide the bytes a worker writes."""


@dataclass
class Workers:
    """An open executor and what the build needs to know about it."""

    executor: Executor
    slots: int  # tasks that can run at once
    address: str | None = None  # the Dask scheduler, when there is one
    dashboard: str | None = None

    @property
    def distributed(self) -> bool:
        return self.address is not None


def scheduler_from(option: str | None) -> str | None:
    """``--scheduler``, else ``STACGIT_SCHEDULER``; empty means none."""
    value = option if option is not None else os.environ.get(SCHEDULER_ENV, "")
    return value.strip() or None


@contextmanager
def open_workers(scheduler: str | None, jobs: int) -> Iterator[Workers]:
    """The executor for one build; closed (and a cluster it started, stopped) afterwards."""
    if scheduler is None:
        with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            yield Workers(pool, max(1, jobs))
        return
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"--scheduler {scheduler}: Dask is not installed (pip install 'stacgit[dask]')") from None
    cluster = None
    try:
        if scheduler == "local":
            cluster = distributed.LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0", host="127.0.0.1")
            client = distributed.Client(cluster, set_as_default=True)
        else:
            client = distributed.Client(scheduler, timeout="30s", set_as_default=True)
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        raise ConfigError(f"--scheduler {scheduler}: cannot connect: {exc}") from None
    try:
        check_versions(client)
        slots = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()) or 1
        yield Workers(client.get_executor(pure=PURE), slots, client.scheduler.address, client.dashboard_link)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def check_versions(client) -> None:
    """Refuse workers whose Python or ``VERSIONED`` packages differ from this process's."""
    info = client.get_versions(packages=list(VERSIONED))
    mine = info["client"]["packages"]
    for worker, theirs in sorted(info["workers"].items()):
        packages = (theirs or {}).get("packages", {})
        for name in ("python", *VERSIONED):
            if packages.get(name) != mine.get(name):
                raise PlanError(
                    f"Dask worker {worker} runs {name} {packages.get(name) or 'MISSING'}, this stacgit runs {mine.get(name)}: "
                    "every worker needs the same versions (the bytes of a build depend on them)"
                )
    if not info["workers"]:
        raise PlanError(f"the Dask cluster at {client.scheduler.address} has no workers")


PURE = False
"""Tasks are submitted with ``pure=False``: Dask then names each by a random key instead of
hashing its arguments (``tokenize`` of every prior and batch cost the coordinator more than
saving the results), and never takes a task that writes files for a finished one with the same
arguments."""


def cluster_executor() -> tuple[Executor, int]:
    """In a build on a Dask cluster (run in the coordinator, whose client is the default one):
    an executor over the cluster and how many tasks it runs at once."""
    from distributed import get_client

    client = get_client()
    return client.get_executor(pure=PURE), max(1, sum(client.nthreads().values()))
