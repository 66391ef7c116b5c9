"""Snapshot items as they are kept: normalised (time-zone-less datetimes to UTC ``Z``, declared
``numeric`` fields to numbers) or quarantined with a reason, keyed by partition (``YYYY-MM``)
and id, and the report of one collection's snapshot."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path

import orjson

from stacgit.hashing import canonical_json, pretty_json
from stacgit.mapping import format_datetime, parse_rfc3339
from stacgit.project import CollectionSpec, Project, check_id


_TIME_FIELDS = ("datetime", "start_datetime", "end_datetime", "created", "updated")


_UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


QUARANTINE_EXAMPLES = 100


CHECKPOINT_FORMAT = 2
"""Bumped when the lines of a window checkpoint change shape: older checkpoints are refetched."""


@dataclass
class CollectionReport:
    records: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    complete: bool = True
    quarantined: int = 0
    quarantined_examples: list[dict] = field(default_factory=list)
    failed_windows: list[dict] = field(default_factory=list)
    windows: int = 0
    windows_resumed: int = 0
    requests: int = 0
    method: str = ""
    notes: list[str] = field(default_factory=list)  # workarounds for server quirks, as applied

    def quarantine(self, ident, why: str) -> None:
        """Count an invalid record; the first ``QUARANTINE_EXAMPLES`` are kept for the report."""
        self.quarantined += 1
        if len(self.quarantined_examples) < QUARANTINE_EXAMPLES:
            self.quarantined_examples.append({"id": ident, "reason": why})

    def to_json(self) -> dict:
        return {
            "records": self.records,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "complete": self.complete,
            "quarantined": self.quarantined,
            "quarantined_examples": self.quarantined_examples[:10],
            "failed_windows": self.failed_windows,
            "windows": self.windows,
            "windows_resumed": self.windows_resumed,
            "requests": self.requests,
            "method": self.method,
            "notes": self.notes,
        }


@dataclass
class SnapshotReport:
    """What ``stacgit snapshot`` did, per collection key; ``complete`` when every window of every
    collection was fetched (an incomplete one kept its previous files)."""

    collections: dict[str, CollectionReport] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(r.complete for r in self.collections.values())

    def to_json(self) -> dict:
        return {"collections": {k: r.to_json() for k, r in self.collections.items()}, "complete": self.complete}


def format_summary(report: SnapshotReport) -> list[tuple[str, bool]]:
    """Lines for people, each with whether it belongs on stderr."""
    lines = []
    for key, r in report.collections.items():
        state = "complete" if r.complete else "INCOMPLETE (previous snapshot kept)"
        lines.append((f"{key}: {r.records} records: {r.added} added, {r.changed} changed, {r.removed} removed; {state}", False))
        if r.quarantined:
            lines.append((f"  {r.quarantined} invalid item(s) quarantined, e.g. {r.quarantined_examples[0]}", False))
        lines += [(f"  note: {n}", False) for n in r.notes]
        lines += [(f"  failed window {w['window']}: {w['error']}", True) for w in r.failed_windows]
    return lines


def _normal_time(value):
    if not isinstance(value, str):
        return value
    try:
        return format_datetime(parse_rfc3339(value, default_tz=timezone.utc))
    except ValueError:
        return value


def _number(value):
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                continue
    return value


def normalise(item, numeric: tuple[str, ...]) -> tuple[dict | None, str | None]:
    """(item, None) or (None, why it is quarantined)."""
    if not isinstance(item, dict):
        return None, "not a JSON object"
    why = check_id(item.get("id"), "item id")
    if why is not None:
        return None, why
    props = item.get("properties")
    if not isinstance(props, dict):
        return None, "no properties object"
    for key in _TIME_FIELDS:
        if key in props:
            props[key] = _normal_time(props[key])
    for key in numeric:
        if key in props:
            props[key] = _number(props[key])
    start = props.get("datetime") or props.get("start_datetime")
    if not start and not (props.get("start_datetime") and props.get("end_datetime")):
        return None, "no datetime (nor start_datetime and end_datetime)"
    if start and not (isinstance(start, str) and _UTC_TIME.fullmatch(start)):
        return None, f"datetime {start!r} is not an RFC 3339 time"
    if "geometry" not in item:
        return None, "no geometry"
    return item, None


def partition_of(item: dict) -> str:
    props = item["properties"]
    when = props.get("datetime") or props.get("start_datetime")
    if isinstance(when, str) and len(when) >= 7:
        return when[:7]
    return "undated-" + hashlib.blake2b(item["id"].encode(), digest_size=1).hexdigest()


def dirs(project: Project, coll: CollectionSpec, qdigest: str) -> tuple[Path, Path]:
    out_dir = project.catalogs[coll.catalog_id].dir / "snapshots" / coll.id
    ck_root = project.state_dir / "snapshots" / coll.catalog_id / coll.id
    return out_dir, ck_root / qdigest[:16]


def keyed_line(item: dict, numeric: tuple[str, ...]) -> bytes:
    """One checkpoint line for an upstream item: ``<partition>TAB<id>TAB<canonical JSON>LF``,
    normalised; or ``!TABTAB<{"id", "reason"}>LF`` when it is quarantined. Partitions and ids
    hold no control characters (``normalise`` checks), so the line splits unambiguously."""
    ident = item.get("id") if isinstance(item, dict) else None
    item, why = normalise(item, numeric)
    if item is None:
        return b"!\t\t" + orjson.dumps({"id": ident if isinstance(ident, str) else None, "reason": why}) + b"\n"
    return b"%s\t%s\t%s\n" % (partition_of(item).encode(), item["id"].encode(), canonical_json(item))


def finish_incomplete(ck: Path, report: CollectionReport) -> CollectionReport:
    (ck.parent / "report.json").write_bytes(pretty_json({"complete": False, "failed_windows": report.failed_windows}))
    return report


def item_id(line: bytes) -> bytes:
    return orjson.loads(line)["id"].encode()
