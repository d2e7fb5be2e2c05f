"""The acknowledgement batch handler on a real session: one automated outbound message per waiting
conversation, none for one assigned or unreachable, nothing twice for a redelivery, and a fixed number
of statements whatever the batch."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    Channel,
    ConversationAssigned,
    ConversationQueued,
    CustomerIdentity,
    EventEnvelope,
    IdentityKind,
    MessageReceived,
    utcnow,
)
from switchboard_conversation.automation import service as automation
from switchboard_conversation.automation.autoreply import AckTemplates
from switchboard_conversation.conversations import service
from switchboard_conversation.models import outbox_table
from tests.conftest import Settings
from tests.support import counting

TEXTS = AckTemplates(
    "Wait {{ wait_minutes }} min, {{ customer.first_name }}.", "Closed until {{ opens_at }}."
)


@pytest.fixture
def outbox(settings: Settings) -> Outbox:
    return Outbox(outbox_table, settings)


async def _open(
    session: AsyncSession,
    outbox: Outbox,
    sender: str,
    channel: Channel = Channel.API,
    kind: IdentityKind = IdentityKind.API,
) -> uuid.UUID:
    now = utcnow()
    message = MessageReceived(
        message_id=uuid.uuid4(),
        channel=channel,
        external_id=uuid.uuid4().hex,
        sender=CustomerIdentity(kind=kind, value=sender),
        display_name=f"{sender} Smith",
        text="hello",
        sent_at=now,
        received_at=now,
    )
    await service.record_inbound(session, outbox, [(EventEnvelope.wrap(message, producer="test"), message)])
    cid = await session.scalar(
        sa.text("SELECT conversation_id FROM conversation.messages WHERE id = :id"),
        {"id": message.message_id},
    )
    assert isinstance(cid, uuid.UUID)
    return cid


def _queued(cid: uuid.UUID, wait_s: int | None = 120) -> tuple[EventEnvelope, ConversationQueued]:
    payload = ConversationQueued(
        conversation_id=cid,
        required_skills=[],
        priority=0,
        queued_at=utcnow() - timedelta(seconds=1),
        estimated_wait_s=wait_s,
        position=1,
    )
    return EventEnvelope.wrap(payload, producer="router"), payload


async def _automated(session: AsyncSession) -> list[tuple[uuid.UUID, str]]:
    rows = await session.execute(
        sa.text(
            "SELECT conversation_id, body FROM conversation.messages WHERE automated ORDER BY body, conversation_id"
        )
    )
    return [(r[0], r[1]) for r in rows]


async def _outbound_events(session: AsyncSession) -> int:
    count = await session.scalar(
        sa.text("SELECT count(*) FROM conversation.outbox WHERE topic LIKE '%messages.outbound'")
    )
    return int(count or 0)


async def test_one_acknowledgement_per_waiting_conversation_and_none_twice(
    session: AsyncSession, outbox: Outbox
) -> None:
    waiting = await _open(session, outbox, "ann")
    assigned = await _open(session, outbox, "bob")
    unreachable = await _open(session, outbox, "cid", channel=Channel.SMS)  # no phone to text back
    # A caller is never called back to be told they wait.
    caller = await _open(session, outbox, "+14155550100", channel=Channel.VOICE, kind=IdentityKind.PHONE)
    now = utcnow()
    await service.record_assignments(
        session,
        [
            ConversationAssigned(
                conversation_id=assigned, agent_id=uuid.uuid4(), queued_at=now, assigned_at=now
            )
        ],
    )
    event_ = _queued(waiting)
    before = await _outbound_events(session)

    # The same event twice in one batch, then redelivered in a later one.
    await automation.acknowledge(
        session, outbox, [event_, event_, _queued(assigned), _queued(unreachable), _queued(caller)], TEXTS
    )
    await automation.acknowledge(session, outbox, [event_], TEXTS)

    assert await _automated(session) == [(waiting, "Wait 2 min, ann.")]
    assert await _outbound_events(session) == before + 1
    replied = await session.scalar(
        sa.text("SELECT first_replied_at FROM conversation.conversations WHERE id = :id"), {"id": waiting}
    )
    assert replied is None


async def test_acknowledgement_statements_do_not_grow_with_the_batch(
    session: AsyncSession, outbox: Outbox
) -> None:
    async def statements_for(batch_size: int) -> int:
        cids = [await _open(session, outbox, f"s{batch_size}-{i}") for i in range(batch_size)]
        with counting(session) as counter:
            await automation.acknowledge(session, outbox, [_queued(c) for c in cids], TEXTS)
        return counter.count

    one, many = await statements_for(1), await statements_for(40)
    assert one == many == 3  # targets, messages, outbox
    assert len(await _automated(session)) == 41
