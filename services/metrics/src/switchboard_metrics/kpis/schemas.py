from __future__ import annotations

from pydantic import BaseModel, Field


class WaitStats(BaseModel):
    """Seconds from a conversation opening to its assignment (the queue wait, or speed of answer)."""

    count: int
    avg: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


class KpiSnapshot(BaseModel):
    messages_received: int
    conversations_opened: int
    conversations_assigned: int
    conversations_resolved: int
    conversations_reopened: int = Field(
        description="Resolved conversations the customer reopened by writing again."
    )
    waiting_now: int = Field(description="Opened, not yet assigned nor resolved.")
    longest_wait_seconds: float | None
    time_to_assign_seconds: WaitStats
    events_by_type: dict[str, int]
