"""The doit layer, shared by ``dodo.py`` (``doit build``) and ``stacgit build``.

Tasks are coarse: one per source shard (``build:<catalog>/<collection>/<shard>``), one per
collection (``collection:<catalog>/<collection>``) and one per catalog (``catalog:<catalog>``);
``build`` is the group that runs them all. Their ``uptodate`` checks come from ``stacgit.plan``
and read stacgit's own state, so doit's database is only a cache: losing it costs nothing.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson
from doit.exceptions import TaskFailed, UnmetDependency

from stacgit import engine
from stacgit import exports, gitinfo, plan
from stacgit import state as st
from stacgit.errors import BuildError, ConfigError, PlanError, StacgitError
from stacgit.project import Project
from stacgit.state.reports import save_report
from stacgit.validate import Report
from stacgit.verdicts import stored_report

_LOCK: dict[str, int] = {}
_RUN: dict[str, object] = {}


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


# --------------------------------------------------------------------------- task actions


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
        con.execute("INSERT OR REPLACE INTO reports VALUES (?, ?, ?)", (run_id, unit, orjson.dumps({"error": msg}).decode()))
    except Exception:  # noqa: BLE001 - reporting must not hide the original failure
        pass
    return TaskFailed(msg)


_PROJECTS: dict[tuple[str, str], Project] = {}


def _project(root: str, run_id: str) -> Project:
    key = (root, run_id)
    if key not in _PROJECTS:
        _PROJECTS.clear()
        _PROJECTS[key] = Project.load(root)
    return _PROJECTS[key]


def run_shard(root: str, catalog_id: str, collection_id: str, shard: str, opts: dict):
    options = engine.BuildOptions(**opts)
    unit = f"build:{catalog_id}/{collection_id}/{shard}"
    try:
        project = _project(root, options.run_id)
        engine.build_shard(project, project.catalog(catalog_id).collection(collection_id), shard, options)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, as one line
        return _fail(unit, root, options.run_id, exc)
    return True


def run_collection(root: str, catalog_id: str, collection_id: str, shards: list[str], opts: dict):
    options = engine.BuildOptions(**opts)
    unit = f"collection:{catalog_id}/{collection_id}"
    try:
        project = _project(root, options.run_id)
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
        project = _project(root, options.run_id)
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
        project = _project(root, options.run_id)
        engine.build_catalog(project, project.catalog(catalog_id), options)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, as one line
        return _fail(f"catalog:{catalog_id}", root, options.run_id, exc)
    return True


# --------------------------------------------------------------------------- uptodate checks


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


# --------------------------------------------------------------------------- task generation


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
        rows = con.execute("SELECT catalog, collection, shard FROM records WHERE item_id=?", (value,)).fetchall()
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
        if _RUN.get("progress") and sys.stderr.isatty():
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
        _RUN.setdefault("failures", []).append((task.name, msg))
        if not _RUN.get("collect"):
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
        if not _RUN.get("collect"):
            project = _RUN.get("project")
            if project is not None:
                summary = summarize(project, str(_RUN.get("run_id", "")), self.failures)
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
    _RUN.update(project=project, run_id=run_id, collect=False, progress=False)
    gitinfo.clear_cache()
    options = engine.BuildOptions(strict=strict, run_id=run_id, jobs=jobs or 1, now=_now())

    def task_build():
        """Build every catalog (shards, collections, catalog roots)."""
        try:
            _prepare(project)
            yield from iter_tasks(project, options)
        except StacgitError as exc:
            sys.stderr.write(f"error: {exc}\n")
            raise SystemExit(exc.exit_code) from None

    return project, doit_config(project), task_build


def _prepare(project: Project) -> None:
    """Before a run: forget catalogs that are no longer configured; clear old run reports."""
    con = st.connect(project.state_dir)
    for (cat_id,) in con.execute("SELECT DISTINCT catalog FROM aggregates").fetchall():
        if cat_id not in project.catalogs:
            engine.remove_catalog_output(project, cat_id)
    con.execute("DELETE FROM reports")
    for cat_id in sorted(project.catalogs):  # output folders deleted by hand: built again from scratch
        if not (project.build_dir / cat_id).is_dir():
            if con.execute("SELECT 1 FROM aggregates WHERE catalog=? LIMIT 1", (cat_id,)).fetchone():
                engine.remove_catalog_output(project, cat_id)
            continue
        for coll_id in st.known_collections(con, cat_id):
            if not (project.build_dir / cat_id / coll_id).is_dir():
                st.drop_collection(con, cat_id, coll_id)
    tmp = project.state_dir / "tmp"
    if tmp.is_dir():
        for leftover in tmp.iterdir():
            leftover.unlink(missing_ok=True)


# --------------------------------------------------------------------------- stacgit build


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def run_build(project: Project, *, strict: bool = False, full: bool = False, only: tuple[str, ...] = (), jobs: int | None = None, progress: bool = True, validate: bool = True) -> dict:
    """Build (incrementally) and return the summary. The same tasks ``doit build`` runs."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

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
        _prepare(project)
        run_id = uuid.uuid4().hex
        gitinfo.clear_cache()
        options = engine.BuildOptions(strict=strict, run_id=run_id, jobs=jobs, now=_now(), validate=validate)
        tasks = list(iter_tasks(project, options, selection))  # raises ConfigError early
        check_writable(project, project.build_dir)

        def task_build():
            yield from tasks

        _RUN.clear()
        _RUN.update(project=project, run_id=run_id, collect=True, progress=progress)
        namespace = {"task_build": task_build, "DOIT_CONFIG": doit_config(project)}
        argv = ["run", "--continue"]
        if jobs > 1:
            argv += ["-n", str(jobs), "-P", "process"]
        argv.append("build")
        cwd = os.getcwd()
        os.chdir(project.root)
        try:
            code = DoitMain(ModuleTaskLoader(namespace), config_filenames=()).run(argv)
        finally:
            os.chdir(cwd)
        failures = list(_RUN.get("failures", []))
        _catalogs_after_failures(project, run_id, failures, options, selection)
        summary = summarize(project, run_id, failures)
        summary["seconds"] = round(time.monotonic() - started, 3)
        if strict and summary["items"]["failed"] and not summary["errors"]:
            # shards that were up to date still hold failed records: --strict fails on them too
            first = summary["failed_records"][0]
            message = engine.failure_message(first["location"], first["field"], first["reason"], summary["items"]["failed"] - 1)
            summary["errors"].append({"unit": "strict", "message": message})
        v = summary["validation"]
        if v["invalid"]:
            summary["errors"].append({"unit": "validate", "message": f"{v['invalid']} built documents are not valid STAC (outputs kept; `stacgit validate` lists them all)"})
        if strict and v["schema_unavailable"]:
            summary["errors"].append({"unit": "validate", "message": f"{v['schema_unavailable']} documents could not be checked: schema unavailable (--strict)"})
        if code not in (0, 1) and not summary["errors"]:
            summary["errors"].append({"unit": "doit", "message": f"doit exited with code {code}"})
        return summary
    finally:
        _RUN.clear()
        release_lock(project)


