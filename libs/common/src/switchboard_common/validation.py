"""Input types whose every accepted value the database can store.

PostgreSQL refuses NUL (U+0000) in text, and UTF-8 cannot carry a lone surrogate. A value with either,
accepted at the edge, would be acknowledged and then fail to be stored downstream; so the edge refuses it
with a 422 instead.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode (no lone surrogates)") from exc
    return value


StorableText = Annotated[str, AfterValidator(_storable)]
