"""Business hours, pure: open or closed at an instant in the team's time zone, overnight spans, public
holidays from the ``holidays`` library, and the next opening across a weekend."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from switchboard_router.hours.calendar import BusinessHours, Opening, is_open, next_opening
from switchboard_router.hours.schemas import BusinessHoursIn

PARIS = "Europe/Paris"
NINE_TO_FIVE = tuple(Opening(day, time(9), time(17)) for day in range(5))  # Monday to Friday


def paris(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(PARIS))


def test_open_within_the_span_in_the_team_time_zone() -> None:
    hours = BusinessHours(PARIS, NINE_TO_FIVE)
    # Tuesday 8 December 2026, 08:30 UTC is 09:30 in Paris (CET, UTC+1): open; 16:30 UTC is 17:30: closed.
    assert is_open(hours, datetime(2026, 12, 8, 8, 30, tzinfo=UTC))
    assert not is_open(hours, datetime(2026, 12, 8, 16, 30, tzinfo=UTC))
    # 07:30 UTC is 08:30 in Paris: not yet.
    assert not is_open(hours, datetime(2026, 12, 8, 7, 30, tzinfo=UTC))


def test_the_same_instant_is_open_in_one_zone_and_closed_in_another() -> None:
    instant = datetime(2026, 12, 8, 15, 0, tzinfo=UTC)  # 16:00 in Paris, 10:00 in New York, 00:00 in Tokyo
    assert is_open(BusinessHours(PARIS, NINE_TO_FIVE), instant)
    assert is_open(BusinessHours("America/New_York", NINE_TO_FIVE), instant)
    assert not is_open(BusinessHours("Asia/Tokyo", NINE_TO_FIVE), instant)


def test_a_span_closes_at_its_end_exactly() -> None:
    hours = BusinessHours(PARIS, NINE_TO_FIVE)
    assert is_open(hours, paris(2026, 12, 8, 16, 59))
    assert not is_open(hours, paris(2026, 12, 8, 17, 0))
    assert is_open(hours, paris(2026, 12, 8, 9, 0))


def test_overnight_hours_run_into_the_next_day() -> None:
    # Friday 22:00 to Saturday 06:00 only.
    hours = BusinessHours(PARIS, (Opening(4, time(22), time(6)),))
    assert is_open(hours, paris(2026, 12, 11, 23, 0))  # Friday night
    assert is_open(hours, paris(2026, 12, 12, 5, 59))  # Saturday early morning
    assert not is_open(hours, paris(2026, 12, 12, 6, 0))
    assert not is_open(hours, paris(2026, 12, 11, 21, 59))
    assert not is_open(hours, paris(2026, 12, 10, 23, 0))  # Thursday night: no span


def test_a_public_holiday_from_the_holidays_library_closes_the_team() -> None:
    hours = BusinessHours(PARIS, NINE_TO_FIVE, country="FR")
    # Friday 25 December 2026 is Christmas Day in France.
    assert not is_open(hours, paris(2026, 12, 25, 10, 0))
    assert is_open(BusinessHours(PARIS, NINE_TO_FIVE), paris(2026, 12, 25, 10, 0))
    # The next opening skips the holiday and the weekend: Monday 28 December, 09:00 in Paris.
    assert next_opening(hours, paris(2026, 12, 24, 18, 0)) == paris(2026, 12, 28, 9, 0)


def test_a_subdivision_holiday_applies_only_there() -> None:
    # 6 January (Epiphany) is a holiday in Bavaria (BY) and not in Berlin (BE).
    week = BusinessHours("Europe/Berlin", NINE_TO_FIVE, country="DE", subdivision="BY")
    berlin = BusinessHours("Europe/Berlin", NINE_TO_FIVE, country="DE", subdivision="BE")
    at = datetime(2027, 1, 6, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert not is_open(week, at)
    assert is_open(berlin, at)


def test_next_opening_across_a_weekend_in_the_team_time_zone() -> None:
    hours = BusinessHours(PARIS, NINE_TO_FIVE)
    friday_evening = datetime(2026, 12, 11, 17, 30, tzinfo=UTC)  # 18:30 in Paris
    opens = next_opening(hours, friday_evening)
    assert opens == paris(2026, 12, 14, 9, 0)
    assert opens.utcoffset() == ZoneInfo(PARIS).utcoffset(datetime(2026, 12, 14, 9, 0))
    assert opens.astimezone(UTC) == datetime(2026, 12, 14, 8, 0, tzinfo=UTC)


def test_next_opening_is_later_the_same_day_before_opening_and_now_when_open() -> None:
    hours = BusinessHours(PARIS, NINE_TO_FIVE)
    assert next_opening(hours, paris(2026, 12, 8, 7, 0)) == paris(2026, 12, 8, 9, 0)
    now = paris(2026, 12, 8, 10, 0)
    assert next_opening(hours, now) == now


def test_next_opening_follows_a_daylight_saving_change() -> None:
    # Paris moves to CEST (UTC+2) on Sunday 29 March 2026: Monday 09:00 is 07:00 UTC, not 08:00.
    hours = BusinessHours(PARIS, NINE_TO_FIVE)
    opens = next_opening(hours, datetime(2026, 3, 27, 20, 0, tzinfo=UTC))
    assert opens.astimezone(UTC) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


def test_the_api_refuses_an_unknown_zone_country_or_subdivision() -> None:
    span = [{"weekday": 0, "opens": "09:00", "closes": "17:00"}]
    BusinessHoursIn.model_validate({"timezone": PARIS, "weekly": span, "holidays_country": "FR"})
    for bad in (
        {"timezone": "Mars/Olympus", "weekly": span},
        {"timezone": PARIS, "weekly": span, "holidays_country": "XX"},
        {"timezone": PARIS, "weekly": span, "holidays_country": "US", "holidays_subdivision": "ZZ"},
        {"timezone": PARIS, "weekly": span, "holidays_subdivision": "CA"},
        {"timezone": PARIS, "weekly": []},
        {"timezone": PARIS, "weekly": [{"weekday": 7, "opens": "09:00", "closes": "17:00"}]},
        {"timezone": PARIS, "weekly": [{"weekday": 0, "opens": "24:00", "closes": "17:00"}]},
    ):
        with pytest.raises(ValidationError):
            BusinessHoursIn.model_validate(bad)
