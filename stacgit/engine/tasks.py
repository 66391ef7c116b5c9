"""The doit tasks of a build: one per source shard, collection, export and catalog, their
``uptodate`` checks (from stacgit's own state, so doit's database is only a cache), the task
actions, and a quiet reporter for ``doit build``."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from doit.exceptions import TaskFailed, UnmetDependency

from stacgit.state import outputs, reports, shards
from stacgit import engine
from stacgit import exports, gitinfo, plan
from stacgit import state as st
from stacgit.errors import ConfigError, PlanError, StacgitError
from stacgit.project import Project
from stacgit.state.reports import save_report
from stacgit.engine.fanout import load_project
from stacgit.engine.report import format_summary, summarize


_LOCK: dict[str, int] = {}


RUN: dict[str, object] = {}


def acquire_lock(project: Project) -> None:
    """One build at a time per checkout. Released when the process exits (flock)."""
    key = str(project.root)
    if key in _LOCK:
        return
    project.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(project.state_dir / "build.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise PlanError(f"another build is running in this checkout (pid {holder}); wait for it to finish") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _LOCK[key] = fd


def release_lock(project: Project) -> None:
    fd = _LOCK.pop(str(project.root), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _fail(unit: str, root: str, run_id: str, exc: BaseException) -> TaskFailed:
    """A task's failure as one line for the summary. An exception stacgit did not expect (a
    bug, or input nothing checks yet) is named with the unit; its traceback goes to a log file
    under ``.stacgit/logs/``, not to the user's terminal."""
    msg = str(exc)
    if isinstance(exc, OSError) and not isinstance(exc, StacgitError):
        msg = f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    elif not isinstance(exc, StacgitError):
        import traceback

        log = Path(root) / ".stacgit" / "logs" / f"{run_id}.log"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as f:
                f.write(f"{unit}\n{''.join(traceback.format_exception(exc))}\n")
        except OSError:
            pass
        first = (str(exc).splitlines() or [""])[0][:300]
        msg = f"{unit}: unexpected {type(exc).__name__}: {first} (traceback in {log.relative_to(root)})"
    try:
        con = st.connect(Path(root) / ".stacgit")
        reports.save_error(con, run_id, unit, msg)
    except Exception:  # noqa: BLE001 - reporting must not hide the original failure
        pass
    return TaskFailed(msg)


def run_shard(root: str, catalog_id: str, collection_id: str, shard: str, opts: dict):
    options = engine.BuildOptions(**opts)
    unit = f"build:{catalog_id}/{collection_id}/{shard}"
    try:
        project = load_project(root, options.run_id)
        engine.build_shard(project, project.catalog(catalog_id).collection(collection_id), shard, options)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, as one line
        return _fail(unit, root, options.run_id, exc)
    return True


def run_collection(root: str, catalog_id: str, collection_id: str, shards: list[str], opts: dict):
    options = engine.BuildOptions(**opts)
    unit = f"collection:{catalog_id}/{collection_id}"
    try:
        project = load_project(root, options.run_id)
        coll = project.catalog(catalog_id).collection(collection_id)
        report = engine.build_collection(project, coll, shards, options)
        if options.validate:
            engine.validate_written(project, coll, report, options)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, as one line
        return _fail(unit, root, options.run_id, exc)
    return True


def run_export(root: str, catalog_id: str, collection_id: str, opts: dict):
    options = engine.BuildOptions(**opts)
    unit = f"export:{catalog_id}/{collection_id}"  # plan.export_task
    try:
        project = load_project(root, options.run_id)
        coll = project.catalog(catalog_id).collection(collection_id)
        con = st.connect(project.state_dir)
        report = exports.export_collection(project, coll, options.jobs)
        with st.Transaction(con):
            save_report(con, options.run_id, unit, report)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, as one line
        return _fail(unit, root, options.run_id, exc)
    return True


def run_catalog(root: str, catalog_id: str, opts: dict):
    options = engine.BuildOptions(**opts)
    try:
        project = load_project(root, options.run_id)
        engine.build_catalog(project, project.catalog(catalog_id), options)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, as one line
        return _fail(f"catalog:{catalog_id}", root, options.run_id, exc)
    return True


def _shard_fresh(project: Project, coll, shard: str, row) -> bool:
    return plan.shard_reason(project, coll, shard, row, refresh=True) is None


def _collection_fresh(project: Project, coll, shards: list[str]) -> bool:
    return plan.collection_reason(project, coll, shards) is None


def _export_stale(project: Project, coll) -> plan.StaleUnit | None:
    try:
        return exports.export_stale(project, coll)
    except StacgitError as exc:  # stale: the task runs and reports the error
        return plan.StaleUnit(plan.export_task(coll), plan.Reason.CONFIG_CHANGED, str(exc))


