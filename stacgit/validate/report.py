"""A validation report: results grouped by (schema, message), with a few examples each."""

from __future__ import annotations

from dataclasses import dataclass, field


from stacgit.validate.core import DocResult, EXAMPLES_PER_GROUP


@dataclass
class ValidationReport:
    checked: int = 0
    valid: int = 0
    invalid: int = 0
    schema_unavailable: int = 0
    groups: dict = field(default_factory=dict)  # (severity, schema, message) -> [count, examples]
    unavailable: dict = field(default_factory=dict)  # url -> [count, why]
    duplicates: dict = field(default_factory=dict)  # (collection, id) -> first path

    def add(self, item_id: str | None, path: str | None, result: DocResult) -> None:
        self.checked += 1
        setattr(self, result.status, getattr(self, result.status) + 1)
        for p in result.problems:
            g = self.groups.setdefault((p.severity, p.schema, p.message), [0, []])
            g[0] += 1
            if len(g[1]) < EXAMPLES_PER_GROUP:
                g[1].append({"id": item_id, "path": path, "pointer": p.pointer})
        for url, why in result.unavailable.items():
            u = self.unavailable.setdefault(url, [0, why])
            u[0] += 1

    def examples_full(self, result: DocResult) -> bool:
        """Whether every group of ``result``'s problems has its examples already (after it was added)."""
        return all(len(self.groups[(p.severity, p.schema, p.message)][1]) >= EXAMPLES_PER_GROUP for p in result.problems)

    def add_many(self, result: DocResult, n: int) -> None:
        """``n`` more documents with a result added before, whose groups have their examples:
        the same counts as adding each, without the work per document."""
        self.checked += n
        setattr(self, result.status, getattr(self, result.status) + n)
        for p in result.problems:
            self.groups[(p.severity, p.schema, p.message)][0] += n
        for url in result.unavailable:
            self.unavailable[url][0] += n

    def add_identity(self, collection: str | None, item_id: str | None, path: str | None, status: str) -> None:
        """Track item ids; a second item with the same (collection, id) is invalid."""
        if item_id is None:
            return
        key = (collection, item_id)
        first = self.duplicates.get(key)
        if first is None:
            self.duplicates[key] = path
            return
        if status != "invalid":
            setattr(self, status, getattr(self, status) - 1)
            self.invalid += 1
        g = self.groups.setdefault(("error", "lint:duplicate-id", f"duplicate item id in collection {collection}"), [0, []])
        g[0] += 1
        if len(g[1]) < EXAMPLES_PER_GROUP:
            g[1].append({"id": item_id, "path": path, "pointer": "/id", "first": first})

    def merge(self, other: "ValidationReport") -> None:
        for k in ("checked", "valid", "invalid", "schema_unavailable"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for key, (count, examples) in other.groups.items():
            g = self.groups.setdefault(key, [0, []])
            g[0] += count
            g[1] = (g[1] + examples)[:EXAMPLES_PER_GROUP]
        for url, (count, why) in other.unavailable.items():
            u = self.unavailable.setdefault(url, [0, why])
            u[0] += count

    @property
    def warnings(self) -> int:
        return sum(c for (sev, _, _), (c, _) in self.groups.items() if sev == "warning")

    def ok(self, strict: bool = False) -> bool:
        if self.invalid:
            return False
        return not strict or (not self.schema_unavailable and not self.warnings)

    def to_json(self) -> dict:
        def groups(sev: str) -> list:
            rows = [
                {"schema": schema, "message": msg, "count": count, "examples": examples}
                for (s, schema, msg), (count, examples) in self.groups.items()
                if s == sev
            ]
            return sorted(rows, key=lambda r: (-r["count"], r["schema"], r["message"]))

        return {
            "checked": self.checked,
            "valid": self.valid,
            "invalid": self.invalid,
            "schema_unavailable": self.schema_unavailable,
            "errors": groups("error"),
            "warnings": groups("warning"),
            "unavailable_schemas": [
                {"url": url, "why": why, "documents": count} for url, (count, why) in sorted(self.unavailable.items())
            ],
        }
