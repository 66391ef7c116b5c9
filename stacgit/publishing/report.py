"""What a publish did: one ``CatalogPublish`` per catalog, added up in a ``PublishReport``.
``stacgit publish --json`` prints ``to_json()``; ``format_summary`` is what people read."""

from __future__ import annotations

from dataclasses import dataclass, field

from stacgit.errors import StacgitWarning

COUNTS = ("uploaded", "unchanged", "deleted", "orphans", "bytes", "repaired")


@dataclass
class CatalogPublish:
    """One catalog sent to one target (or, with ``dry_run``, what would be sent)."""

    catalog: str
    target: str
    uploaded: int = 0
    unchanged: int = 0
    deleted: int = 0
    orphans: int = 0  # removed from the build but left on the target (no --prune)
    bytes: int = 0
    repaired: int = 0  # objects --verify found missing or altered and sent again
    warnings: list[StacgitWarning] = field(default_factory=list)
    generation: int | None = None
    commit: str | None = None
    upload_paths: list[str] | None = None  # dry runs only
    delete_paths: list[str] | None = None

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in ("catalog", "target", *COUNTS)}
        out["warnings"] = [w.to_json() for w in self.warnings]
        out["generation"], out["commit"] = self.generation, self.commit
        if self.upload_paths is not None:
            out.update(upload_paths=self.upload_paths, delete_paths=self.delete_paths)
        return out


@dataclass
class PublishReport:
    dry_run: bool
    catalogs: list[CatalogPublish] = field(default_factory=list)

    def total(self, count: str) -> int:
        return sum(getattr(c, count) for c in self.catalogs)

    def to_json(self) -> dict:
        return {**{k: self.total(k) for k in COUNTS}, "dry_run": self.dry_run, "catalogs": [c.to_json() for c in self.catalogs]}


def format_summary(report: PublishReport) -> str:
    lines = []
    verb = "would upload" if report.dry_run else "uploaded"
    for s in report.catalogs:
        line = f"{s.catalog} -> {s.target}: {s.uploaded:,} {verb} ({_size(s.bytes)}), {s.unchanged:,} unchanged, {s.deleted:,} deleted"
        if s.orphans:
            line += f", {s.orphans:,} removed from the build but left on the target (--prune deletes them)"
        if s.repaired:
            line += f", {s.repaired:,} repaired"
        if s.generation is not None and not report.dry_run:
            line += f"; generation {s.generation}" + (f" (commit {s.commit[:12]})" if s.commit else "")
        lines.append(line)
        lines += [f"warning: {w}" for w in s.warnings]
        if report.dry_run:
            for label, paths in (("upload", s.upload_paths or []), ("delete", s.delete_paths or [])):
                lines += [f"  {label} {p}" for p in paths[:20]]
                if len(paths) > 20:
                    lines.append(f"  ... {len(paths) - 20:,} more to {label}")
    return "\n".join(lines)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
