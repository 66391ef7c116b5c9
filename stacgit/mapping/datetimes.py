"""Datetimes as mappings read them and STAC writes them: RFC 3339 in UTC with ``Z``, parsed
with ``strptime`` formats or ISO 8601, a time without zone never silently UTC."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stacgit.errors import ConfigError


def format_datetime(dt: datetime) -> str:
    """RFC 3339 in UTC with 'Z'; fractional seconds only when present, trailing zeros trimmed."""
    dt = dt.astimezone(timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += ("." + f"{dt.microsecond:06d}").rstrip("0")
    return text + "Z"


def sortable_datetime(text: str) -> str:
    """Fixed-width form of a canonical datetime (always 6 fraction digits): sorts as text."""
    if "." in text:
        head, frac = text[:-1].split(".")
        return f"{head}.{frac:0<6}Z"
    return text[:-1] + ".000000Z"


def parse_rfc3339(text: str, default_tz=None) -> datetime:
    """An ISO 8601 / RFC 3339 date-time as an aware UTC datetime. A time without zone gets
    ``default_tz``, or is a ValueError (never silently UTC)."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        if default_tz is None:
            raise ValueError(f"{text!r} has no time zone")
        dt = dt.replace(tzinfo=default_tz)
    return dt.astimezone(timezone.utc)


def parse_datetime(value: Any, formats: tuple[str, ...], tz: ZoneInfo | None) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and formats in (
        ("epoch",),
        ("epoch_ms",),
    ):
        seconds = value / 1000 if formats == ("epoch_ms",) else value
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    else:
        text = str(value).strip()
        dt = None
        if formats and formats not in (("epoch",), ("epoch_ms",)):
            for fmt in formats:
                try:
                    dt = datetime.strptime(text, fmt)
                    break
                except ValueError:
                    continue
            if dt is None:
                raise ValueError(f"{text!r} does not match format {' or '.join(formats)}")
        elif formats:
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a number of seconds since the epoch") from None
            return parse_datetime(number, formats, tz)
        else:
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{text!r} is not an ISO 8601 date/time (set 'format')") from None
    if dt.tzinfo is None:
        if tz is None:
            raise ValueError(f"{value!s} has no time zone (set 'tz', e.g. tz: UTC)")
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(timezone.utc)


_STRPTIME = set("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
_DIRECTIVE = re.compile(r"%(.?)")


def bad_directive(fmt: str) -> str | None:
    """Why ``fmt`` cannot be a ``strptime`` format (checked when the mapping loads, not on the
    first record), or None."""
    if fmt in ("epoch", "epoch_ms"):
        return None
    found = _DIRECTIVE.findall(fmt)
    if not found:
        return "has no % directive (write e.g. '%Y-%m-%d', or epoch, epoch_ms)"
    for d in found:
        if d not in _STRPTIME:
            return f"'%{d}' is not a strptime directive" if d else "ends with a lone '%'"
    return None


def tzinfo(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}: unknown time zone {name!r}") from exc
