"""A reopened conversation in the router, on the real database: its task waits again and is assigned as an
opened one is, within capacity; a reopen or a resolution replayed out of its time changes nothing."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from switchboard_common.auth import Principal, Role
from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    Channel,
    ConversationOpened,
    ConversationReopened,
    ConversationResolved,
    EventEnvelope,
    utcnow,
)
from switchboard_router.agents.schemas import AgentCreate
from switchboard_router.agents.service import create, set_status
from switchboard_router.models import AgentStatus, outbox_table
from switchboard_router.routing.service import RoutingConfig, on_opened, on_reopened, on_resolved
from tests.conftest import Settings

ADMIN = Principal(Role.ADMIN)
T0 = utcnow() - timedelta(hours=1)


class Router:
    """The router's consumer handlers, each call in its own transaction as a poll would be."""

    def __init__(self, db: Database, outbox: Outbox) -> None:
        self.db, self.outbox = db, outbox

    async def agent(self, email: str, capacity: int) -> uuid.UUID:
        async with self.db.unit_of_work() as session:
            body = AgentCreate(name=email, email=email, skills=["billing"], capacity=capacity)
            agent = await create(session, body)
            await set_status(session, self.outbox, ADMIN, agent.id, AgentStatus.ONLINE)
            return agent.id

    async def opened(self, cid: uuid.UUID, at: datetime) -> None:
        event = ConversationOpened(
            conversation_id=cid,
            customer_id=uuid.uuid4(),
            channel=Channel.API,
            required_skills=["billing"],
            priority=0,
            opened_at=at,
        )
        async with self.db.unit_of_work() as session:
            await on_opened(
                session, self.outbox, [(EventEnvelope.wrap(event, producer="test"), event)], RoutingConfig()
            )

    async def resolved(self, cid: uuid.UUID, at: datetime) -> None:
        async with self.db.unit_of_work() as session:
            await on_resolved(
                session,
                self.outbox,
                [ConversationResolved(conversation_id=cid, agent_id=None, resolved_at=at)],
            )

    async def reopened(self, *events: ConversationReopened) -> None:
        async with self.db.unit_of_work() as session:
            await on_reopened(
                session,
                self.outbox,
                [(EventEnvelope.wrap(e, producer="test"), e) for e in events],
                RoutingConfig(),
            )

    async def task(self, cid: uuid.UUID) -> tuple[str, uuid.UUID | None, datetime, datetime | None]:
        """(state, agent, enqueued at, closed at) of the conversation's task."""
        async with self.db.unit_of_work() as session:
            row = (
                await session.execute(
                    sa.text(
                        "SELECT state, agent_id, enqueued_at, closed_at FROM router.tasks WHERE conversation_id = :c"
                    ),
                    {"c": cid},
                )
            ).one()
        return row[0], row[1], row[2], row[3]

    async def active(self, agent_id: uuid.UUID) -> int:
        async with self.db.unit_of_work() as session:
            found = await session.scalar(
                sa.text("SELECT active_count FROM router.agents WHERE id = :a"), {"a": agent_id}
            )
        return int(found)

    async def events(self, cid: uuid.UUID) -> list[tuple[str, dict[str, object]]]:
        """(type, payload) of the routing events about ``cid``, in order."""
        async with self.db.unit_of_work() as session:
            found = await session.execute(
                sa.text("SELECT headers->>'event_type', value FROM router.outbox WHERE key = :k ORDER BY id"),
                {"k": str(cid)},
            )
            return [(t, json.loads(v)["payload"]) for t, v in found]


def reopen(cid: uuid.UUID, at: datetime, previous_agent: uuid.UUID | None = None) -> ConversationReopened:
    return ConversationReopened(
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=Channel.EMAIL,
        required_skills=["billing"],
        priority=0,
        reopened_at=at,
        previous_agent_id=previous_agent,
    )


@pytest.fixture
def router(db: Database, settings: Settings) -> Router:
    return Router(db, Outbox(outbox_table, settings))


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _time(value: object) -> datetime:
    return datetime.fromisoformat(str(value))


async def test_a_reopened_conversation_waits_within_capacity_and_is_assigned_again(router: Router) -> None:
    ada = await router.agent("ada@example.com", capacity=1)
    first, second = uuid.uuid4(), uuid.uuid4()
    await router.opened(first, _at(0))
    await router.resolved(first, _at(5))
    await router.opened(second, _at(6))  # takes ada's only seat
    assert await router.task(second) == ("assigned", ada, _at(6), None)

    await router.reopened(reopen(first, _at(10), previous_agent=ada))

    # ada is full: the reopened conversation waits, announced as queued from its reopen.
    assert await router.task(first) == ("queued", None, _at(10), None)
    assert await router.active(ada) == 1
    [*_, (kind, payload)] = await router.events(first)
    assert (kind, _time(payload["queued_at"])) == ("conversation.queued", _at(10))

    await router.resolved(second, _at(20))  # frees ada, who takes the queue head

    assert (await router.task(first))[:3] == ("assigned", ada, _at(10))
    assert await router.active(ada) == 1
    [*_, (kind, payload)] = await router.events(first)
    assert kind == "conversation.assigned"
    assert (payload["agent_id"], _time(payload["queued_at"])) == (str(ada), _at(10))


async def test_a_reopen_is_assigned_at_once_when_an_agent_is_free(router: Router) -> None:
    ada = await router.agent("ada@example.com", capacity=1)
    cid = uuid.uuid4()
    await router.opened(cid, _at(0))
    await router.resolved(cid, _at(5))
    assert await router.active(ada) == 0

    await router.reopened(reopen(cid, _at(10)), reopen(cid, _at(10)))  # redelivered within the poll

    assert (await router.task(cid))[:3] == ("assigned", ada, _at(10))
    assert await router.active(ada) == 1
    assert [kind for kind, _ in await router.events(cid)] == [
        "conversation.assigned",
        "conversation.assigned",
    ]
    # Redelivered in a later poll: the task is not closed, so nothing changes.
    await router.reopened(reopen(cid, _at(10)))
    assert await router.active(ada) == 1
    assert len(await router.events(cid)) == 2


async def test_a_stale_reopen_replayed_after_a_later_resolution_changes_nothing(router: Router) -> None:
    ada = await router.agent("ada@example.com", capacity=2)
    cid = uuid.uuid4()
    await router.opened(cid, _at(0))
    await router.resolved(cid, _at(5))
    await router.reopened(reopen(cid, _at(10)))
    await router.resolved(cid, _at(15))
    before = await router.events(cid)

    await router.reopened(reopen(cid, _at(10)))

    assert await router.task(cid) == ("closed", ada, _at(10), _at(15))
    assert await router.active(ada) == 0
    assert await router.events(cid) == before


async def test_a_stale_resolution_replayed_after_the_reopen_leaves_the_reopened_task_alone(
    router: Router,
) -> None:
    ada = await router.agent("ada@example.com", capacity=2)
    cid = uuid.uuid4()
    await router.opened(cid, _at(0))
    await router.resolved(cid, _at(5))
    await router.reopened(reopen(cid, _at(10)))
    assert (await router.task(cid))[:2] == ("assigned", ada)

    await router.resolved(cid, _at(5))

    assert (await router.task(cid))[:2] == ("assigned", ada)
    assert await router.active(ada) == 1
    # The current resolution still closes it and frees ada.
    await router.resolved(cid, _at(15))
    assert (await router.task(cid))[0] == "closed"
    assert await router.active(ada) == 0
