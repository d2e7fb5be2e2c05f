"""All SQL of the conversation service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.events import CustomerIdentity as IdentityRef
from switchboard_conversation.models import (
    Conversation,
    ConversationStatus,
    Customer,
    CustomerIdentity,
    Message,
)


async def message_exists(session: AsyncSession, message_id: uuid.UUID) -> bool:
    return (await session.scalar(select(Message.id).where(Message.id == message_id))) is not None


async def customers_by_identity(
    session: AsyncSession, refs: Sequence[IdentityRef]
) -> dict[tuple[str, str], uuid.UUID]:
    keys = [(r.kind, r.value) for r in refs]
    rows = await session.execute(
        select(CustomerIdentity.kind, CustomerIdentity.value, CustomerIdentity.customer_id).where(
            tuple_(CustomerIdentity.kind, CustomerIdentity.value).in_(keys)
        )
    )
    return {(kind, value): customer_id for kind, value, customer_id in rows}


async def create_customer(session: AsyncSession, display_name: str | None) -> uuid.UUID:
    customer = Customer(id=uuid.uuid4(), display_name=display_name)
    session.add(customer)
    await session.flush()
    return customer.id


async def add_identities(
    session: AsyncSession, customer_id: uuid.UUID, refs: Sequence[IdentityRef], *, tolerate_taken: bool
) -> None:
    """Attach identities to a customer. With ``tolerate_taken`` an identity another customer already owns
    is left alone; without it that is an IntegrityError (a concurrent creation: the caller retries)."""
    if not refs:
        return
    stmt = insert(CustomerIdentity).values(
        [{"kind": r.kind, "value": r.value, "customer_id": customer_id} for r in refs]
    )
    if tolerate_taken:
        stmt = stmt.on_conflict_do_nothing()
    await session.execute(stmt)


async def set_display_name_if_missing(session: AsyncSession, customer_id: uuid.UUID, name: str) -> None:
    await session.execute(
        update(Customer)
        .where(Customer.id == customer_id, Customer.display_name.is_(None))
        .values(display_name=name)
    )


async def unresolved_for_customer(session: AsyncSession, customer_id: uuid.UUID) -> Conversation | None:
    stmt = (
        select(Conversation)
        .where(
            Conversation.customer_id == customer_id, Conversation.status != ConversationStatus.RESOLVED.value
        )
        .with_for_update()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def add_conversation(session: AsyncSession, conversation: Conversation) -> None:
    session.add(conversation)
    await session.flush()


async def insert_message(session: AsyncSession, message: Message) -> bool:
    """Insert unless the channel's message id is already stored; returns whether it was inserted."""
    stmt = (
        insert(Message)
        .values(
            id=message.id,
            conversation_id=message.conversation_id,
            channel=message.channel,
            external_id=message.external_id,
            direction=message.direction,
            body=message.body,
            sent_at=message.sent_at,
            received_at=message.received_at,
        )
        .on_conflict_do_nothing()
        .returning(Message.id)
    )
    return (await session.scalar(stmt)) is not None


async def get(
    session: AsyncSession, conversation_id: uuid.UUID, *, for_update: bool = False
) -> Conversation | None:
    stmt = select(Conversation).where(Conversation.id == conversation_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def mark_assigned(
    session: AsyncSession, conversation_id: uuid.UUID, agent_id: uuid.UUID, at: datetime
) -> None:
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.status != ConversationStatus.RESOLVED.value)
        .values(status=ConversationStatus.ASSIGNED.value, assigned_agent_id=agent_id, assigned_at=at)
    )


async def list_conversations(
    session: AsyncSession,
    *,
    agent_id: uuid.UUID | None,
    status: ConversationStatus | None,
    limit: int,
    before: datetime | None,
) -> Sequence[Conversation]:
    stmt = select(Conversation).order_by(Conversation.last_message_at.desc(), Conversation.id).limit(limit)
    if agent_id is not None:
        stmt = stmt.where(Conversation.assigned_agent_id == agent_id)
    if status is not None:
        stmt = stmt.where(Conversation.status == status.value)
    if before is not None:
        stmt = stmt.where(Conversation.last_message_at < before)
    return (await session.execute(stmt)).scalars().all()


async def get_customer(session: AsyncSession, customer_id: uuid.UUID) -> Customer | None:
    return await session.get(Customer, customer_id)


async def identities_of(session: AsyncSession, customer_id: uuid.UUID) -> Sequence[CustomerIdentity]:
    stmt = (
        select(CustomerIdentity)
        .where(CustomerIdentity.customer_id == customer_id)
        .order_by(CustomerIdentity.kind, CustomerIdentity.value)
    )
    return (await session.execute(stmt)).scalars().all()


async def messages_of(session: AsyncSession, conversation_id: uuid.UUID, limit: int) -> Sequence[Message]:
    """The latest ``limit`` messages, oldest first."""
    latest = (
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.sent_at.desc(), Message.created_at.desc())
        .limit(limit)
    )
    return list(reversed((await session.execute(latest)).scalars().all()))
