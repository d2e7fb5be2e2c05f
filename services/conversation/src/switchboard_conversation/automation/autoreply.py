"""The acknowledgement auto-reply, pure: which text a customer left waiting is sent, and its stable id.

The router's ``conversation.queued`` carries the estimated wait, or, when the team serving the queue is
out of its business hours, when it opens and the team's time zone; the text is the configured template
of the case, rendered in the sandbox (``automation.templates``)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from switchboard_common.events import ConversationQueued
from switchboard_conversation.automation import templates


@dataclass(frozen=True, slots=True)
class AckTemplates:
    waiting: str  # the expected wait
    closed: str  # out of business hours: when the team answers


def ack_id(event: ConversationQueued) -> uuid.UUID:
    """One acknowledgement per (re)opening: the router announces a (re)opened conversation once, queued at
    its (re)opening time, so a redelivered event names the same message and it is stored and sent once."""
    return uuid.uuid5(event.conversation_id, f"auto-ack:{event.queued_at.astimezone(UTC).isoformat()}")


def ack_key(event: ConversationQueued) -> str:
    return f"auto-ack:{event.queued_at.astimezone(UTC).isoformat()}"


def local_time(at: datetime, timezone: str | None) -> str:
    """``Monday 07 December, 09:00 CET``: a time as the customer's team keeps it (UTC without one)."""
    try:
        zone = ZoneInfo(timezone) if timezone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return at.astimezone(zone).strftime("%A %d %B, %H:%M %Z")


def compose(event: ConversationQueued, display_name: str | None, channel: str, texts: AckTemplates) -> str:
    """The acknowledgement's text for a conversation left waiting."""
    variables = {
        "customer": {"first_name": templates.first_name(display_name), "display_name": display_name},
        "conversation": {"id": str(event.conversation_id), "channel": channel},
        "channel": channel,
        "position": event.position,
        "timezone": event.timezone,
    }
    if event.opens_at is not None:
        return templates.render(
            texts.closed, {**variables, "opens_at": local_time(event.opens_at, event.timezone)}
        )
    wait = event.estimated_wait_s
    return templates.render(
        texts.waiting,
        {
            **variables,
            "wait_seconds": wait,
            # Whole minutes, at least one: "about 0 minutes" promises what no one can keep.
            "wait_minutes": None if wait is None else max(1, math.ceil(wait / 60)),
        },
    )
