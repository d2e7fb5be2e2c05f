from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from switchboard_router.models import Base


class BusinessHoursRow(Base):
    """A team's business hours (``hours.calendar.BusinessHours``); a team without a row is always open."""

    __tablename__ = "business_hours"

    team: Mapped[str] = mapped_column(ForeignKey("teams.name", ondelete="CASCADE"), primary_key=True)
    timezone: Mapped[str] = mapped_column(Text)
    # [{"weekday": 0-6, "opens": "HH:MM", "closes": "HH:MM"}, ...]
    weekly: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    country: Mapped[str | None] = mapped_column(Text)
    subdivision: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
