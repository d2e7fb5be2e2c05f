"""Linking identities and merging customers, called directly on the real database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from switchboard_common.auth import Principal, Role
from switchboard_common.db.outbox import Outbox
from switchboard_common.errors import Conflict, NotFound
from switchboard_common.events import CustomerMerged, EventEnvelope, IdentityKind
from switchboard_conversation.conversations import service as conversations
from switchboard_conversation.customers import repository, service
from switchboard_conversation.models import outbox_table
from tests.conftest import Settings
from tests.service.test_conversation_inbound import message
from tests.support import eventually

ADMIN = Principal(Role.ADMIN)


async def rows(session: AsyncSession, sql: str, **params: object) -> list[tuple[object, ...]]:
    return [tuple(r) for r in (await session.execute(sa.text(sql), params)).all()]


@pytest.fixture
def outbox(settings: Settings) -> Outbox:
    return Outbox(outbox_table, settings)


async def customer_of(session: AsyncSession, sender: str) -> uuid.UUID:
    owner = await session.scalar(
        sa.text("SELECT customer_id FROM conversation.customer_identities WHERE value = :v"), {"v": sender}
    )
    assert isinstance(owner, uuid.UUID)
    return owner


async def new_customer(
    session: AsyncSession, outbox: Outbox, sender: str, *, name: str | None = None, email: str | None = None
) -> uuid.UUID:
    await conversations.record_inbound(session, outbox, [message(sender, name=name, email=email)])
    return await customer_of(session, sender)


async def conversation_of(session: AsyncSession, customer_id: uuid.UUID) -> uuid.UUID:
    found = await session.scalar(
        sa.text("SELECT id FROM conversation.conversations WHERE customer_id = :c AND status <> 'resolved'"),
        {"c": customer_id},
    )
    assert isinstance(found, uuid.UUID)
    return found


async def merged_events(session: AsyncSession) -> list[tuple[str, CustomerMerged]]:
    out = []
    for key, value in await rows(
        session,
        "SELECT key, value FROM conversation.outbox WHERE headers->>'event_type' = 'customer.merged' ORDER BY id",
    ):
        assert isinstance(value, bytes)
        payload = EventEnvelope.from_bytes(value).parse()
        assert isinstance(payload, CustomerMerged)
        out.append((str(key), payload))
    return out


async def test_merge_moves_identities_conversations_and_messages_and_leaves_a_tombstone(
    session: AsyncSession, outbox: Outbox
) -> None:
    target = await new_customer(session, outbox, "wa-1", name="Ann")
    source = await new_customer(session, outbox, "mail-1", email="ann@example.com")
    # The source's conversation is resolved: no conversation is closed, it simply moves.
    await conversations.resolve(session, outbox, ADMIN, await conversation_of(session, source))
    [source_conversation] = await session.scalars(
        sa.text("SELECT id FROM conversation.conversations WHERE customer_id = :c"), {"c": source}
    )

    audit, new = await service.merge(session, outbox, ADMIN, target, source)

    assert new
    assert await rows(
        session,
        "SELECT kind, value FROM conversation.customer_identities WHERE customer_id = :t ORDER BY 2",
        t=target,
    ) == [("email", "ann@example.com"), ("api", "mail-1"), ("api", "wa-1")]
    assert await rows(
        session, "SELECT count(*) FROM conversation.conversations WHERE customer_id = :s", s=source
    ) == [(0,)]
    assert await rows(
        session,
        "SELECT count(*) FROM conversation.messages m JOIN conversation.conversations c "
        "ON c.id = m.conversation_id WHERE c.customer_id = :t",
        t=target,
    ) == [(2,)]
    assert await rows(session, "SELECT merged_into FROM conversation.customers WHERE id = :s", s=source) == [
        (target,)
    ]
    assert await repository.live_id(session, source) == target
    assert await repository.live_id(session, target) == target
    assert audit.conversation_ids == [source_conversation]
    assert audit.closed_conversation_id is None
    assert {i["value"] for i in audit.identities} == {"mail-1", "ann@example.com"}
    [(key, event)] = await merged_events(session)
    assert key == str(target)
    assert (event.source_customer_id, event.target_customer_id) == (source, target)
    assert event.conversation_ids == [source_conversation]
    assert event.closed_conversation_id is None


async def test_when_both_are_open_one_conversation_remains_with_every_message(
    session: AsyncSession, outbox: Outbox
) -> None:
    target = await new_customer(session, outbox, "wa-2")
    source = await new_customer(session, outbox, "mail-2")
    await conversations.record_inbound(session, outbox, [message("mail-2")])
    kept, closed = await conversation_of(session, target), await conversation_of(session, source)

    audit, _ = await service.merge(session, outbox, ADMIN, target, source)

    assert (audit.closed_conversation_id, audit.kept_conversation_id) == (closed, kept)
    assert await rows(
        session,
        "SELECT id, status FROM conversation.conversations WHERE customer_id = :t AND status <> 'resolved'",
        t=target,
    ) == [(kept, "new")]
    assert await rows(
        session, "SELECT status, merged_into FROM conversation.conversations WHERE id = :c", c=closed
    ) == [("resolved", kept)]
    assert await rows(
        session, "SELECT count(*) FROM conversation.messages WHERE conversation_id = :k", k=kept
    ) == [(3,)]
    [(_, event)] = await merged_events(session)
    assert (event.closed_conversation_id, event.kept_conversation_id) == (closed, kept)

    # The source's next message joins the kept conversation, and the closed one is never reopened.
    await conversations.record_inbound(session, outbox, [message("mail-2")])
    assert await rows(
        session, "SELECT count(*) FROM conversation.messages WHERE conversation_id = :k", k=kept
    ) == [(4,)]
    await conversations.resolve(session, outbox, ADMIN, kept)
    await conversations.record_inbound(session, outbox, [message("mail-2")])
    assert await rows(session, "SELECT status FROM conversation.conversations WHERE id = :c", c=closed) == [
        ("resolved",)
    ]
    assert await conversation_of(session, target) == kept  # reopened, not the merged-away one


async def test_a_repeated_merge_changes_nothing_and_answers_the_audit(
    session: AsyncSession, outbox: Outbox
) -> None:
    target = await new_customer(session, outbox, "wa-3")
    source = await new_customer(session, outbox, "mail-3")
    first, _ = await service.merge(session, outbox, ADMIN, target, source)
    again, new = await service.merge(session, outbox, ADMIN, target, source)
    assert not new
    assert again.id == first.id
    assert len(await merged_events(session)) == 1


async def test_a_customer_merged_into_itself_is_refused(session: AsyncSession, outbox: Outbox) -> None:
    customer = await new_customer(session, outbox, "wa-4")
    with pytest.raises(service.SameCustomer):
        await service.merge(session, outbox, ADMIN, customer, customer)


async def test_merging_back_is_a_cycle_and_is_refused(session: AsyncSession, outbox: Outbox) -> None:
    a = await new_customer(session, outbox, "wa-5")
    b = await new_customer(session, outbox, "mail-5")
    await service.merge(session, outbox, ADMIN, b, a)
    with pytest.raises(Conflict) as refused:
        await service.merge(session, outbox, ADMIN, a, b)
    assert refused.value.code == "merge_cycle"


async def test_a_later_merge_repoints_older_tombstones(session: AsyncSession, outbox: Outbox) -> None:
    a, b, c = [await new_customer(session, outbox, f"chain-{i}") for i in range(3)]
    await service.merge(session, outbox, ADMIN, b, a)
    await service.merge(session, outbox, ADMIN, c, b)
    assert await rows(
        session, "SELECT merged_into FROM conversation.customers WHERE id IN (:a, :b)", a=a, b=b
    ) == [(c,), (c,)]
    assert await repository.live_id(session, a) == c
    with pytest.raises(Conflict) as refused:
        await service.merge(session, outbox, ADMIN, b, a)  # a went on into c: not a repeat any more
    assert refused.value.code == "customer_merged"


async def test_an_agent_acts_only_on_customers_whose_conversations_they_can_read(
    session: AsyncSession, outbox: Outbox
) -> None:
    agent = Principal(Role.AGENT, agent_id=uuid.uuid4())
    mine = await new_customer(session, outbox, "wa-6")
    other = await new_customer(session, outbox, "mail-6")
    await session.execute(
        sa.text("UPDATE conversation.conversations SET assigned_agent_id = :a WHERE customer_id = :c"),
        {"a": agent.agent_id, "c": mine},
    )
    with pytest.raises(NotFound):
        await service.merge(session, outbox, agent, mine, other)
    with pytest.raises(NotFound):
        await service.link_identity(session, agent, other, IdentityKind.EMAIL, "x@example.com")
    with pytest.raises(NotFound):
        await service.merge(session, outbox, agent, uuid.uuid4(), mine)
    assert await rows(
        session, "SELECT count(*) FROM conversation.customers WHERE merged_into IS NOT NULL"
    ) == [(0,)]

    await session.execute(
        sa.text("UPDATE conversation.conversations SET assigned_agent_id = :a WHERE customer_id = :c"),
        {"a": agent.agent_id, "c": other},
    )
    audit, _ = await service.merge(session, outbox, agent, mine, other)
    assert audit.merged_by_agent_id == agent.agent_id
    # The tombstone reads as the customer it became: the agent's repeat finds the merge.
    again, new = await service.merge(session, outbox, agent, mine, other)
    assert (again.id, new) == (audit.id, False)


async def test_linking_an_identity_new_known_and_owned_by_another(
    session: AsyncSession, outbox: Outbox
) -> None:
    customer = await new_customer(session, outbox, "wa-7")
    other = await new_customer(session, outbox, "mail-7", email="taken@example.com")

    linked = await service.link_identity(session, ADMIN, customer, IdentityKind.PHONE, "+14155550100")
    assert linked.new
    again = await service.link_identity(session, ADMIN, customer, IdentityKind.PHONE, "+14155550100")
    assert not again.new
    with pytest.raises(Conflict) as refused:
        await service.link_identity(session, ADMIN, customer, IdentityKind.EMAIL, "taken@example.com")
    assert refused.value.code == "identity_owned_by_other_customer"
    assert refused.value.details == {"customer_id": str(other)}
    assert await customer_of(session, "+14155550100") == customer


async def _committed(settings: Settings, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(sa.text(sql), params)).all()]
    finally:
        await engine.dispose()


async def _waiting_on_a_lock(settings: Settings) -> bool:
    found = await _committed(
        settings,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
    return bool(found[0][0])


async def _customers(settings: Settings, *senders: str) -> list[uuid.UUID]:
    """New customers, committed, one per sender (each with an open conversation)."""
    engine = create_async_engine(settings.database_url)
    outbox = Outbox(outbox_table, settings)
    try:
        async with engine.connect() as conn, AsyncSession(bind=conn) as session, session.begin():
            return [await new_customer(session, outbox, sender) for sender in senders]
    finally:
        await engine.dispose()


async def _race(
    settings: Settings,
    first: Callable[[AsyncSession], Coroutine[Any, Any, None]],
    second: Callable[[AsyncSession], Coroutine[Any, Any, None]],
) -> None:
    """``first`` in one transaction and, while it is uncommitted, ``second`` in another, which must wait on
    a lock until the first commits. The second commits, or rolls back and raises what it raised."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as one, engine.connect() as two:
            a, b = AsyncSession(bind=one), AsyncSession(bind=two)
            await a.begin()
            await b.begin()
            await first(a)
            racing = asyncio.create_task(second(b))
            await eventually(lambda: _waiting_on_a_lock(settings), what="the second to wait on the first")
            await a.commit()
            try:
                await racing
            except BaseException:
                await b.rollback()
                raise
            await b.commit()
            await a.close()
            await b.close()
    finally:
        await engine.dispose()


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch then merge", "merge then batch"])
async def test_a_merge_racing_the_inbound_batch_loses_and_misplaces_no_message(
    settings: Settings, batch_first: bool
) -> None:
    """Two real transactions: an inbound batch for the source and a merge, each started while the other is
    uncommitted. Whichever commits first, the message ends in the target's one unresolved conversation."""
    outbox = Outbox(outbox_table, settings)
    tag = uuid.uuid4().hex[:6]
    target, source = await _customers(settings, f"t-{tag}", f"s-{tag}")

    async def batch(session: AsyncSession) -> None:
        await conversations.record_inbound(session, outbox, [message(f"s-{tag}")])

    async def merge(session: AsyncSession) -> None:
        await service.merge(session, outbox, ADMIN, target, source)

    await (_race(settings, batch, merge) if batch_first else _race(settings, merge, batch))

    assert await _committed(
        settings,
        "SELECT c.customer_id, c.status, count(m.id) FROM conversation.conversations c "
        "JOIN conversation.messages m ON m.conversation_id = c.id "
        "WHERE c.customer_id IN (:s, :t) AND c.status <> 'resolved' GROUP BY 1, 2",
        s=source,
        t=target,
    ) == [(target, "new", 3)]
    assert await _committed(
        settings, "SELECT count(*) FROM conversation.conversations WHERE customer_id = :s", s=source
    ) == [(0,)]


