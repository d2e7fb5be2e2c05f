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

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, StringConstraints

# Patterns, not validators: a pattern is part of the string's own schema, so the OpenAPI document shows
# exactly what is accepted (a validator's checks are invisible there, and a pattern layered on a validator
# vanishes from it). A lone surrogate matches no pattern at all: pydantic refuses it before matching.
NO_NUL = r"^[^\x00]*$"
# Control characters and every Unicode space, spelled out: ``\s`` means different sets in the document's
# regex dialect (ECMA-262) and in pydantic's (Rust), so a client validating against the document would
# disagree with the server about, say, U+0085.
BLANK = r"\x00-\x20\x7f-\x9f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
NOT_BLANK = rf"^[^\x00]*[^{BLANK}][^\x00]*$"
EMAIL = rf"^[^@{BLANK}]{{1,64}}@[^@{BLANK}]{{1,255}}\.[^@{BLANK}]{{1,63}}$"

StorableText = Annotated[str, StringConstraints(pattern=NO_NUL)]
"""Text PostgreSQL can store: no NUL (U+0000), no lone surrogate. Lengths layer on top with another
``StringConstraints``; a field with its own pattern must refuse NUL in it itself."""

NonBlankText = Annotated[str, StringConstraints(pattern=NOT_BLANK)]
"""Storable text with at least one character that is not whitespace."""


def json_integer(value: Any) -> Any:
    """A ``BeforeValidator`` for integers: pydantic's lax mode reads ``true`` as 1 and ``"3"`` as 3, a
    misreading that is refused; a whole float (``3.0``) is an integer in JSON Schema, so it stays accepted.
    Put the bounds before it (``Annotated[int, Field(ge=0), BeforeValidator(json_integer)]``) so they
    appear in the document."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON integer")
    return value


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