def _export_fresh(project: Project, coll) -> bool:
    return _export_stale(project, coll) is None


def compute_status(project: Project) -> list[plan.StaleUnit]:
    """Every stale unit (source shards, collections, their exports, catalogs) with its reason,
    in build order; orphans last."""
    return plan.stale_units(project, lambda coll: _export_stale(project, coll))


def _catalog_fresh(project: Project, cat, validate: bool = True) -> bool:
    return plan.catalog_reason(project, cat, validate) is None


@dataclass
class Selection:
    """What a build covers: everything, or some collections / the shards holding some items."""

    collections: set[str] | None = None  # "catalog/collection" keys
    shards: set[tuple[str, str]] | None = None  # (collection key, shard)
    catalogs: set[str] | None = None
    notes: list[str] = field(default_factory=list)


def select(project: Project, only: tuple[str, ...]) -> Selection:
    """Resolve ``--only`` values: collection id, catalog/collection, catalog id, or item id."""
    if not only:
        return Selection()
    sel = Selection(collections=set(), shards=set(), catalogs=set())
    con = st.connect(project.state_dir)
    for value in only:
        matched = False
        for coll in project.iter_collections():
            if value in (coll.id, coll.key):
                sel.collections.add(coll.key)
                sel.catalogs.add(coll.catalog_id)
                matched = True
        if value in project.catalogs:
            for coll in project.catalogs[value].collections:
                sel.collections.add(coll.key)
            sel.catalogs.add(value)
            matched = True
        if matched:
            continue
        rows = shards.shards_of_item(con, value)
        if not rows:
            raise ConfigError(f"--only {value}: not a catalog, collection or known item id (item ids are known after a first build)")
        for cat_id, coll_id, shard in rows:
            sel.collections.add(f"{cat_id}/{coll_id}")
            sel.shards.add((f"{cat_id}/{coll_id}", shard))
            sel.catalogs.add(cat_id)
    return sel


