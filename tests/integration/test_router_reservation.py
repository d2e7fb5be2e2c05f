"""Capacity is reserved atomically in PostgreSQL: many transactions routing at once (as replicas would)
never over-assign an agent and never assign a conversation twice."""

from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa

from switchboard_common.auth import Principal, Role
from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    Channel,
    ConversationOpened,
    ConversationResolved,
    EventEnvelope,
    utcnow,
)
from switchboard_router.agents.schemas import AgentCreate
from switchboard_router.agents.service import create, set_status
from switchboard_router.models import AgentStatus, outbox_table
from switchboard_router.routing.service import RoutingConfig, on_opened, on_resolved, sweep
from tests.conftest import Settings

ADMIN = Principal(Role.ADMIN)


def _opened() -> tuple[EventEnvelope, ConversationOpened]:
    event = ConversationOpened(
        conversation_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        required_skills=["billing"],
        priority=0,
        opened_at=utcnow(),
    )
    return EventEnvelope.wrap(event, producer="test"), event


async def test_concurrent_routing_never_over_assigns(settings: Settings) -> None:
    db = Database.from_settings(settings.model_copy(update={"db_pool_size": 20}))
    outbox = Outbox(outbox_table, settings)
    try:
        async with db.unit_of_work() as session:
            agents = [
                await create(
                    session,
                    AgentCreate(name=f"a{i}", email=f"a{i}@example.com", skills=["billing"], capacity=2),
                )
                for i in range(3)
            ]
            # A busy-free agent without the skill: must never receive billing work.
            agents.append(
                await create(
                    session, AgentCreate(name="x", email="x@example.com", skills=["sales"], capacity=50)
                )
            )
        for agent in agents:
            async with db.unit_of_work() as session:
                await set_status(session, outbox, ADMIN, agent.id, AgentStatus.ONLINE)

        opened = [_opened() for _ in range(30)]

        async def route(batch: list[tuple[EventEnvelope, ConversationOpened]]) -> None:
            async with db.unit_of_work() as session:
                await on_opened(session, outbox, batch, RoutingConfig())

        # Every conversation routed in its own transaction, all at once, plus duplicates of the first ten
        # (a redelivery racing the original) and sweepers running alongside.
        async def sweeper() -> None:
            async with db.unit_of_work() as session:
                await sweep(session, outbox)

        # Batches of three, as consumer polls would bring them.
        await asyncio.gather(
            *(route(opened[i : i + 3]) for i in range(0, len(opened), 3)),
            *(route([o]) for o in opened[:10]),
            *(sweeper() for _ in range(5)),
        )

        async with db.unit_of_work() as session:
            loads = (
                await session.execute(sa.text("SELECT email, active_count, capacity FROM router.agents"))
            ).all()
            per_agent: dict[uuid.UUID, int] = dict(
                (
                    await session.execute(
                        sa.text(
                            "SELECT agent_id, count(*) FROM router.tasks WHERE state = 'assigned' GROUP BY agent_id"
                        )
                    )
                ).all()
            )
            states: dict[str, int] = dict(
                (
                    await session.execute(sa.text("SELECT state, count(*) FROM router.tasks GROUP BY state"))
                ).all()
            )
            assigned_events = await session.scalar(
                sa.text(
                    "SELECT count(*) FROM router.outbox WHERE headers->>'event_type' = 'conversation.assigned'"
                )
            )
    finally:
        await db.dispose()

    assert states == {"assigned": 6, "queued": 24}
    assert assigned_events == 6  # one assignment event per assigned conversation, none twice
    for email, active, capacity in loads:
        assert active <= capacity, email
    assert sorted(per_agent.values()) == [2, 2, 2]
    assert {email: active for email, active, _ in loads} == {
        "a0@example.com": 2,
        "a1@example.com": 2,
        "a2@example.com": 2,
        "x@example.com": 0,
    }


async def test_resolving_frees_capacity_and_serves_the_queue_head_exactly_once(settings: Settings) -> None:
    db = Database.from_settings(settings.model_copy(update={"db_pool_size": 20}))
    outbox = Outbox(outbox_table, settings)
    try:
        async with db.unit_of_work() as session:
            agent = await create(
                session, AgentCreate(name="a", email="a@example.com", skills=["billing"], capacity=2)
            )
            await set_status(session, outbox, ADMIN, agent.id, AgentStatus.ONLINE)
        opened = [_opened() for _ in range(6)]
        async with db.unit_of_work() as session:
            await on_opened(session, outbox, opened, RoutingConfig())
        first_two = [ev.conversation_id for _, ev in opened[:2]]
        resolved = [
            ConversationResolved(conversation_id=c, agent_id=agent.id, resolved_at=utcnow())
            for c in first_two
        ]

        async def resolve(events: list[ConversationResolved]) -> None:
            async with db.unit_of_work() as session:
                await on_resolved(session, outbox, events)

        async def sweeper() -> None:
            async with db.unit_of_work() as session:
                await sweep(session, outbox)

        # The same resolution twice (a redelivery racing the original) and sweepers alongside.
        await asyncio.gather(resolve(resolved), resolve(resolved), *(sweeper() for _ in range(3)))
        async with db.unit_of_work() as session:
            active = await session.scalar(sa.text("SELECT active_count FROM router.agents"))
            states: dict[uuid.UUID, str] = dict(
                (await session.execute(sa.text("SELECT conversation_id, state FROM router.tasks"))).all()
            )
    finally:
        await db.dispose()
    assert active == 2
    assert [states[c] for c in first_two] == ["closed", "closed"]
    # The queue head (the two oldest waiting) was served next, in order; the rest still wait.
    assert [states[ev.conversation_id] for _, ev in opened[2:]] == [
        "assigned",
        "assigned",
        "queued",
        "queued",
    ]
