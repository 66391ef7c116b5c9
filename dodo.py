"""doit entry point: `doit build` runs the same tasks as `stacgit build`.

Enumeration lives in stacgit.runner / stacgit.plan, work in stacgit.build.
"""

from stacgit.runner import load_for_doit

PROJECT, DOIT_CONFIG, task_build = load_for_doit(".")
