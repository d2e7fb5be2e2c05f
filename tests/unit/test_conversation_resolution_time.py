"""When a resolution is recorded: now, but never before the conversation started (or restarted) waiting,
so the router can order resolutions and reopens by their times whatever the services' clocks."""

from __future__ import annotations

import uuid
from datetime import timedelta

from switchboard_common.events import utcnow
from switchboard_conversation.conversations.service import resolution_time
from switchboard_conversation.models import Conversation

T0 = utcnow()
MICROSECOND = timedelta(microseconds=1)


def _conversation(reopened_after: timedelta | None = None) -> Conversation:
    return Conversation(
        id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        opened_at=T0,
        reopened_at=None if reopened_after is None else T0 + reopened_after,
    )


def test_a_resolution_is_now_when_the_clocks_agree() -> None:
    assert resolution_time(_conversation(), T0 + timedelta(minutes=3)) == T0 + timedelta(minutes=3)
    reopened = _conversation(timedelta(hours=1))
    assert resolution_time(reopened, T0 + timedelta(hours=2)) == T0 + timedelta(hours=2)


def test_a_resolution_is_never_before_the_opening() -> None:
    assert resolution_time(_conversation(), T0 - timedelta(seconds=2)) == T0


def test_a_resolution_is_strictly_after_the_reopen_it_ends() -> None:
    reopened = _conversation(timedelta(hours=1))
    assert resolution_time(reopened, T0 + timedelta(minutes=59)) == T0 + timedelta(hours=1) + MICROSECOND
    assert resolution_time(reopened, T0 + timedelta(hours=1)) == T0 + timedelta(hours=1) + MICROSECOND
