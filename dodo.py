"""doit entry point: `doit build` runs the same tasks as `stacgit build`
(`STACGIT_STRICT=1 doit build` for `stacgit build --strict`).

Enumeration lives in stacgit.runner / stacgit.plan, work in stacgit.build.
"""

import os

from stacgit.runner import load_for_doit

PROJECT, DOIT_CONFIG, task_build = load_for_doit(".", strict=os.environ.get("STACGIT_STRICT") == "1")
