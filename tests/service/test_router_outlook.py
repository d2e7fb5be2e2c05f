"""conversation.queued says what a customer left waiting can be told, computed for the batch in one
statement: positions in each queue, the estimated wait, and when a closed team opens."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.outbox import Outbox
from switchboard_common.events import Channel, ConversationOpened, ConversationQueued, EventEnvelope, utcnow
from switchboard_router.agents import service as agents_service
from switchboard_router.agents.schemas import AgentCreate
from switchboard_router.hours import service as hours_service
from switchboard_router.models import outbox_table
from switchboard_router.routing import repository as routing_repository
from switchboard_router.routing import service
from switchboard_router.routing.estimate import Slots
from switchboard_router.routing.policy import Requirement, Waiting
from switchboard_router.routing.service import RoutingConfig
from switchboard_router.rules import service as rules_service
from switchboard_router.rules.book import RuleBook
from switchboard_router.rules.schemas import RuleCreate
from tests.conftest import Settings
from tests.support import counting


@pytest.fixture
def outbox(settings: Settings) -> Outbox:
    return Outbox(outbox_table, settings)


def _opened(
    skills: list[str], minutes_ago: int, priority: int = 0, text: str = ""
) -> tuple[EventEnvelope, ConversationOpened]:
    payload = ConversationOpened(
        conversation_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        required_skills=skills,
        priority=priority,
        opened_at=utcnow() - timedelta(minutes=minutes_ago),
        text=text,
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

    # A rule sends printer questions to the queue "devices"; everything else waits in "default".
    rule = RuleCreate.model_validate(
        {"name": "devices", "conditions": {"keywords": ["printer"]}, "outcome": {"queue": "devices"}}
    )
    await rules_service.create(session, rule)
    old, new, urgent, spanish, printer, later_printer = (
        _opened(["billing"], 10),
        _opened(["billing"], 5),
        _opened(["billing"], 1, priority=5),
        _opened(["spanish"], 7),
        _opened(["billing"], 20, text="My printer is on fire"),
        _opened([], 15, text="printer again"),
    )
    batch = [old, new, urgent, spanish, printer, later_printer]
    await service.on_opened(session, outbox, batch, RoutingConfig(rules=RuleBook(0, "en")))
    told = await _announced(session)
    # Queue order within a queue, whatever the skills: priority first, then age; another queue counts apart.
    assert {e.conversation_id: told[e.conversation_id].position for _, e in batch} == {
        urgent[1].conversation_id: 1,
        old[1].conversation_id: 2,
        spanish[1].conversation_id: 3,
        new[1].conversation_id: 4,
        printer[1].conversation_id: 1,
        later_printer[1].conversation_id: 2,
    }
    assert {told[e.conversation_id].queue for _, e in (printer, later_printer)} == {"devices"}
    # No agent online: the wait is unknown. The default queue's team serves "devices" too, and is closed:
    # when it opens, in Tokyo.
    for _, e in batch:
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


async def test_a_queue_is_served_by_the_online_agents_able_to_take_one_of_its_conversations(
    session: AsyncSession,
) -> None:
    async def agent(name: str, skills: list[Any], capacity: int, status: str = "online", **more: Any) -> None:
        body = AgentCreate(name=name, email=f"{name}@example.com", skills=skills, capacity=capacity, **more)
        created = await agents_service.create(session, body)
        await session.execute(
            sa.text("UPDATE router.agents SET status = :s, active_count = :n WHERE id = :id"),
            {"s": status, "n": 1 if name == "expert" else 0, "id": created.id},
        )

    await agent("expert", [{"skill": "billing", "level": 5}], 3)
    await agent("novice", [{"skill": "billing", "level": 2}], 5, languages=["es"])
    await agent("away", [{"skill": "billing", "level": 5}], 7, status="offline")

    async def queued(queue: str, skills: list[str], levels: list[int], language: str | None = None) -> None:
        await session.execute(
            sa.text(
                "INSERT INTO router.tasks (conversation_id, state, required_skills, min_levels, language, "
                "priority, channel, enqueued_at, queue) VALUES (:id, 'queued', :skills, :levels, :lang, 0, "
                "'api', now(), :queue)"
            ),
            {"id": uuid.uuid4(), "skills": skills, "levels": levels, "lang": language, "queue": queue},
        )

    await queued("vip", ["billing"], [4])  # only the expert reaches level 4
    await queued("spanish", ["billing"], [4])
    await queued("spanish", ["billing"], [1], "es")  # the novice speaks Spanish: either can take one
    await queued("nobody", ["sales"], [1])
    await queued("anyone", [], [])

    slots = await routing_repository.queue_slots(session, ["vip", "spanish", "nobody", "anyone", "empty"])
    assert slots == {
        "vip": Slots(3, 2),
        "spanish": Slots(8, 7),
        "anyone": Slots(8, 7),
    }
