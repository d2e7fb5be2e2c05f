"""Input types whose every accepted value the database can store.

PostgreSQL refuses NUL (U+0000) in text, and UTF-8 cannot carry a lone surrogate. A date-time near the ends
of Python's range (``0001-01-01T00:00:00+14:00``) cannot even be converted to UTC. A value like these,
accepted at the edge, would be acknowledged and then fail to be stored downstream; so the edge refuses it
with a 422 instead.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode (no lone surrogates)") from exc
    return value


StorableText = Annotated[str, AfterValidator(_storable)]

_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_only(value: Any) -> Any:
    # pydantic would read a number (or a numeric string, as every query parameter is) as a Unix time:
    # ``?before=0.5`` meaning 1970 is a silent misreading, not a value anybody sends on purpose.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise ValueError("must be an ISO 8601 date-time with a UTC offset, e.g. 2026-11-23T09:30:00Z")
    return value


def _in_utc_range(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is outside the supported range (years 1 to 9999 in UTC)") from exc


StorableDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_only), AfterValidator(_in_utc_range)]
"""An ISO 8601 date-time with an offset, given back in UTC; numbers and out-of-range instants are refused."""
