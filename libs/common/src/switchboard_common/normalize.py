"""Normalization of customer addresses, so one person's phone or email is one identity whatever its format
and whichever channel it came from."""

from __future__ import annotations

from typing import Annotated

import phonenumbers
from pydantic import AfterValidator, Field, StringConstraints


def normalize_email(value: str) -> str:
    return value.strip().lower()


def normalize_phone(value: str, region: str | None = None) -> str:
    """The number in E.164 (``+14155550100``), however it was written: ``+1 (415) 555-0100``,
    ``0044 20 7946 0958``, or a national number when ``region`` (ISO 3166 alpha-2) says whose.

    Raises ``ValueError`` for anything that is not a possible phone number: a phone links customers, so a
    malformed one (``(((((`` normalizing to nothing) must not join strangers into one thread.
    """
    text = value.strip()
    if text.startswith("00"):  # the international call prefix most of the world dials
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("must be a phone number in international form, e.g. +14155550100") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValueError("is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


PhoneNumber = Annotated[
    str,
    StringConstraints(pattern=r"^(\+|00)[0-9][0-9 ().\-]{3,40}$"),
    # Which numbers exist is more than a pattern can say: a custom format names the rule.
    Field(json_schema_extra={"format": "phone"}),
    AfterValidator(normalize_phone),
]
"""A phone in international form that ``phonenumbers`` deems possible, given back in E.164."""
