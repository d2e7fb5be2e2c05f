"""Router and metrics follow ``customer.merged``, called directly on the real database."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.auth import Principal, Role
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    Channel,
    ConversationOpened,
    CustomerMerged,
    EventEnvelope,
    merged_targets,
    utcnow,
)
from switchboard_common.kafka.consumer import Delivery
from switchboard_metrics.customers.service import on_customer_merged as metrics_follow
from switchboard_router.agents.schemas import AgentCreate
from switchboard_router.agents.service import create, set_status
from switchboard_router.customers.service import on_customer_merged as router_follow
from switchboard_router.models import AgentStatus, outbox_table
from switchboard_router.routing.service import RoutingConfig, on_opened
from tests.conftest import Settings


def opened(customer_id: uuid.UUID) -> tuple[EventEnvelope, ConversationOpened]:
    event = ConversationOpened(
        conversation_id=uuid.uuid4(),
        customer_id=customer_id,
        channel=Channel.API,
        required_skills=["billing"],
        priority=0,
        opened_at=utcnow(),
    )
    return EventEnvelope.wrap(event, producer="test"), event


def merged(source: uuid.UUID, target: uuid.UUID, closed: uuid.UUID | None = None) -> CustomerMerged:
    return CustomerMerged(
        merge_id=uuid.uuid4(),
        source_customer_id=source,
        target_customer_id=target,
        conversation_ids=[],
        closed_conversation_id=closed,
        kept_conversation_id=uuid.uuid4() if closed else None,
        merged_at=utcnow(),
    )


def test_a_chain_of_merges_in_one_batch_ends_at_the_last_target() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert merged_targets([merged(a, b), merged(b, c)]) == {a: c, b: c}
    # A cycle (refused by the conversation service, but a replay can bring one) is cut, not followed.
    assert merged_targets([merged(a, b), merged(b, a)]) == {a: a, b: b}


async def test_the_router_frees_the_closed_conversations_agent_and_moves_the_tasks(
    session: AsyncSession, settings: Settings
) -> None:
    outbox = Outbox(outbox_table, settings)
    agent = await create(
        session, AgentCreate(name="a", email="a@example.com", skills=["billing"], capacity=1)
    )
    await set_status(session, outbox, Principal(Role.ADMIN), agent.id, AgentStatus.ONLINE)
    source, target, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    closing, waiting = opened(source), opened(other)
    await on_opened(session, outbox, [closing], RoutingConfig())
    await on_opened(session, outbox, [waiting], RoutingConfig())  # the agent is full: it waits

    event = merged(source, target, closed=closing[1].conversation_id)
    await router_follow(session, outbox, [event])
    await router_follow(session, outbox, [event])  # redelivered: changes nothing

    states: dict[uuid.UUID, str] = dict(
        (await session.execute(sa.text("SELECT conversation_id, state FROM router.tasks"))).all()
    )
    assert states == {closing[1].conversation_id: "closed", waiting[1].conversation_id: "assigned"}
    assert await session.scalar(sa.text("SELECT active_count FROM router.agents")) == 1
    assert (
        await session.scalar(
            sa.text("SELECT customer_id FROM router.tasks WHERE conversation_id = :c"),
            {"c": closing[1].conversation_id},
        )
        == target
    )


async def test_metrics_moves_the_facts_and_closes_without_counting_a_resolution(
    session: AsyncSession,
) -> None:
    source, target = uuid.uuid4(), uuid.uuid4()
    closed, moved = uuid.uuid4(), uuid.uuid4()
    now = utcnow()
    await session.execute(
        sa.text(
            "INSERT INTO metrics.conversation_facts (conversation_id, customer_id, opened_at) "
            "VALUES (:a, :s, :now), (:b, :s, :now)"
        ),
        {"a": closed, "b": moved, "s": source, "now": now},
    )
    event = merged(source, target, closed=closed)
    delivery = Delivery(EventEnvelope.wrap(event, producer="test"), event, "conversation.events", 0, 0)
    await metrics_follow(session, [delivery])
    await metrics_follow(session, [delivery])

    facts = (
        await session.execute(
            sa.text(
                "SELECT conversation_id, customer_id, is_open, resolved_at FROM metrics.conversation_facts"
            )
        )
    ).all()
    assert {tuple(f) for f in facts} == {(closed, target, False, None), (moved, target, True, None)}