def _catalogs_after_failures(project: Project, run_id: str, failures: list[tuple[str, str]], options, selection: Selection) -> None:
    """doit does not run a task whose dependency failed, so a catalog one of whose collections
    failed would keep no root (on a first build) or an old one while its other collections
    were built. Its catalog step runs here instead, linking the collections that exist."""
    con = st.connect(project.state_dir)
    failed = {u for u, _ in failures} | {r[0] for r in con.execute("SELECT unit FROM reports WHERE run_id=? AND data LIKE '{\"error\"%'", (run_id,))}
    for cat_id in sorted(project.catalogs):
        if selection.catalogs is not None and cat_id not in selection.catalogs:
            continue
        ran = con.execute("SELECT 1 FROM reports WHERE run_id=? AND unit=?", (run_id, f"catalog:{cat_id}")).fetchone()
        if ran is None and any(u.startswith(f"build:{cat_id}/") for u in failed):  # a source that could not be read
            run_catalog(str(project.root), cat_id, dataclasses.asdict(options))


_ENVIRONMENT = ("No space left on device", "Disk quota exceeded", "Read-only file system", "Permission denied")


def _collapse_os_errors(errors: list[dict]) -> list[dict]:
    """A full disk fails every task that writes: one line for it (the first path, and a count)."""
    out, by_cause = [], {}
    for e in errors:
        cause = next((c for c in _ENVIRONMENT if e["message"].endswith(c)), None)
        if cause is None:
            out.append(e)
        elif cause in by_cause:
            by_cause[cause]["more"] += 1
        else:
            by_cause[cause] = dict(e, more=0)
            out.append(by_cause[cause])
    for e in by_cause.values():
        more = e.pop("more")
        if more:
            e["message"] += f" (and {more} more task(s) failed the same way)"
    return out


