"""Normalization of customer addresses, so one person's phone or email is one identity whatever its format
and whichever channel it came from."""

from __future__ import annotations

import re

_PHONE_NOISE = re.compile(r"[\s().\-]")


def normalize_email(value: str) -> str:
    return value.strip().lower()


def normalize_phone(value: str) -> str:
    """Digits with a leading ``+``: ``+1 (415) 555-0100`` and ``+14155550100`` are one number.

    Numbers without a country code are kept as digits only; mapping them to E.164 needs the business's
    default region, a setting for when SMS and WhatsApp channels land.
    """
    compact = _PHONE_NOISE.sub("", value.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    digits = re.sub(r"\D", "", compact)
    return f"+{digits}" if compact.startswith("+") else digits
