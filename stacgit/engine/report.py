"""What a build did: ``summarize`` adds up the reports its units saved in the state store into a
``BuildReport``, which the CLI prints (``format_summary``) or gives as JSON (``to_json``)."""

from __future__ import annotations

from dataclasses import dataclass, field


from stacgit import exports, gitinfo
from stacgit.engine.items import patch_location, patch_reason
from stacgit.engine.shard import failure_message, location
from stacgit import state as st
from stacgit.state import reports
from stacgit.errors import ColumnDriftWarning, EmptyCollectionWarning, PatchWarning, StacgitWarning
from stacgit.project import Project
from stacgit.validate import ValidationReport
from stacgit.verdicts import stored_report


@dataclass
class BuildReport:
    """The summary of one build (``stacgit build --json`` prints ``to_json()``)."""

    items: dict  # written, unchanged, deleted, failed
    records: dict  # processed, mapped
    files_written: int
    files_deleted: int
    failed_records: list[dict]  # the first 20 (collection, location, field, reason)
    patches: dict  # patch file -> matched, patched, deleted, failed
    exports: dict  # partitions_written, partitions_deleted
    validation: dict
    warnings: list[StacgitWarning] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)  # unit, message
    seconds: float | None = None
    shards: dict | None = None  # the shard stage over its executor: sent, saved, worker_seconds, coordinator_seconds

    @property
    def ok(self) -> bool:
        """No error and no failed record: exit code 0."""
        return not self.errors and not self.items["failed"]

    def to_json(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("seconds", "shards")}
        out["warnings"] = [w.to_json() for w in self.warnings]
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.shards is not None:
            out["shards"] = self.shards
        return out


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


def summarize(project: Project, run_id: str, failures: list[tuple[str, str]]) -> BuildReport:
    con = st.connect(project.state_dir)
    totals = {"processed": 0, "mapped": 0, "written": 0, "deleted": 0, "failed": 0}
    files_written = files_deleted = 0
    export_totals = {"partitions_written": 0, "partitions_deleted": 0}
    errors: list[dict] = []
    for unit, rep in reports.run_reports(con, run_id):
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
    counts = reports.item_counts(con)
    n_items = sum(counts.values())
    totals["failed"] = reports.failure_count(con)
    failed_records = [
        {"collection": f"{c}/{coll}", "location": location(s, loc), "field": f, "reason": r}
        for c, coll, s, loc, f, r in reports.first_failures(con, 20)
    ]
    failed_records += [
        {"collection": f"{c}/{coll}", "location": patch_location(key, op), "field": "patch", "reason": patch_reason(item_id, reason)}
        for c, coll, key, op, item_id, reason in reports.first_patch_failures(con, 20)
    ]
    patches, warnings = _patch_audit(project, con, counts)
    warnings += [
        EmptyCollectionWarning(f"collection {coll.key} has no items: its source has no records (an emptied file?); publish refuses to delete its published items without --allow-deletes", coll.key)
        for coll in project.iter_collections()
        if not counts.get((coll.catalog_id, coll.id)) and not any(e["unit"].partition(":")[2].startswith(coll.key) for e in errors)
    ]
    warnings += [
        ColumnDriftWarning(f"collection {coll.key}: {drift}", coll.key)
        for coll in project.iter_collections()
        if coll.geoparquet and coll.geoparquet["undeclared"] == "infer" and counts.get((coll.catalog_id, coll.id))
        for drift in exports.item_columns(project, coll).drift
    ]
    errors += [{"unit": "patch", "message": m} for m in patches.pop("__errors__")]
    validation = _validation_summary(con, run_id)
    return BuildReport(
        items={
            "written": totals["written"],
            "unchanged": max(0, n_items - totals["written"]),
            "deleted": totals["deleted"],
            "failed": totals["failed"],
        },
        records={"processed": totals["processed"], "mapped": totals["mapped"]},
        files_written=files_written,
        files_deleted=files_deleted,
        failed_records=failed_records,
        patches=patches,
        exports=export_totals,
        validation=validation,
        warnings=warnings,
        errors=_collapse_os_errors(errors),
    )


