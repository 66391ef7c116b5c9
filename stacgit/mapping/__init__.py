"""Declarative record -> STAC Item mappings. Pure: no I/O besides loading the spec, no eval.

A mapping file (``mappings/<name>.yaml``) says how each field of an Item is computed from a
source record. Values are *value specs* (``values``): mappings with exactly one source key

    path: JMESPath expression        value: constant
    template: 'text {expr} text'     coalesce: [spec, spec, ...]

followed by optional transforms, applied in the order of ``values.TRANSFORMS``:

    json -> regex (+ group) -> split -> lookup (+ lookup_default) -> join
    -> type (datetime parsing with format, tz) -> scale/offset

and ``optional: true`` / ``default: <value>`` for missing values. ``geometry`` builds the
geometry, ``datetimes`` reads and writes times, ``spec`` compiles a whole mapping. Every key is
checked at load time and unknown keys are errors (docs/mappings.md is the reference).
"""

from stacgit.mapping.datetimes import format_datetime, parse_rfc3339, sortable_datetime
from stacgit.mapping.spec import PASSTHROUGH, MappingSpec, compile_mapping, item_columns, item_time_range, load_mapping
from stacgit.mapping.values import OMIT, SOURCE_KEYS, TRANSFORMS, VALUE_FIELDS, compile_value, spec_type

__all__ = [
    "OMIT", "PASSTHROUGH", "SOURCE_KEYS", "TRANSFORMS", "VALUE_FIELDS", "MappingSpec", "compile_mapping", "compile_value", "format_datetime",
    "item_columns", "item_time_range", "load_mapping", "parse_rfc3339", "sortable_datetime", "spec_type",
]
