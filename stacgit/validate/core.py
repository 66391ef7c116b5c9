"""The validator: a document's JSON schemas (core + declared extensions + custom), compiled once
per URL with jsonschema-rs, then extension checks and lint, giving a ``DocResult``."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import jsonschema_rs
import orjson

from stacgit.extensions import Extension, Problem, all_extensions, json_pointer
from stacgit.hashing import digest_obj
from stacgit.lint import lint
from stacgit.schemas import SchemaStore, SchemaUnavailable, canonical_url


VALIDATOR_VERSION = "1"
"""Bumped when stacgit's checks change, so cached verdicts are recomputed."""


EXAMPLES_PER_GROUP = 3



_KIND_FILE = {"Feature": ("item", "item"), "Collection": ("collection", "collection"), "Catalog": ("catalog", "catalog")}


def core_schema_url(doc: dict) -> str | None:
    kind = _KIND_FILE.get(doc.get("type"))  # type: ignore[arg-type]
    version = doc.get("stac_version")
    if kind is None or not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+\.\d+(-[\w.]+)?", version):
        return None
    return f"https://schemas.stacspec.org/v{version}/{kind[0]}-spec/json-schema/{kind[1]}.json"


_SUBJECT = re.compile(r"^(.*?) (is not|is a required|has less|has more|is less|is greater|is longer|is shorter|does not|is not allowed|was expected|is too|should|is disallowed|has non-unique)(.*)$", re.S)


def short_message(err) -> str:
    """jsonschema-rs messages start with the offending value; keep the value out of the
    message (it is in the example's pointer) so errors group, except property names."""
    msg = err.message
    kind = type(err.kind).__name__
    m = _SUBJECT.match(msg)
    if m is None:
        return msg if len(msg) <= 200 else msg[:197] + "..."
    subject = m.group(1)
    if kind in ("Required", "AdditionalProperties", "UnevaluatedProperties") and len(subject) <= 80:
        return msg
    return f"value {m.group(2)}{m.group(3)}"[:300]


def _descend(err) -> list:
    """Best matching leaf errors of an anyOf/oneOf failure: the branch that failed least
    (ignoring branches whose discriminating ``type``/``const``/``enum`` did not match)."""
    ctx = getattr(err.kind, "context", None)
    if not ctx:
        return [err]
    base = list(err.instance_path)

    def wrong_branch(branch: list) -> bool:
        for e in branch:
            kind = type(e.kind).__name__
            path = list(e.instance_path)
            if kind == "Type" and path == base:
                return True
            if kind in ("Enum", "Constant") and path[:-1] == base and path and path[-1] == "type":
                return True
        return False

    candidates = [b for b in ctx if b and not wrong_branch(b)] or [b for b in ctx if b]
    if not candidates:
        return [err]
    best = min(candidates, key=lambda b: (len(b), -max(len(list(e.instance_path)) for e in b)))
    out = []
    for e in best:
        out += _descend(e)
    return out


@dataclass
class DocResult:
    status: str  # valid | invalid | schema_unavailable
    problems: list[Problem] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # url -> why
    schemas: tuple[str, ...] = ()  # the schema URLs the document was validated against

    def to_row(self) -> bytes | None:
        if not self.problems and not self.unavailable:
            return None
        return orjson.dumps(
            {"p": [[p.schema, p.message, p.pointer, p.severity] for p in self.problems], "u": self.unavailable}
        )

    @classmethod
    def from_row(cls, status: str, row: bytes | str | None) -> "DocResult":
        if row is None:
            return cls(status)
        d = orjson.loads(row)
        return cls(status, [Problem(*p) for p in d["p"]], d["u"])


_RECEIVED: dict[str, dict[str, Any]] = {}
"""In a worker process: the compiled schemas of the last validator received (by its token)."""