def summarize(project: Project, run_id: str, failures: list[tuple[str, str]]) -> dict:
    con = st.connect(project.state_dir)
    totals = {"processed": 0, "mapped": 0, "written": 0, "deleted": 0, "failed": 0}
    files_written = files_deleted = 0
    export_totals = {"partitions_written": 0, "partitions_deleted": 0}
    errors: list[dict] = []
    for unit, data in con.execute("SELECT unit, data FROM reports WHERE run_id=? ORDER BY unit", (run_id,)):
        rep = orjson.loads(data)
        if "error" in rep:
            errors.append({"unit": unit, "message": rep["error"]})
            continue
        if rep["unit"] == "shard":
            totals["processed"] += rep["records"]
            totals["mapped"] += rep["mapped"]
        elif rep["unit"] == "collection":
            totals["written"] += rep["items_written"]
            totals["deleted"] += rep["items_deleted"]
            files_written += rep["files_written"]
            files_deleted += rep["files_deleted"]
        elif rep["unit"] == "export":
            for k in ("partitions_written", "partitions_deleted"):
                export_totals[k] += rep[k]
        else:
            files_written += rep["files_written"]
            totals["deleted"] += rep["items_deleted"]
    seen = {e["unit"] for e in errors}
    for unit, msg in failures:
        if unit not in seen:
            errors.append({"unit": unit, "message": msg})
    n_items = con.execute("SELECT COUNT(*) FROM outputs WHERE item_id IS NOT NULL").fetchone()[0]  # items only: an index scan
    totals["failed"] = con.execute("SELECT COUNT(*) FROM failures").fetchone()[0]
    totals["failed"] += con.execute("SELECT COUNT(*) FROM patch_failures").fetchone()[0]
    failed_records = [
        {"collection": f"{c}/{coll}", "location": engine.location(s, loc), "field": f, "reason": r}
        for c, coll, s, loc, f, r in con.execute("SELECT catalog, collection, shard, loc, field, reason FROM failures ORDER BY catalog, collection, shard, rowid LIMIT 20")
    ]
    failed_records += [
        {"collection": f"{c}/{coll}", "location": engine.patch_location(key, op), "field": "patch", "reason": engine.patch_reason(item_id, reason)}
        for c, coll, key, op, item_id, reason in con.execute(
            "SELECT catalog, collection, patch_key, op_index, item_id, reason FROM patch_failures ORDER BY catalog, collection, patch_key, item_id LIMIT 20"
        )
    ]
    patches, warnings = _patch_audit(project, con)
    counts = {(c, coll): n for c, coll, n in con.execute("SELECT catalog, collection, COUNT(*) FROM outputs WHERE item_id IS NOT NULL GROUP BY 1, 2")}
    warnings += [
        f"collection {coll.key} has no items: its source has no records (an emptied file?); publish refuses to delete its published items without --allow-deletes"
        for coll in project.iter_collections()
        if not counts.get((coll.catalog_id, coll.id)) and not any(e["unit"].partition(":")[2].startswith(coll.key) for e in errors)
    ]
    warnings += [
        f"collection {coll.key}: {drift}"
        for coll in project.iter_collections()
        if coll.geoparquet and coll.geoparquet["undeclared"] == "infer" and counts.get((coll.catalog_id, coll.id))
        for drift in exports.item_columns(project, coll).drift
    ]
    errors += [{"unit": "patch", "message": m} for m in patches.pop("__errors__")]
    validation = _validation_summary(con, run_id)
    return {
        "items": {
            "written": totals["written"],
            "unchanged": max(0, n_items - totals["written"]),
            "deleted": totals["deleted"],
            "failed": totals["failed"],
        },
        "records": {"processed": totals["processed"], "mapped": totals["mapped"]},
        "files_written": files_written,
        "files_deleted": files_deleted,
        "failed_records": failed_records,
        "patches": patches,
        "exports": export_totals,
        "validation": validation,
        "warnings": warnings,
        "errors": _collapse_os_errors(errors),
    }


