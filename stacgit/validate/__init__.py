"""Validation of STAC documents: JSON schemas (core + every declared extension + custom
schemas), extension checks and lint, with a report grouped by (schema, message): ``core`` (the
validator), ``report``, ``targets`` (files and trees, in a process pool).

The fast path is jsonschema-rs, compiled once per schema URL with every ``$ref`` served by
the :class:`~stacgit.schemas.SchemaStore` (never the network unless the store is online).
Like stac-validator (python-jsonschema without a format checker), ``format`` is an annotation,
not an assertion; datetimes are still checked by the STAC patterns and by lint.
stac-validator is the reference implementation; ``tests/unit/test_validate.py`` checks that
both give the same verdict on every document of the test corpus.
"""

from stacgit.extensions import Problem
from stacgit.validate.core import DocResult, Validator, core_schema_url, short_message
from stacgit.validate.report import ValidationReport
from stacgit.validate.targets import Target, collect_targets, read_documents, validate_targets, walk_targets

__all__ = ["DocResult", "Problem", "ValidationReport", "Target", "Validator", "collect_targets", "core_schema_url", "read_documents",
           "short_message", "validate_targets", "walk_targets"]
