from __future__ import annotations

import pytest

from switchboard_ingest.normalize import normalize_email, normalize_phone


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+1 (415) 555-0100", None, "+14155550100"),
        ("+14155550100", None, "+14155550100"),
        ("0044 20 7946 0958", None, "+442079460958"),
        ("+44 (0)20 7946 0958", None, "+442079460958"),  # the national trunk 0 written in brackets
        ("020.7946.0958", "GB", "+442079460958"),  # national, with the business's region
        ("(415) 555-0100", "US", "+14155550100"),
    ],
)
def test_phone_formats_collapse_to_one_e164_identity(raw: str, region: str | None, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["(((((", "  .  ", "+-----", "+1 23", "020 7946 0958"])
def test_what_is_not_a_possible_number_is_refused(raw: str) -> None:
    # The last one is national without a region: whose country it is cannot be known.
    with pytest.raises(ValueError, match="phone number"):
        normalize_phone(raw)


def test_email_is_case_and_space_insensitive() -> None:
    assert normalize_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"