def _validation_summary(con, run_id: str) -> dict:
    """Counts over every built document's stored verdict, what this run validated, and the
    error groups of the documents that are not valid (largest first, 5 of them)."""
    stored = _verdict_summary(con)
    validated = warnings = 0
    for (data,) in con.execute("SELECT data FROM reports WHERE run_id=? AND (unit LIKE 'catalog:%' OR unit LIKE 'collection:%')", (run_id,)):
        rep = orjson.loads(data)
        validated += rep.get("validation", {}).get("validated", 0)
        warnings += sum(g["count"] for g in rep.get("validation_report", {}).get("warnings", []))
    return {"validated": validated, **{k: stored[k] for k in ("valid", "invalid", "schema_unavailable")}, "warnings_this_run": warnings,
            "errors": stored["errors"], "unavailable_schemas": stored["unavailable_schemas"]}


def _verdict_summary(con) -> dict:
    """Totals and error groups of the stored verdicts; kept in ``meta`` with the verdicts'
    change count, and read again only when that count moved (a no-op build reads nothing)."""
    count = con.execute("SELECT value FROM meta WHERE key='verdicts_changed'").fetchone()
    saved = con.execute("SELECT value FROM meta WHERE key='verdicts_summary'").fetchone()
    if count is not None and saved is not None:
        summary = orjson.loads(saved[0])
        if summary.pop("at") == count[0]:
            return summary
    totals: dict[str, int] = {}
    for _, status, n in con.execute("SELECT catalog, status, COUNT(*) FROM verdicts GROUP BY catalog, status"):  # index order
        totals[status] = totals.get(status, 0) + n
    report = Report()
    if totals.get("invalid") or totals.get("schema_unavailable"):
        catalogs = [r[0] for r in con.execute("SELECT DISTINCT catalog FROM verdicts WHERE status != 'valid' ORDER BY catalog")]
        report = stored_report(con, catalogs, lambda c: f"build/{c}", failing_only=True, limit=100_000)
    full = report.to_json()
    summary = {
        "valid": totals.get("valid", 0),
        "invalid": totals.get("invalid", 0),
        "schema_unavailable": totals.get("schema_unavailable", 0),
        "errors": full["errors"][:5],
        "unavailable_schemas": full["unavailable_schemas"],
    }
    if count is not None:
        with st.Transaction(con):
            con.execute("INSERT OR REPLACE INTO meta VALUES ('verdicts_summary', ?)", (orjson.dumps({**summary, "at": count[0]}).decode(),))
    return summary


