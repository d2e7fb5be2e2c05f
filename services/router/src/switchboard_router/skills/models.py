from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from switchboard_router.models import Base


class Skill(Base):
    """A catalogued skill: agents' skills and routing rules' skills must name one."""

    __tablename__ = "skills"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    description: Mapped[str] = mapped_column(Text, server_default=text("''"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
