"""stacgit: STAC catalogs managed as code.

The public API is what the CLI calls::

    from stacgit import Project, run_build, compute_status
    summary = run_build(Project.discover("."))
"""

from stacgit.errors import StacgitError
from stacgit.plan import compute_status
from stacgit.project import Project
from stacgit.runner import run_build

__all__ = ["Project", "StacgitError", "compute_status", "run_build"]
__version__ = "0.1.0"
