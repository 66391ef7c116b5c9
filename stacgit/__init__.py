"""stacgit: STAC catalogs managed as code.

The public API is what the CLI calls::

    from stacgit import Project, run_build, compute_status, run_publish
    summary = run_build(Project.discover("."))

Names are imported on first use, so ``import stacgit`` (and every CLI command that does not
build, such as ``publish`` or ``--help``) does not pay for pyarrow and pandas.
"""

from importlib import import_module

_EXPORTS = {
    "Project": "stacgit.project",
    "StacgitError": "stacgit.errors",
    "compute_status": "stacgit.runner",
    "run_build": "stacgit.runner",
    "run_publish": "stacgit.publishing",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stacgit' has no attribute {name!r}")
