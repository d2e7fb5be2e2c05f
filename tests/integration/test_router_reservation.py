"""Capacity is reserved atomically in PostgreSQL: many transactions routing at once (as replicas would)
never over-assign an agent and never assign a conversation twice, though candidates are read unlocked."""

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
from switchboard_router.routing import repository
from switchboard_router.routing import service as routing_service
from switchboard_router.routing.policy import Requirement, Waiting
from switchboard_router.routing.repository import NewTask
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


async def _two_billing_agents(db: Database, outbox: Outbox) -> tuple[uuid.UUID, uuid.UUID]:
    """Two online billing agents of capacity 1, the first ranked first (never assigned: idle longest)."""
    ids = []
    async with db.unit_of_work() as session:
        for name in ("first", "second"):
            body = AgentCreate(name=name, email=f"{name}@example.com", skills=["billing"], capacity=1)
            agent = await create(session, body)
            await set_status(session, outbox, ADMIN, agent.id, AgentStatus.ONLINE)
            ids.append(agent.id)
        await session.execute(
            sa.text("UPDATE router.agents SET last_assigned_at = now() - interval '1 hour' WHERE id = :id"),
            {"id": ids[1]},
        )
    return ids[0], ids[1]


async def _holders(db: Database) -> dict[uuid.UUID, tuple[int, list[uuid.UUID]]]:
    """Per agent: active_count and the conversations assigned to them."""
    async with db.unit_of_work() as session:
        active: dict[uuid.UUID, int] = dict(
            (await session.execute(sa.text("SELECT id, active_count FROM router.agents"))).all()
        )
        rows = (
            await session.execute(
                sa.text("SELECT agent_id, conversation_id FROM router.tasks WHERE state = 'assigned'")
            )
        ).all()
    return {a: (n, sorted(c for agent, c in rows if agent == a)) for a, n in active.items()}


async def test_an_agent_another_transaction_holds_is_passed_over_without_waiting(settings: Settings) -> None:
    """Candidates are read unlocked and only the chosen agent is locked, skipping a held one: routing
    neither waits for the other transaction nor gives up while the next best agent is free."""
    db = Database.from_settings(settings)
    outbox = Outbox(outbox_table, settings)
    try:
        first, second = await _two_billing_agents(db, outbox)
        arrival = _opened()
        async with db.unit_of_work() as holder:
            await holder.execute(
                sa.text("SELECT 1 FROM router.agents WHERE id = :id FOR UPDATE"), {"id": first}
            )

            async def route() -> None:
                async with db.unit_of_work() as session:
                    await on_opened(session, outbox, [arrival], RoutingConfig())

            # Had routing waited for the held row, it would wait for this transaction, which only ends
            # after it: the timeout turns that hang into a failure.
            await asyncio.wait_for(route(), timeout=60)
        holders = await _holders(db)
    finally:
        await db.dispose()
    assert holders == {first: (0, []), second: (1, [arrival[1].conversation_id])}


async def test_capacity_filled_after_the_candidates_were_read_is_never_exceeded(settings: Settings) -> None:
    """The reservation checks capacity on the agent's latest row, not on the candidates as read: an agent
    filled by another transaction between the read and the reservation is not given more, and the task
    goes to the next candidate in the same decision."""
    db = Database.from_settings(settings)
    outbox = Outbox(outbox_table, settings)
    try:
        first, second = await _two_billing_agents(db, outbox)
        arrival, other = _opened(), _opened()
        async with db.unit_of_work() as session:
            now = utcnow()
            queued = await repository.insert_tasks(
                session,
                [
                    NewTask(
                        Waiting(arrival[1].conversation_id, Requirement.of(["billing"]), 0, now),
                        arrival[1].customer_id,
                        Channel.API.value,
                    )
                ],
            )
            stale = await repository.agents_with_capacity(session, [first, second])
            assert {c.agent_id: c.active for c in stale.candidates} == {first: 0, second: 0}
            # Meanwhile another replica routes a conversation to the first agent, and commits.
            async with db.unit_of_work() as elsewhere:
                await on_opened(elsewhere, outbox, [other], RoutingConfig())
            placed, _, taken = await routing_service._place(session, queued, stale, {}, now)
        holders = await _holders(db)
    finally:
        await db.dispose()
    assert [(m.conversation_id, m.agent_id) for m in placed] == [(arrival[1].conversation_id, second)]
    assert taken == {first}
    assert holders == {
        first: (1, [other[1].conversation_id]),
        second: (1, [arrival[1].conversation_id]),
    }
