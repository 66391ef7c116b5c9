"""What git knows about the repository's files (GitPython): commit times of patch files.

The build stays offline and deterministic: a committed file's time is the committer time of
the newest commit that touched it, the same in every clone. A file that is new or modified
in the working tree has no such time; callers use the build time and say so.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

UNCOMMITTED = "uncommitted"

_CACHE: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def commit_times(root: Path, paths: list[str]) -> dict[str, str]:
    """repo-relative path -> RFC 3339 UTC time of the newest commit touching it, or
    ``UNCOMMITTED`` (not in a git repository, untracked, or changed since that commit)."""
    key = (str(root), tuple(sorted(paths)))
    if key in _CACHE:
        return _CACHE[key]
    out = {p: UNCOMMITTED for p in paths}
    if not paths:
        return out
    import git

    try:
        repo = git.Repo(root, search_parent_directories=True)
        top = Path(repo.working_tree_dir).resolve()
        prefix = Path(root).resolve().relative_to(top).as_posix()
        full = {(f"{prefix}/{p}" if prefix != "." else p): p for p in paths}
        dirty = set()
        for line in repo.git.status("--porcelain", "-z", "--untracked-files=all", "--", *full).split("\0"):
            if len(line) > 3:
                dirty.add(line[3:])
        log = repo.git.log("--format=%x01%ct", "--name-only", "--no-renames", "--", *full)
        when = 0
        for line in log.splitlines():
            if line.startswith("\x01"):
                when = int(line[1:])
            elif line in full and out[full[line]] == UNCOMMITTED and line not in dirty:
                out[full[line]] = rfc3339(when)
    except (ImportError, ValueError, OSError, git.exc.GitError):  # no repository, no git binary
        out = {p: UNCOMMITTED for p in paths}
    _CACHE[key] = out
    return out


def clear_cache() -> None:
    _CACHE.clear()


def head_commit(root: Path, dirty: bool = False) -> tuple[str | None, bool]:
    """(commit id of HEAD, whether the working tree differs from it when ``dirty`` is asked
    for, else False), or (None, False) when ``root`` is not in a git repository."""
    import git

    try:
        repo = git.Repo(root, search_parent_directories=True)
        changed = dirty and bool(repo.git.status("--porcelain", "--untracked-files=normal"))
        return repo.head.commit.hexsha, changed
    except (ImportError, ValueError, OSError, git.exc.GitError):
        return None, False


def is_ancestor(root: Path, ancestor: str, commit: str) -> bool | None:
    """Whether ``ancestor`` is ``commit`` or in its history; None when git cannot tell (the
    ancestor is not in this clone, e.g. a shallow checkout or another branch not fetched)."""
    import git

    try:
        repo = git.Repo(root, search_parent_directories=True)
        repo.commit(ancestor)
        return repo.is_ancestor(ancestor, commit)
    except (ImportError, ValueError, OSError, git.exc.GitError, git.exc.BadName, git.exc.BadObject):
        return None
