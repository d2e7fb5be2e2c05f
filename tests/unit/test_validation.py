from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from switchboard_common.validation import StorableDatetime, StorableText

STORABLE = TypeAdapter(StorableText)


def test_ordinary_text_passes_unchanged() -> None:
    assert STORABLE.validate_python("héllo ☎ 你好") == "héllo ☎ 你好"


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800 lone surrogate"])
def test_what_postgresql_cannot_store_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        STORABLE.validate_python(bad)


STORABLE_TIME = TypeAdapter(StorableDatetime)


def test_an_iso_datetime_with_an_offset_is_kept_as_the_same_instant_in_utc() -> None:
    parsed = STORABLE_TIME.validate_python("2026-11-23T10:30:00+02:00")
    assert parsed == datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "bad",
    [
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
        "0.5",  # would be read as a Unix time
        1700000000,
        "2026-11-23T10:30:00",  # no offset: which instant is meant?
        "yesterday",
    ],
)
def test_what_is_not_a_storable_instant_is_refused(bad: object) -> None:
    with pytest.raises(ValidationError):
        STORABLE_TIME.validate_python(bad)


def test_query_strings_are_read_the_same_way() -> None:
    assert STORABLE_TIME.validate_strings("2026-11-23T08:30:00Z") == datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
    with pytest.raises(ValidationError):
        STORABLE_TIME.validate_strings("0.5")
