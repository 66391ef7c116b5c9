"""stacgit: STAC catalogs managed as code.

The public API is what the CLI calls::

    from stacgit import Project, run_build, compute_status, run_publish
    summary = run_build(Project.discover("."))  # a BuildReport; summary.to_json() is --json

Each command returns a report dataclass (``BuildReport``, ``SnapshotReport``, ``PublishReport``,
``ValidationReport``); warnings in them are ``StacgitWarning`` instances.

Names are imported on first use, so ``import stacgit`` (and every CLI command that does not
build, such as ``publish`` or ``--help``) does not pay for pyarrow and pandas.
"""

from importlib import import_module

_EXPORTS = {
    "BuildReport": "stacgit.engine.report",
    "Project": "stacgit.project",
    "PublishReport": "stacgit.publishing.report",
    "SnapshotReport": "stacgit.snapshot.items",
    "StacgitError": "stacgit.errors",
    "StacgitWarning": "stacgit.errors",
    "ValidationReport": "stacgit.validate.report",
    "compute_status": "stacgit.runner",
    "run_build": "stacgit.runner",
    "run_publish": "stacgit.publishing",
    "run_snapshot": "stacgit.snapshot",
    "run_validate": "stacgit.checking",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stacgit' has no attribute {name!r}")
