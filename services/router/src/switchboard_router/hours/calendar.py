"""Business hours, pure: is a team open at an instant, and when does it open next.

* Weekly openings are wall-clock spans in the team's time zone (IANA, ``zoneinfo``), each on a weekday
  (0 = Monday). A span whose closing time is not after its opening time runs overnight into the next day
  (``22:00``-``06:00``); equal times are a full 24 hours.
* A span belongs to the day it opens: on a public holiday (the ``holidays`` library, by country and
  optional subdivision) no span opens, and a span that opened the evening before runs to its end.
* Instants are compared in UTC, so a daylight-saving change never makes a span longer or shorter than
  its wall-clock times say; a wall time that does not exist that day (the spring gap) is read with the
  offset before the change, as ``zoneinfo`` does.

Nothing here reads the clock or the database: the same inputs give the same answer.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

# How far ahead the next opening is looked for: a year and a bit covers any weekly calendar with every
# holiday of a country in it.
_HORIZON_DAYS = 400


@dataclass(frozen=True, slots=True)
class Opening:
    weekday: int  # 0 = Monday ... 6 = Sunday
    opens: time
    closes: time  # not after ``opens``: the next day


@dataclass(frozen=True, slots=True)
class BusinessHours:
    timezone: str  # IANA name
    weekly: Sequence[Opening]
    country: str | None = None  # ISO 3166-1 alpha-2, for public holidays
    subdivision: str | None = None  # the country's subdivision code (a state, a region)


@functools.lru_cache(maxsize=256)
def _holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year).keys())


def is_holiday(hours: BusinessHours, day: date) -> bool:
    if hours.country is None:
        return False
    return day in _holidays(hours.country, hours.subdivision, day.year)


def _spans(hours: BusinessHours, day: date) -> Iterator[tuple[datetime, datetime]]:
    """The spans opening on ``day`` (local), as UTC instants."""
    if is_holiday(hours, day):
        return
    zone = ZoneInfo(hours.timezone)
    for opening in hours.weekly:
        if opening.weekday != day.weekday():
            continue
        start = datetime.combine(day, opening.opens, tzinfo=zone)
        end_day = day if opening.closes > opening.opens else day + timedelta(days=1)
        end = datetime.combine(end_day, opening.closes, tzinfo=zone)
        yield start.astimezone(UTC), end.astimezone(UTC)


def is_open(hours: BusinessHours, now: datetime) -> bool:
    """Whether the team is open at ``now`` (an aware instant)."""
    today = now.astimezone(ZoneInfo(hours.timezone)).date()
    return any(
        start <= now < end
        for day in (today - timedelta(days=1), today)  # yesterday's overnight spans reach into today
        for start, end in _spans(hours, day)
    )


def next_opening(hours: BusinessHours, now: datetime) -> datetime:
    """``now`` when open, else the start of the next span, in the team's time zone. Raises ValueError for a
    calendar that never opens (no weekly span), which the API refuses to store."""
    zone = ZoneInfo(hours.timezone)
    if is_open(hours, now):
        return now.astimezone(zone)
    today = now.astimezone(zone).date()
    for offset in range(_HORIZON_DAYS):
        starts = sorted(start for start, _ in _spans(hours, today + timedelta(days=offset)) if start > now)
        if starts:
            return starts[0].astimezone(zone)
    raise ValueError("these business hours never open")