def _patch_audit(project: Project, con) -> tuple[dict, list[str]]:
    """Per patch file: items matched, patched, deleted and failed, and its commit time (an
    audit log of what the patches do to the current build); id selectors that match nothing
    are errors, CQL2 selectors that match nothing are warnings."""
    stats: dict[str, list[tuple]] = {}
    for c, coll, key, matched, patched, deleted, failed, unmatched in con.execute("SELECT * FROM patch_stats"):
        stats.setdefault(key, []).append((c, coll, matched, patched, deleted, failed, orjson.loads(unmatched)))
    times = gitinfo.commit_times(project.root, sorted({p.file for p in project.patches}))
    files: dict[str, dict] = {}
    errors: list[str] = []
    warnings: list[str] = []
    for p in project.patches:
        f = files.setdefault(p.file, {"documents": 0, "matched": 0, "patched": 0, "deleted": 0, "failed": 0, "committed": times[p.file]})
        f["documents"] += 1
        rows = [r for r in stats.get(p.key, []) if r[0] == p.catalog]
        for r in rows:
            f["matched"] += r[2]
            f["patched"] += r[3]
            f["deleted"] += r[4]
            f["failed"] += r[5]
        if p.document != "item":
            continue
        if p.ids is not None and p.cql2 is None:
            targets = [c.id for c in project.catalogs[p.catalog].collections if p.collection in ("*", c.id)]
            built = {r[1]: set(r[6]) for r in rows}
            missing = set(p.ids)
            for cid in targets:
                missing &= built.get(cid, set(p.ids))
            if missing and len(built) == len(targets):
                shown = ", ".join(f"'{i}'" for i in sorted(missing)[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                errors.append(f"{p.where}: select.ids: no item {shown} in {p.catalog}/{p.collection}")
        elif rows and sum(r[2] for r in rows) == 0:
            total = con.execute(
                "SELECT COUNT(*) FROM outputs WHERE catalog=? AND kind='item'" + ("" if p.collection == "*" else " AND collection=?"),
                (p.catalog,) if p.collection == "*" else (p.catalog, p.collection),
            ).fetchone()[0]
            warnings.append(f"{p.where}: select matched 0 of {total} items in {p.catalog}/{p.collection}")
    for name, f in files.items():
        if f["committed"] == gitinfo.UNCOMMITTED and f["patched"]:
            warnings.append(f"{name} is not committed: the items it changes carry this build's time as `updated`")
    files["__errors__"] = errors
    return files, warnings


def format_summary(s: dict) -> str:
    i = s["items"]
    lines = [
        f"records processed {s['records']['processed']} (mapped {s['records']['mapped']}); "
        f"items written {i['written']}, unchanged {i['unchanged']}, deleted {i['deleted']}, failed {i['failed']}; "
        f"files written {s['files_written']}, deleted {s['files_deleted']}"
        + (f" in {s['seconds']:.1f}s" if "seconds" in s else "")
    ]
    for f in s["failed_records"]:
        lines.append("skipped " + engine.failure_message(f["location"], f["field"], f["reason"]))
    if i["failed"] > len(s["failed_records"]):
        lines.append(f"... {i['failed'] - len(s['failed_records'])} more skipped records in build/<catalog>/failed.ndjson")
    for name, f in s.get("patches", {}).items():
        lines.append(f"patch {name}: matched {f['matched']}, patched {f['patched']}, deleted {f['deleted']}, failed {f['failed']}")
    v = s.get("validation")
    if v:
        lines.append(
            f"validated {v['validated']} documents this run; all documents: valid {v['valid']}, invalid {v['invalid']}, "
            f"schema unavailable {v['schema_unavailable']}" + (f"; {v['warnings_this_run']} lint warnings" if v["warnings_this_run"] else "")
        )
        for g in v["errors"]:
            ex = g["examples"][0]
            lines.append(f"invalid: {g['count']} x {g['message']} [{g['schema']}] e.g. {ex['path']} {ex['pointer'] or '/'}")
        for u in v["unavailable_schemas"]:
            lines.append(f"schema unavailable: {u['url']} ({u['documents']} documents): {u['why']}")
    for w in s.get("warnings", []):
        lines.append(f"warning: {w}")
    for e in s["errors"]:
        lines.append(f"error: {e['message']}")
    return "\n".join(lines)