def _validation_summary(con, run_id: str) -> dict:
    """Counts over every built document's stored verdict, what this run validated, and the
    error groups of the documents that are not valid (largest first, 5 of them)."""
    stored = _verdict_summary(con)
    validated = warnings = 0
    for _, rep in reports.run_reports(con, run_id, ("catalog:", "collection:")):
        validated += rep.get("validation", {}).get("validated", 0)
        warnings += sum(g["count"] for g in rep.get("validation_report", {}).get("warnings", []))
    return {"validated": validated, **{k: stored[k] for k in ("valid", "invalid", "schema_unavailable")}, "warnings_this_run": warnings,
            "errors": stored["errors"], "unavailable_schemas": stored["unavailable_schemas"]}


def _verdict_summary(con) -> dict:
    """Totals and error groups of the stored verdicts; kept in ``meta`` with the verdicts'
    change count, and read again only when that count moved (a no-op build reads nothing)."""
    count, saved = reports.saved_verdict_summary(con)
    if saved is not None:
        return saved
    totals = reports.verdict_totals(con)
    report = ValidationReport()
    if totals.get("invalid") or totals.get("schema_unavailable"):
        report = stored_report(con, reports.catalogs_not_valid(con), lambda c: f"build/{c}", failing_only=True, limit=100_000)
    full = report.to_json()
    summary = {
        "valid": totals.get("valid", 0),
        "invalid": totals.get("invalid", 0),
        "schema_unavailable": totals.get("schema_unavailable", 0),
        "errors": full["errors"][:5],
        "unavailable_schemas": full["unavailable_schemas"],
    }
    if count is not None:
        reports.save_verdict_summary(con, count, summary)
    return summary


def _patch_audit(project: Project, con, counts: dict[tuple[str, str], int]) -> tuple[dict, list[StacgitWarning]]:
    """Per patch file: items matched, patched, deleted and failed, and its commit time (an
    audit log of what the patches do to the current build); id selectors that match nothing
    are errors, CQL2 selectors that match nothing are warnings."""
    stats: dict[str, list[tuple]] = {}
    for c, coll, key, matched, patched, deleted, failed, unmatched in reports.patch_stats(con):
        stats.setdefault(key, []).append((c, coll, matched, patched, deleted, failed, unmatched))
    times = gitinfo.commit_times(project.root, sorted({p.file for p in project.patches}))
    files: dict[str, dict] = {}
    errors: list[str] = []
    warnings: list[StacgitWarning] = []
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
            total = sum(n for (c, coll), n in counts.items() if c == p.catalog and p.collection in ("*", coll))
            warnings.append(PatchWarning(f"{p.where}: select matched 0 of {total} items in {p.catalog}/{p.collection}", p.file))
    for name, f in files.items():
        if f["committed"] == gitinfo.UNCOMMITTED and f["patched"]:
            warnings.append(PatchWarning(f"{name} is not committed: the items it changes carry this build's time as `updated`", name))
    files["__errors__"] = errors
    return files, warnings


def format_summary(report: BuildReport) -> str:
    """The summary as people read it: one line of counts, then what failed, warnings, errors."""
    s = report.to_json()
    i = s["items"]
    lines = [
        f"records processed {s['records']['processed']} (mapped {s['records']['mapped']}); "
        f"items written {i['written']}, unchanged {i['unchanged']}, deleted {i['deleted']}, failed {i['failed']}; "
        f"files written {s['files_written']}, deleted {s['files_deleted']}"
        + (f" in {s['seconds']:.1f}s" if "seconds" in s else "")
    ]
    for f in s["failed_records"]:
        lines.append("skipped " + failure_message(f["location"], f["field"], f["reason"]))
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
