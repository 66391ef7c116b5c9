"""``stacgit build``: run the build's doit tasks (``stacgit.engine.tasks``) in this process, one
build at a time per checkout, and return its ``BuildReport``."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path


from stacgit import engine
from stacgit import gitinfo
from stacgit import state as st
from stacgit.state import reports
from stacgit.errors import BuildError
from stacgit.project import Project
from stacgit.engine.fanout import FanoutStats, map_shards
from stacgit.engine.report import BuildReport, summarize
from stacgit.executors import open_workers
from stacgit.engine.tasks import (
    RUN, Selection, acquire_lock, build_time, compute_status, doit_config, iter_tasks, load_for_doit, prepare, release_lock, run_catalog,
    select,
)


def check_writable(project: Project, folder: Path) -> None:
    """One line naming the folder, before any task starts, when the build output or the build
    state cannot be written (a read-only checkout or volume), instead of one error per task."""
    probe = folder / f".stacgit-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BuildError(f"{project.shown(folder)}: cannot write: {exc.strerror or exc}") from None
    state = st.state_path(project.state_dir)
    if folder == project.state_dir and state.exists() and not os.access(state, os.W_OK):
        raise BuildError(f"{project.shown(state)}: cannot write the build state: permission denied")


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def run_build(project: Project, *, strict: bool = False, full: bool = False, only: tuple[str, ...] = (), jobs: int | None = None, progress: bool = True, validate: bool = True,
              scheduler: str | None = None) -> BuildReport:
    """Build (incrementally) and return what it did. The same tasks ``doit build`` runs; the
    stale shards are mapped first over an executor (``stacgit.executors``: a local process
    pool, or the Dask cluster at ``scheduler``)."""
    started = time.monotonic()
    check_writable(project, project.state_dir)
    acquire_lock(project)
    try:
        jobs = jobs or default_jobs()
        if full and st.is_outdated(project.state_dir):  # state of another stacgit: start over
            st.reset(project.state_dir)
            shutil.rmtree(project.state_dir / "cache", ignore_errors=True)
            for cat_id in project.catalogs:
                shutil.rmtree(project.build_dir / cat_id, ignore_errors=True)
        selection = select(project, only)
        if full:
            targets = selection.catalogs if selection.catalogs is not None else set(project.catalogs)
            for cat_id in sorted(targets):
                engine.remove_catalog_output(project, cat_id)
            (project.state_dir / "doit.sqlite3").unlink(missing_ok=True)
        prepare(project)
        run_id = uuid.uuid4().hex
        gitinfo.clear_cache()
        options = engine.BuildOptions(strict=strict, run_id=run_id, jobs=jobs, now=build_time(), validate=validate, scheduler=scheduler)
        tasks = list(iter_tasks(project, options, selection))  # raises ConfigError early
        check_writable(project, project.build_dir)
        RUN.clear()
        RUN.update(project=project, run_id=run_id, collect=True, progress=progress)
        fanout = FanoutStats()
        code = 0
        with ExitStack() as stack:
            units = stale_shards(tasks)
            if units or (scheduler and any(not _fresh(t) for t in tasks if t.get("basename") == "collection")):
                workers = stack.enter_context(open_workers(scheduler, jobs))
                if workers.dashboard and progress:
                    sys.stderr.write(f"Dask dashboard: {workers.dashboard}\n")
                if units:
                    fanout = map_shards(project, units, options, workers)
                    tasks = list(iter_tasks(project, options, selection))  # their up-to-date checks read the new state
                if workers.distributed:
                    # the collection steps send their item writes and validation to the cluster
                    # through this process's client, so doit runs them here, in threads
                    code = _run_doit(project, tasks, jobs, [_name(t) for t in tasks if t.get("basename") == "collection"], threads=True)
        # the rest (exports, catalogs) as a local build runs it: ``jobs`` at once, in processes
        rest = _after_collections(tasks, {name for name, _ in RUN.get("failures", [])}) if scheduler else None
        code = max(code, _run_doit(project, tasks, jobs, rest))
        failures = list(RUN.get("failures", []))
        _catalogs_after_failures(project, run_id, failures, options, selection)
        summary = summarize(project, run_id, failures)
        summary.seconds = round(time.monotonic() - started, 3)
        summary.shards = fanout.to_json()
        if strict and summary.items["failed"] and not summary.errors:
            # shards that were up to date still hold failed records: --strict fails on them too
            first = summary.failed_records[0]
            message = engine.failure_message(first["location"], first["field"], first["reason"], summary.items["failed"] - 1)
            summary.errors.append({"unit": "strict", "message": message})
        v = summary.validation
        if v["invalid"]:
            summary.errors.append({"unit": "validate", "message": f"{v['invalid']} built documents are not valid STAC (outputs kept; `stacgit validate` lists them all)"})
        if strict and v["schema_unavailable"]:
            summary.errors.append({"unit": "validate", "message": f"{v['schema_unavailable']} documents could not be checked: schema unavailable (--strict)"})
        if code not in (0, 1) and not summary.errors:
            summary.errors.append({"unit": "doit", "message": f"doit exited with code {code}"})
        return summary
    finally:
        RUN.clear()
        release_lock(project)


def stale_shards(tasks: list[dict]) -> list[tuple[str, str, str]]:
    """(catalog, collection, shard) of the shard tasks that are not up to date, in task order."""
    return [tuple(t["actions"][0][1][1:4]) for t in tasks if t.get("basename") == "build" and t.get("name") and not _fresh(t)]


def _name(task: dict) -> str:
    return f"{task['basename']}:{task['name']}"


def _after_collections(tasks: list[dict], failed: set[str]) -> list[str] | None:
    """What doit runs after the collection steps ran on a cluster: the whole build when none
    failed (nor a shard it needs); else what does not need one that did (doit would run it again,
    without the cluster), as a local build leaves a catalog one of whose collections failed."""
    broken = {_name(t) for t in tasks if t.get("basename") == "collection" and ({_name(t)} | set(t["task_dep"])) & failed}
    if not broken:
        return None
    exports = [_name(t) for t in tasks if t.get("basename") == "export" and not set(t["task_dep"]) & broken]
    done = set(exports)
    return exports + [_name(t) for t in tasks if t.get("basename") == "catalog" and set(t["task_dep"]) <= done]


def _fresh(task: dict) -> bool:
    return all(fn(*args) for fn, args in task.get("uptodate", []))


def _run_doit(project: Project, tasks: list[dict], jobs: int, targets: list[str] | None = None, threads: bool = False) -> int:
    """doit runs the ``targets`` (default: the whole build) and what they depend on, ``jobs`` at
    once in processes (``threads``: in threads of this process; one: in this process)."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    def task_build():  # copies: doit rewrites the dicts it loads (their names, basenames, lists)
        yield from ({k: list(v) if isinstance(v, list) else v for k, v in t.items()} for t in tasks)

    namespace = {"task_build": task_build, "DOIT_CONFIG": doit_config(project)}
    argv = ["run", "--continue"]
    if jobs > 1:
        argv += ["-n", str(jobs), "-P", "thread" if threads else "process"]
    if targets == []:
        return 0
    argv += ["build"] if targets is None else targets
    cwd, streams = os.getcwd(), (sys.stdout, sys.stderr)
    os.chdir(project.root)
    try:
        return DoitMain(ModuleTaskLoader(namespace), config_filenames=()).run(argv)
    finally:
        os.chdir(cwd)
        # doit swaps sys.stdout/stderr around each task it runs: tasks finishing in two threads
        # can leave its capture in place, and the build's own output would go there
        sys.stdout, sys.stderr = streams


def _catalogs_after_failures(project: Project, run_id: str, failures: list[tuple[str, str]], options, selection: Selection) -> None:
    """doit does not run a task whose dependency failed, so a catalog one of whose collections
    failed would keep no root (on a first build) or an old one while its other collections
    were built. Its catalog step runs here instead, linking the collections that exist."""
    con = st.connect(project.state_dir)
    failed = {u for u, _ in failures} | reports.failed_units(con, run_id)
    for cat_id in sorted(project.catalogs):
        if selection.catalogs is not None and cat_id not in selection.catalogs:
            continue
        if not reports.unit_ran(con, run_id, f"catalog:{cat_id}") and any(u.startswith(f"build:{cat_id}/") for u in failed):  # a source that could not be read
            run_catalog(str(project.root), cat_id, dataclasses.asdict(options))


__all__ = ["acquire_lock", "check_writable", "compute_status", "default_jobs", "load_for_doit", "release_lock", "run_build"]
