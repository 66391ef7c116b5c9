"""Exception tree. Every error a user can cause is a StacgitError with a one-line message.

StacgitError
 +-- ConfigError        catalog.yaml / mapping YAML is malformed or inconsistent (exit 2)
 +-- SourceError        a source file cannot be read (encoding, syntax, missing file)
 +-- MappingError       a record cannot be mapped to an item
 +-- PlanError          the build cannot be planned (duplicate ids, unsafe ids, lock held)
 +-- BuildError         a build step failed
 +-- PublishError       a publish cannot start or did not finish (the live root stays complete)
      +-- StalePublishError  the target was published from elsewhere since this build's base

Warnings are not raised: a build, snapshot or publish goes on and its report carries them, as
instances of one tree, so a library user can tell them apart by class and the CLI prints each as
``warning: <message>``:

StacgitWarning
 +-- PatchWarning        a patch that selects nothing, or a patch file not committed yet
 +-- EmptyCollectionWarning  a collection whose source has no records (an emptied file?)
 +-- ColumnDriftWarning  a field whose type differs between items: its GeoParquet column is JSON text
 +-- TargetWarning       a publish target holds something this build cannot account for
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


class StacgitWarning(UserWarning):
    """Something a user probably did not mean, which did not stop the command. ``str(w)`` is
    the one-line message; ``subject`` names what it is about (a file, a collection, a path)."""

    def __init__(self, message: str, subject: str = ""):
        super().__init__(message)
        self.message = message
        self.subject = subject

    def __str__(self) -> str:
        return self.message

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.message == self.message

    def __hash__(self) -> int:
        return hash((type(self), self.message))

    def to_json(self) -> str:
        """Reports give warnings as their messages, as they always did."""
        return self.message


class PatchWarning(StacgitWarning):
    """A patch selects no item, or its file is not committed (its changes carry the build time)."""


class EmptyCollectionWarning(StacgitWarning):
    """A configured collection has no items because its source has no records."""


class ColumnDriftWarning(StacgitWarning):
    """A field has different types in different items, so its GeoParquet column holds JSON text."""


class TargetWarning(StacgitWarning):
    """A publish target holds an object this build cannot account for (e.g. a change-feed record)."""
