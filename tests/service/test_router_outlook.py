"""conversation.queued says what a customer left waiting can be told, computed for the batch in one
statement: positions in each queue, the estimated wait, and when a closed team opens."""

from __future__ import annotations

import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.outbox import Outbox
from switchboard_common.events import Channel, ConversationOpened, ConversationQueued, EventEnvelope, utcnow
from switchboard_router.hours import service as hours_service
from switchboard_router.models import outbox_table
from switchboard_router.routing import service
from switchboard_router.routing.policy import Requirement, Waiting
from switchboard_router.routing.service import RoutingConfig
from tests.conftest import Settings
from tests.support import counting


@pytest.fixture
def outbox(settings: Settings) -> Outbox:
    return Outbox(outbox_table, settings)


def _opened(
    skills: list[str], minutes_ago: int, priority: int = 0
) -> tuple[EventEnvelope, ConversationOpened]:
    payload = ConversationOpened(
        conversation_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        required_skills=skills,
        priority=priority,
        opened_at=utcnow() - timedelta(minutes=minutes_ago),
    )
    return EventEnvelope.wrap(payload, producer="test"), payload


async def _announced(session: AsyncSession) -> dict[uuid.UUID, ConversationQueued]:
    out = {}
    for value in await session.scalars(sa.text("SELECT value FROM router.outbox ORDER BY id")):
        payload = EventEnvelope.from_bytes(value).parse()
        if isinstance(payload, ConversationQueued):
            out[payload.conversation_id] = payload
    return out


async def test_positions_per_queue_and_the_closed_team_opening(session: AsyncSession, outbox: Outbox) -> None:
    await session.execute(sa.text("INSERT INTO router.teams (name) VALUES ('night')"))
    # Open one minute a week, three days from now: closed now.
    day = (utcnow() + timedelta(days=3)).date()
    await session.execute(
        sa.text(
            "INSERT INTO router.business_hours (team, timezone, weekly) VALUES ('night', 'Asia/Tokyo', "
            "jsonb_build_array(jsonb_build_object('weekday', CAST(:weekday AS int), 'opens', '03:00', 'closes', '03:01')))"
        ),
        {"weekday": day.weekday()},
    )
    await session.execute(sa.text("INSERT INTO router.queues (name, team) VALUES ('default', 'night')"))

    old, new, urgent, other = (
        _opened(["billing"], 10),
        _opened(["billing"], 5),
        _opened(["billing"], 1, priority=5),
        _opened(["tech"], 20),
    )
    await service.on_opened(session, outbox, [old, new, urgent, other], RoutingConfig(rules=None))
    told = await _announced(session)
    # Queue order within the same skills: priority first, then age; another skill set counts apart.
    assert {e.conversation_id: told[e.conversation_id].position for _, e in (old, new, urgent, other)} == {
        urgent[1].conversation_id: 1,
        old[1].conversation_id: 2,
        new[1].conversation_id: 3,
        other[1].conversation_id: 1,
    }
    # No agent online: the wait is unknown. The default queue's team is closed: when it opens, in Tokyo.
    for _, e in (old, new, urgent, other):
        assert told[e.conversation_id].estimated_wait_s is None
        assert told[e.conversation_id].timezone == "Asia/Tokyo"
        opens_at = told[e.conversation_id].opens_at
        assert opens_at is not None
        assert opens_at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M") == "03:00"


async def test_the_outlook_is_one_statement_whatever_the_batch(session: AsyncSession, outbox: Outbox) -> None:
    async def statements_for(batch_size: int) -> int:
        opened = [_opened([f"s{batch_size}"], i) for i in range(batch_size)]
        await service.on_opened(session, outbox, opened, RoutingConfig(rules=None))
        tasks = [
            Waiting(e.conversation_id, Requirement.of([f"s{batch_size}"]), 0, e.opened_at) for _, e in opened
        ]
        with counting(session) as counter:
            told = await hours_service.outlook(session, tasks, 200, 300.0, utcnow())
        assert len(told) == batch_size
        return counter.count

    assert await statements_for(1) == await statements_for(50) == 1
