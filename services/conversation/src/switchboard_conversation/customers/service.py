"""Fixing what automatic linking could not: an agent links an identity to a customer, or merges two
customers found to be one person into one customer with one ongoing conversation.

A merged customer stays as a tombstone (``merged_into``): its id keeps resolving to the customer it became.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.auth import Principal
from switchboard_common.db.outbox import Outbox
from switchboard_common.errors import Conflict, NotFound
from switchboard_common.events import CustomerMerged, EventEnvelope, IdentityKind, utcnow
from switchboard_conversation.conversations import repository as conversations
from switchboard_conversation.customers import repository
from switchboard_conversation.models import CustomerMerge

PRODUCER = "conversation"


class SameCustomer(ValueError):
    """A customer merged into itself: the request is invalid whatever the state (a 422)."""


@dataclass(frozen=True, slots=True)
class Linked:
    customer_id: uuid.UUID
    kind: IdentityKind
    value: str
    new: bool


async def _visible(session: AsyncSession, principal: Principal, customer_id: uuid.UUID) -> None:
    # Someone else's customer answers 404 like a missing one: ids are not confirmed to outsiders.
    if not await repository.is_readable(session, principal, customer_id):
        raise NotFound("customer not found")


def _merged_away(customer_id: uuid.UUID, merged_into: uuid.UUID) -> Conflict:
    return Conflict(
        f"customer {customer_id} was merged into {merged_into}",
        code="customer_merged",
        details={"customer_id": str(customer_id), "merged_into": str(merged_into)},
    )


async def link_identity(
    session: AsyncSession, principal: Principal, customer_id: uuid.UUID, kind: IdentityKind, value: str
) -> Linked:
    """Attach a (normalized) identity to the customer. Already theirs: nothing changes (``new`` false).
    Owned by another customer: Conflict ``identity_owned_by_other_customer`` naming that customer, so the
    agent can merge the two."""
    await _visible(session, principal, customer_id)
    # Locked like a merge locks it, so the identity cannot land on a customer being merged away.
    customer = (await repository.lock_customers(session, [customer_id]))[customer_id]
    if customer.merged_into is not None:
        raise _merged_away(customer_id, customer.merged_into)
    existing = await repository.owner_of(session, kind.value, value)
    owner = existing or await repository.add_identity(session, customer_id, kind.value, value)
    if owner != customer_id:
        raise Conflict(
            f"{kind.value} {value} belongs to customer {owner}: merge the two customers to join them",
            code="identity_owned_by_other_customer",
            details={"customer_id": str(owner)},
        )
    return Linked(customer_id, kind, value, new=existing is None)


async def merge(
    session: AsyncSession, outbox: Outbox, principal: Principal, target_id: uuid.UUID, source_id: uuid.UUID
) -> tuple[CustomerMerge, bool]:
    """Merge the source customer into the target; returns the audit and whether this call merged (false:
    the same merge was done before, and nothing changed).

    Raises ``SameCustomer`` for a customer merged into itself, NotFound when either is not readable,
    Conflict ``merge_cycle`` when the target was merged into the source, ``customer_merged`` when either
    was merged into a third customer.
    """
    if source_id == target_id:
        raise SameCustomer("a customer cannot be merged into itself")
    await _visible(session, principal, target_id)
    await _visible(session, principal, source_id)
    locked = await repository.lock_customers(session, [source_id, target_id])
    source, target = locked[source_id], locked[target_id]
    if source.merged_into == target_id:
        done = await repository.merge_of(session, source_id)
        assert done is not None  # written in the transaction that made the tombstone
        return done, False
    if target.merged_into == source_id:
        raise Conflict(
            f"customer {target_id} was merged into {source_id}: merging back would make a cycle",
            code="merge_cycle",
            details={"customer_id": str(target_id), "merged_into": str(source_id)},
        )
    for customer in (target, source):
        if customer.merged_into is not None:
            raise _merged_away(customer.id, customer.merged_into)

    now = utcnow()
    unresolved = await conversations.lock_unresolved(session, [source_id, target_id])
    closed = unresolved.get(source_id)
    kept = unresolved.get(target_id)
    if closed is not None and kept is not None:
        await repository.close_into(session, closed.id, kept.id, now)
    else:
        closed = kept = None
    moved, identities = await repository.move_to(session, source_id, target_id)
    audit = await repository.add_merge(
        session,
        CustomerMerge(
            id=uuid.uuid4(),
            source_customer_id=source_id,
            target_customer_id=target_id,
            merged_by_agent_id=principal.agent_id,
            merged_at=now,
            identities=identities,
            conversation_ids=moved,
            closed_conversation_id=closed.id if closed else None,
            kept_conversation_id=kept.id if kept else None,
        ),
    )
    event = CustomerMerged(
        merge_id=audit.id,
        source_customer_id=source_id,
        target_customer_id=target_id,
        conversation_ids=moved,
        closed_conversation_id=audit.closed_conversation_id,
        kept_conversation_id=audit.kept_conversation_id,
        merged_at=now,
    )
    envelope = EventEnvelope.wrap(event, producer=PRODUCER)
    await outbox.add_many(session, [(topics.CONVERSATION_EVENTS, str(target_id), envelope)])
    return audit, True
