"""The build engine: the stages that turn a catalog repository into ``build/``, and the units the
runner schedules (``shard``: one source file; the collection, export and catalog steps still
live in ``stacgit.build`` and ``stacgit.exports``)."""
