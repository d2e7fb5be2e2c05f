from __future__ import annotations

import pytest

from switchboard_ingest.normalize import normalize_email, normalize_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (415) 555-0100", "+14155550100"),
        ("+14155550100", "+14155550100"),
        ("0044 20 7946 0958", "+442079460958"),
        ("020.7946.0958", "02079460958"),
    ],
)
def test_phone_formats_collapse_to_one_identity(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


def test_email_is_case_and_space_insensitive() -> None:
    assert normalize_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"
