from __future__ import annotations

import functools
import zoneinfo
from datetime import datetime, time
from typing import Annotated, Any, Self

import holidays
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

from switchboard_router.hours.calendar import BusinessHours, Opening

ClockTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class OpeningSpan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weekday: StrictInt = Field(ge=0, le=6, description="0 = Monday ... 6 = Sunday: the day the span opens.")
    opens: ClockTime = Field(description="Local wall-clock time, `HH:MM`.")
    closes: ClockTime = Field(
        description="`HH:MM`; not after `opens` means the next day (`22:00`-`06:00` runs overnight; equal "
        "times are 24 hours)."
    )

    def opening(self) -> Opening:
        return Opening(self.weekday, time.fromisoformat(self.opens), time.fromisoformat(self.closes))


class BusinessHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str = Field(max_length=64, description="IANA time zone, e.g. `Europe/Paris`.")
    weekly: list[OpeningSpan] = Field(min_length=1, max_length=70)
    holidays_country: str | None = Field(
        default=None,
        max_length=3,
        description="ISO 3166-1 alpha-2 country whose public holidays close the team (the `holidays` "
        "library); none: no holidays.",
    )
    holidays_subdivision: str | None = Field(
        default=None, max_length=10, description="The country's subdivision (state, region), e.g. `CA`."
    )

    @model_validator(mode="after")
    def _known(self) -> Self:
        if self.timezone not in _zones():
            raise ValueError(f"unknown time zone {self.timezone!r}")
        supported: dict[str, Any] = holidays.list_supported_countries()
        if self.holidays_country is not None and self.holidays_country not in supported:
            raise ValueError(f"no holiday calendar for country {self.holidays_country!r}")
        if self.holidays_subdivision is not None:
            if self.holidays_country is None:
                raise ValueError("a holiday subdivision needs its country")
            if self.holidays_subdivision not in supported[self.holidays_country]:
                raise ValueError(f"{self.holidays_country} has no subdivision {self.holidays_subdivision!r}")
        return self

    def hours(self) -> BusinessHours:
        return BusinessHours(
            self.timezone,
            tuple(s.opening() for s in self.weekly),
            self.holidays_country,
            self.holidays_subdivision,
        )


class BusinessHoursPublic(BaseModel):
    team: str
    timezone: str
    weekly: list[OpeningSpan]
    holidays_country: str | None
    holidays_subdivision: str | None
    open_now: bool = Field(description="Whether the team is open at the time of the request.")
    next_opening: datetime = Field(
        description="The time of the request when open, else when the team next opens, in its time zone."
    )
    updated_at: datetime
