"""Exception tree. Every error a user can cause is a StacgitError with a one-line message.

StacgitError
 +-- ConfigError        catalog.yaml / mapping YAML is malformed or inconsistent (exit 2)
 +-- SourceError        a source file cannot be read (encoding, syntax, missing file)
 +-- MappingError       a record cannot be mapped to an item
 +-- PlanError          the build cannot be planned (duplicate ids, unsafe ids, lock held)
 +-- BuildError         a build step failed
 +-- PublishError       a publish cannot start or did not finish (the live root stays complete)
      +-- StalePublishError  the target was published from elsewhere since this build's base
"""

from __future__ import annotations


class StacgitError(Exception):
    """Root of all stacgit errors. ``str(err)`` is a complete one-line message."""

    exit_code = 1


class ConfigError(StacgitError):
    """A declared input (catalog.yaml, mapping) is invalid; names the file and key path."""

    exit_code = 2


class SourceError(StacgitError):
    """A source file cannot be read; names the file and line/row."""


class MappingError(StacgitError):
    """A record cannot be mapped; carries the field that failed."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    @classmethod
    def of(cls, problems: list["MappingError"]) -> "MappingError":
        """One error for all of a record's failing fields: the first names the field, the
        reason goes on with ``; <field>: <reason>`` for each other one."""
        first, rest = problems[0], problems[1:]
        return cls(first.field, "; ".join([first.reason, *(f"{p.field}: {p.reason}" for p in rest)]))


class PlanError(StacgitError):
    """The build cannot proceed (duplicate or unsafe ids, another build running)."""


class BuildError(StacgitError):
    """A build step failed."""


class PublishError(StacgitError):
    """A publish cannot start or did not finish. Whatever was uploaded is complete content the
    live root does not point at yet; rerunning the publish finishes it."""


class StalePublishError(PublishError):
    """The target's manifest changed since this build's base: someone else published."""
