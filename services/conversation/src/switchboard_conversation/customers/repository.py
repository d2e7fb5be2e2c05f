"""All SQL of customer linking and merging.

Merges are rare agent actions, not a hot path: each step is its own plain statement, in an order chosen for
the locks (customers, in id order, then their unresolved conversations), which is the order the inbound
batch takes them in too (``conversations.repository.known``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from switchboard_common.auth import Principal
from switchboard_conversation.conversations.repository import readable
from switchboard_conversation.models import (
    Conversation,
    ConversationStatus,
    Customer,
    CustomerIdentity,
    CustomerMerge,
    Message,
)
from switchboard_conversation.surveys import repository as surveys


async def is_readable(session: AsyncSession, principal: Principal, customer_id: uuid.UUID) -> bool:
    """Whether ``principal`` may act on the customer: the admin credential on any existing one, an agent
    on one with a conversation they can read. A tombstone is readable as the customer it was merged into,
    so a merge repeated by the agent who made it still finds both."""
    if principal.is_admin:
        return await session.get(Customer, customer_id) is not None
    visible = (
        readable(principal)
        .where(
            sa.or_(Conversation.customer_id == Customer.id, Conversation.customer_id == Customer.merged_into)
        )
        .exists()
    )
    return bool(
        await session.scalar(sa.select(visible).select_from(Customer).where(Customer.id == customer_id))
    )


async def live_id(session: AsyncSession, customer_id: uuid.UUID) -> uuid.UUID | None:
    """The customer an id stands for now: itself, or for a tombstone the customer it was merged into
    (always one hop: a merge repoints the tombstones of its source). None when there is no such id."""
    found: uuid.UUID | None = await session.scalar(
        sa.select(sa.func.coalesce(Customer.merged_into, Customer.id)).where(Customer.id == customer_id)
    )
    return found


async def lock_customers(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Customer]:
    """Lock the customers ``FOR UPDATE`` in id order (two opposite merges cannot deadlock), which waits for
    any inbound batch holding one (``FOR KEY SHARE``) and makes later batches wait for this transaction.
    Returns their current rows."""
    stmt = (
        sa.select(Customer)
        .where(Customer.id.in_(ids))
        .order_by(Customer.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {c.id: c for c in (await session.scalars(stmt)).all()}


async def owner_of(session: AsyncSession, kind: str, value: str) -> uuid.UUID | None:
    return await session.scalar(
        sa.select(CustomerIdentity.customer_id).where(
            CustomerIdentity.kind == kind, CustomerIdentity.value == value
        )
    )


async def add_identity(session: AsyncSession, customer_id: uuid.UUID, kind: str, value: str) -> uuid.UUID:
    """Attach the identity to the customer unless someone owns it; returns its owner either way (a
    concurrent insert is waited for by the unique key, then found)."""
    inserted: uuid.UUID | None = await session.scalar(
        insert(CustomerIdentity)
        .values(kind=kind, value=value, customer_id=customer_id)
        .on_conflict_do_nothing()
        .returning(CustomerIdentity.customer_id)
    )
    if inserted is not None:
        return inserted
    owner = await owner_of(session, kind, value)
    assert owner is not None  # the conflict was on this key, and identities are never deleted
    return owner


async def merge_of(session: AsyncSession, source_id: uuid.UUID) -> CustomerMerge | None:
    return await session.scalar(sa.select(CustomerMerge).where(CustomerMerge.source_customer_id == source_id))


async def close_into(session: AsyncSession, closed_id: uuid.UUID, kept_id: uuid.UUID, at: datetime) -> None:
    """Move a conversation's thread into another and close it, marked as merged into that one.

    Replies' idempotency keys are unique per conversation: a moved reply whose key the kept conversation
    already uses loses it (a retry of that old request meets a resolved conversation anyway)."""
    kept_keys = aliased(Message)
    taken = (
        sa.select(kept_keys.id)
        .where(kept_keys.conversation_id == kept_id, kept_keys.idempotency_key == Message.idempotency_key)
        .exists()
    )
    await session.execute(
        sa.update(Message)
        .where(Message.conversation_id == closed_id)
        .values(
            conversation_id=kept_id,
            idempotency_key=sa.case((taken, sa.null()), else_=Message.idempotency_key),
        )
    )
    closed = aliased(Conversation)
    closed_last = sa.select(closed.last_message_at).where(closed.id == closed_id).scalar_subquery()
    closed_channel = sa.select(closed.last_channel).where(closed.id == closed_id).scalar_subquery()
    await session.execute(
        sa.update(Conversation)
        .where(Conversation.id == kept_id)
        .values(
            last_message_at=sa.func.greatest(Conversation.last_message_at, closed_last),
            last_channel=sa.case(
                (closed_last > Conversation.last_message_at, closed_channel), else_=Conversation.last_channel
            ),
        )
    )
    # Closed before the source's conversations change customer: the target may keep one unresolved only.
    await session.execute(
        sa.update(Conversation)
        .where(Conversation.id == closed_id)
        .values(status=ConversationStatus.RESOLVED.value, resolved_at=at, merged_into=kept_id)
    )


async def move_to(
    session: AsyncSession, source_id: uuid.UUID, target_id: uuid.UUID
) -> tuple[list[uuid.UUID], list[dict[str, str]]]:
    """Give the target every conversation and identity of the source, and make the source (and the
    customers merged into it before, so a tombstone is always one hop from a live customer) point at the
    target. Returns the conversation ids and the identities moved."""
    conversations = await session.scalars(
        sa.update(Conversation)
        .where(Conversation.customer_id == source_id)
        .values(customer_id=target_id)
        .returning(Conversation.id)
    )
    moved = sorted(conversations.all())
    identities = await session.execute(
        sa.update(CustomerIdentity)
        .where(CustomerIdentity.customer_id == source_id)
        .values(customer_id=target_id)
        .returning(CustomerIdentity.kind, CustomerIdentity.value)
    )
    moved_identities = sorted(
        ({"kind": k, "value": v} for k, v in identities), key=lambda i: (i["kind"], i["value"])
    )
    await surveys.hand_over(session, source_id, target_id)
    source = aliased(Customer)
    await session.execute(
        sa.update(Customer)
        .where(Customer.id == target_id, Customer.display_name.is_(None))
        .values(display_name=sa.select(source.display_name).where(source.id == source_id).scalar_subquery())
    )
    await session.execute(
        sa.update(Customer)
        .where(sa.or_(Customer.id == source_id, Customer.merged_into == source_id))
        .values(merged_into=target_id)
    )
    return moved, moved_identities


async def add_merge(session: AsyncSession, merge: CustomerMerge) -> CustomerMerge:
    session.add(merge)
    await session.flush()
    return merge