async def test_linking_to_a_merged_customer_names_the_customer_it_became(
    session: AsyncSession, outbox: Outbox
) -> None:
    target = await new_customer(session, outbox, "wa-8")
    source = await new_customer(session, outbox, "mail-8")
    await service.merge(session, outbox, ADMIN, target, source)
    with pytest.raises(Conflict) as refused:
        await service.link_identity(session, ADMIN, source, IdentityKind.EMAIL, "late@example.com")
    assert refused.value.code == "customer_merged"
    assert refused.value.details == {"customer_id": str(source), "merged_into": str(target)}


async def test_two_opposite_merges_at_once_do_not_deadlock_and_one_is_a_cycle(settings: Settings) -> None:
    """A into B and B into A in two transactions at once: the second waits for the first (both lock the
    two customers in the same order), then finds the cycle."""
    outbox = Outbox(outbox_table, settings)
    tag = uuid.uuid4().hex[:6]
    first, second = await _customers(settings, f"a-{tag}", f"b-{tag}")

    async def into_first(session: AsyncSession) -> None:
        await service.merge(session, outbox, ADMIN, first, second)

    async def into_second(session: AsyncSession) -> None:
        await service.merge(session, outbox, ADMIN, second, first)

    with pytest.raises(Conflict) as refused:
        await _race(settings, into_first, into_second)
    assert refused.value.code == "merge_cycle"
    assert await _committed(
        settings, "SELECT merged_into FROM conversation.customers WHERE id = :s", s=second
    ) == [(first,)]