class Validator:
    """Validates documents; compiles each schema once. Picklable settings, lazy state.

    A validator is sent to workers once per task (a Dask worker lives across tasks and builds):
    the copies of one validator share, in each process, the schemas the first copy compiled,
    since compiling them again took longer than the documents of a task. A new validator (each
    build step makes its own) has a new token, so schemas edited since are compiled afresh."""

    def __init__(self, store: SchemaStore, repo_root: Path | None = None, lint_enabled: bool = True, token: str | None = None):
        self.store = store
        self.repo_root = repo_root
        self.lint_enabled = lint_enabled
        self._token = token or uuid.uuid4().hex
        self._compiled: dict[str, Any] = {}
        self._checks: dict[str, Any] | None = None
        self._fingerprints: dict[tuple[str, ...], str] = {}

    def __getstate__(self):
        return {"store": SchemaStore(self.store.dirs, self.store.cache_dir, self.store.online), "repo_root": self.repo_root,
                "lint_enabled": self.lint_enabled, "token": self._token}

    def __setstate__(self, state):
        self.__init__(state["store"], state["repo_root"], state["lint_enabled"], state["token"])
        if self._token not in _RECEIVED:
            _RECEIVED.clear()
            _RECEIVED[self._token] = {}
        self._compiled = _RECEIVED[self._token]

    # -------------------------------------------------------------- schemas

    def _retrieve(self, uri: str) -> dict:
        if uri.startswith("file:") and self.repo_root is not None:
            return self._file_schema(uri)
        return self.store.get(uri)

    def _file_schema(self, uri: str) -> dict:
        from urllib.parse import unquote, urlsplit

        path = Path(unquote(urlsplit(uri).path)).resolve()
        root = Path(self.repo_root).resolve()  # type: ignore[arg-type]
        if root not in path.parents:
            raise SchemaUnavailable(uri, "custom schema files must be inside the repository")
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise SchemaUnavailable(uri, f"cannot read: {exc}") from None
        if not isinstance(doc, dict):
            raise SchemaUnavailable(uri, "a schema must be a JSON object")
        return doc

    def schema_url(self, ref: str) -> str:
        """A custom schema reference (URL or repo-relative path) as a URL."""
        if ref.startswith(("https://", "http://", "file:")) or self.repo_root is None:
            return canonical_url(ref)
        return (Path(self.repo_root) / ref).resolve().as_uri()

    def compiled(self, url: str):
        got = self._compiled.get(url)
        if got is None:
            try:
                if url.startswith("file:"):
                    schema = self._file_schema(url)
                    self.store.require(url, schema)
                else:
                    self.store.require(url)
                    schema = self.store.get(url)
                got = jsonschema_rs.validator_for(schema, retriever=self._retrieve, base_uri=url, validate_formats=False)
            except SchemaUnavailable as exc:
                got = exc
            except (ValueError, jsonschema_rs.ReferencingError) as exc:
                got = SchemaUnavailable(url, f"schema cannot be compiled: {str(exc).splitlines()[0][:200]}")
            self._compiled[url] = got
        return got

    def schemas_for(self, doc: dict, extra: Iterable[str] = ()) -> tuple[list[str], list[Problem]]:
        urls: list[str] = []
        problems: list[Problem] = []
        core = core_schema_url(doc)
        if core is None:
            problems.append(Problem("stac", "not a STAC document: needs type Feature, Collection or Catalog and a stac_version like 1.1.0", ""))
        else:
            urls.append(core)
        exts = doc.get("stac_extensions", [])
        if isinstance(exts, list):
            for i, uri in enumerate(exts):
                if isinstance(uri, str) and uri.startswith(("https://", "http://")):
                    urls.append(canonical_url(uri))
                else:
                    problems.append(Problem("stac", "stac_extensions entries should be schema URLs (a short name cannot be validated)", json_pointer("stac_extensions", i), "warning"))
        urls += [self.schema_url(r) for r in extra]
        return list(dict.fromkeys(urls)), problems

    # -------------------------------------------------------------- checks

    def _extension_checks(self, uri: str):
        if self._checks is None:
            self._checks = {}
            for ext in all_extensions():
                if ext.schema_uri and type(ext).check is not Extension.check:
                    self._checks[canonical_url(ext.schema_uri)] = ext
        return self._checks.get(uri)

    def schema_check(self, doc: dict, extra: Iterable[str] = ()) -> DocResult:
        """Schemas only (the part stac-validator also does)."""
        urls, problems = self.schemas_for(doc, extra)
        unavailable: dict[str, str] = {}
        for url in urls:
            v = self.compiled(url)
            if isinstance(v, SchemaUnavailable):
                unavailable[url] = v.why if v.url == url else f"{v.url}: {v.why}"
                continue
            if v.is_valid(doc):
                continue
            for err in v.iter_errors(doc):
                for leaf in _descend(err):
                    problems.append(Problem(url, short_message(leaf), json_pointer(*leaf.instance_path)))
        return _result(problems, unavailable, tuple(urls))

    def check(self, doc: dict, extra: Iterable[str] = (), path: str | None = None, root: str | None = None) -> DocResult:
        result = self.schema_check(doc, extra)
        problems = list(result.problems)
        for uri in doc.get("stac_extensions") or []:
            ext = self._extension_checks(canonical_url(uri)) if isinstance(uri, str) else None
            if ext is not None:
                problems += ext.check(doc)
        if self.lint_enabled:
            problems += lint(doc, path, root)
        return _result(_dedupe(problems), result.unavailable, result.schemas)

    def fingerprint(self, urls: Iterable[str]) -> str:
        """Changes when any of these schemas (or what they reference) changes. Computed once
        per validator: schemas are read once per build step, not edited during it."""
        urls = tuple(urls)
        got = self._fingerprints.get(urls)
        if got is None:
            got = self._fingerprints[urls] = self._fingerprint(urls)
        return got

    def _fingerprint(self, urls: tuple[str, ...]) -> str:
        plain = [u for u in urls if not u.startswith("file:")]
        files = []
        for u in urls:
            if u.startswith("file:"):
                try:
                    files.append([u, digest_obj(self._file_schema(u))])
                except SchemaUnavailable:
                    files.append([u, None])
        return digest_obj([VALIDATOR_VERSION, self.store.fingerprint(plain), files, self.lint_enabled])


def _dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _result(problems: list[Problem], unavailable: dict[str, str], schemas: tuple[str, ...]) -> DocResult:
    if any(p.severity == "error" for p in problems):
        status = "invalid"
    elif unavailable:
        status = "schema_unavailable"
    else:
        status = "valid"
    return DocResult(status, problems, unavailable, schemas)