def iter_tasks(project: Project, options: engine.BuildOptions, selection: Selection | None = None):
    """Every doit task dict of a build (shards, collections, catalogs, and the build group)."""
    selection = selection or Selection()
    opts = dataclasses.asdict(options)
    covered = [
        (cat, [c for c in cat.collections if selection.collections is None or c.key in selection.collections])
        for cat in project.catalogs.values()
        if selection.catalogs is None or cat.id in selection.catalogs
    ]
    # doit runs up to ``jobs`` collection tasks at once: each writes with its share of the
    # processes, so a build of many collections does not start jobs x jobs writers
    n_colls = sum(len(colls) for _, colls in covered)
    coll_opts = {**opts, "jobs": max(1, options.jobs // max(1, min(options.jobs, n_colls)))}
    root = str(project.root)
    catalog_tasks = []
    for cat, colls in covered:
        coll_tasks = []
        for coll in colls:
            shards = project.shard_paths(coll)
            plan.get_mapping(project, coll)  # config errors surface before anything runs
            rows = plan.shard_rows(project, coll)
            shard_tasks = []
            for shard in shards:
                name = plan.shard_task(coll, shard)
                shard_tasks.append(name)
                if selection.shards and coll.key in {k for k, _ in selection.shards} and (coll.key, shard) not in selection.shards:
                    continue
                yield {
                    "basename": "build",
                    "name": name.split(":", 1)[1],
                    "actions": [(run_shard, [root, cat.id, coll.id, shard, opts])],
                    "uptodate": [(_shard_fresh, [project, coll, shard, rows.get(shard)])],
                    "doc": f"map records of {shard}",
                }
            if selection.shards and coll.key in {k for k, _ in selection.shards}:
                shard_tasks = [plan.shard_task(coll, s) for k, s in selection.shards if k == coll.key]
            name = plan.collection_task(coll)
            coll_tasks.append(name)
            yield {
                "basename": "collection",
                "name": name.split(":", 1)[1],
                "actions": [(run_collection, [root, cat.id, coll.id, shards, coll_opts])],
                "task_dep": shard_tasks,
                "uptodate": [(_collection_fresh, [project, coll, shards])],
                "doc": f"write items, sub-catalogs and collection.json of {coll.key}",
            }
            yield {
                "basename": "export",
                "name": name.split(":", 1)[1],
                "actions": [(run_export, [root, cat.id, coll.id, opts])],
                "task_dep": [name],
                "uptodate": [(_export_fresh, [project, coll])],
                "doc": f"write the GeoParquet partitions and pgstac NDJSON of {coll.key}",
            }
            coll_tasks[-1] = f"export:{name.split(':', 1)[1]}"
        name = plan.catalog_task(cat)
        catalog_tasks.append(name)
        yield {
            "basename": "catalog",
            "name": cat.id,
            "actions": [(run_catalog, [root, cat.id, opts])],
            "task_dep": coll_tasks,
            "uptodate": [(_catalog_fresh, [project, cat, options.validate])],
            "doc": f"write catalog.json and manifest.json of {cat.id}",
        }
    yield {"basename": "build", "name": None, "doc": "build every catalog", "task_dep": catalog_tasks}


class QuietReporter:
    """doit reporter: silent on success, one line per failure, rich progress on a terminal."""

    def __init__(self, outstream, options):
        self.out = sys.stderr
        self.failures: list[tuple[str, str]] = []
        self.progress = None
        self.total = 0

    def initialize(self, tasks, selected_tasks):
        self.total = sum(1 for t in tasks.values() if t.actions)
        if RUN.get("progress") and sys.stderr.isatty():
            from rich.progress import Progress

            self.progress = Progress(transient=True)
            self.progress.start()
            self.bar = self.progress.add_task("building", total=self.total)

    def _advance(self, task):
        if self.progress is not None and task.actions:
            self.progress.update(self.bar, advance=1, description=task.name[:60])

    def get_status(self, task):
        pass

    def execute_task(self, task):
        pass

    def add_failure(self, task, fail):
        self._advance(task)
        if isinstance(fail, UnmetDependency):
            return  # the failing dependency has been reported already
        if isinstance(fail, TaskFailed):
            msg = fail.message  # our own one-line message
        else:  # a bug or an unexpected error inside doit: keep the detail
            msg = fail.get_msg().strip()
        self.failures.append((task.name, msg))
        RUN.setdefault("failures", []).append((task.name, msg))
        if not RUN.get("collect"):
            self.out.write(f"error: {msg}\n")

    def add_success(self, task):
        self._advance(task)

    def skip_uptodate(self, task):
        self._advance(task)

    def skip_ignore(self, task):
        self._advance(task)

    def cleanup_error(self, exception):
        self.out.write(f"error: {exception.get_msg()}\n")

    def runtime_error(self, msg):
        self.out.write(f"error: {msg}\n")

    def teardown_task(self, task):
        pass

    def complete_run(self):
        if self.progress is not None:
            self.progress.stop()
        if not RUN.get("collect"):
            project = RUN.get("project")
            if project is not None:
                summary = summarize(project, str(RUN.get("run_id", "")), self.failures)
                self.out.write(format_summary(summary) + "\n")


def doit_config(project: Project) -> dict:
    return {
        "backend": "sqlite3",
        "dep_file": str(project.state_dir / "doit.sqlite3"),
        "default_tasks": ["build"],
        "reporter": QuietReporter,
        "continue": True,
    }


def load_for_doit(start: str = ".", strict: bool = False, jobs: int | None = None):
    """For dodo.py: (project, DOIT_CONFIG, task generator). Config errors exit cleanly (2)."""
    try:
        project = Project.discover(start)
        project.state_dir.mkdir(parents=True, exist_ok=True)
        acquire_lock(project)
    except StacgitError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(exc.exit_code) from None
    run_id = uuid.uuid4().hex
    RUN.update(project=project, run_id=run_id, collect=False, progress=False)
    gitinfo.clear_cache()
    options = engine.BuildOptions(strict=strict, run_id=run_id, jobs=jobs or 1, now=build_time())

    def task_build():
        """Build every catalog (shards, collections, catalog roots)."""
        try:
            prepare(project)
            yield from iter_tasks(project, options)
        except StacgitError as exc:
            sys.stderr.write(f"error: {exc}\n")
            raise SystemExit(exc.exit_code) from None

    return project, doit_config(project), task_build


def prepare(project: Project) -> None:
    """Before a run: forget catalogs that are no longer configured; clear old run reports."""
    con = st.connect(project.state_dir)
    built = outputs.built_catalogs(con)
    for cat_id in sorted(built - set(project.catalogs)):
        engine.remove_catalog_output(project, cat_id)
    reports.clear(con)
    for cat_id in sorted(project.catalogs):  # output folders deleted by hand: built again from scratch
        if not (project.build_dir / cat_id).is_dir():
            if cat_id in built:
                engine.remove_catalog_output(project, cat_id)
            continue
        for coll_id in st.known_collections(con, cat_id):
            if not (project.build_dir / cat_id / coll_id).is_dir():
                st.drop_collection(con, cat_id, coll_id)
    tmp = project.state_dir / "tmp"
    if tmp.is_dir():
        for leftover in tmp.iterdir():
            leftover.unlink(missing_ok=True)


def build_time() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
