"""The conversation domain's rules, called directly on the real database in a rolled-back transaction."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from switchboard_common.db.outbox import Outbox
from switchboard_common.errors import Unavailable
from switchboard_common.events import (
    Channel,
    CustomerIdentity,
    EventEnvelope,
    IdentityKind,
    MessageReceived,
    utcnow,
)
from switchboard_conversation.conversations import service
from switchboard_conversation.models import outbox_table
from tests.conftest import Settings
from tests.support import eventually


def message(
    sender: str,
    *,
    email: str | None = None,
    name: str | None = None,
    channel: Channel = Channel.API,
    kind: IdentityKind = IdentityKind.API,
) -> Received:
    external_id = uuid.uuid4().hex
    now = utcnow()
    event = MessageReceived(
        message_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{channel}:{external_id}"),
        channel=channel,
        external_id=external_id,
        sender=CustomerIdentity(kind=kind, value=sender),
        identities=[CustomerIdentity(kind=IdentityKind.EMAIL, value=email)] if email else [],
        display_name=name,
        text=f"hello from {sender}",
        sent_at=now,
        received_at=now,
    )
    return EventEnvelope.wrap(event, producer="test"), event


Received = tuple[EventEnvelope, MessageReceived]


async def rows(session: AsyncSession, sql: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in (await session.execute(sa.text(sql))).all()]


@pytest.fixture
def outbox(settings: Settings) -> Outbox:
    return Outbox(outbox_table, settings)


async def test_two_first_messages_of_a_new_sender_in_one_batch_make_one_customer_and_one_thread(
    session: AsyncSession, outbox: Outbox
) -> None:
    await service.record_inbound(session, outbox, [message("c-1", name="Ann"), message("c-1")])
    assert await rows(session, "SELECT display_name FROM conversation.customers") == [("Ann",)]
    [(conversation_id, count)] = await rows(
        session, "SELECT conversation_id, count(*) FROM conversation.messages GROUP BY conversation_id"
    )
    assert count == 2
    events = await rows(session, "SELECT headers->>'event_type', key FROM conversation.outbox ORDER BY id")
    assert events == [
        ("conversation.opened", str(conversation_id)),
        ("conversation.message_added", str(conversation_id)),
        ("conversation.message_added", str(conversation_id)),
    ]


async def test_a_linked_email_joins_the_customer_across_channels(
    session: AsyncSession, outbox: Outbox
) -> None:
    await service.record_inbound(session, outbox, [message("c-1", email="bob@example.com")])
    email = message("bob@example.com", channel=Channel.EMAIL, kind=IdentityKind.EMAIL)
    await service.record_inbound(session, outbox, [email])
    assert await rows(session, "SELECT count(*) FROM conversation.customers") == [(1,)]
    assert await rows(session, "SELECT count(DISTINCT conversation_id) FROM conversation.messages") == [(1,)]
    assert await rows(
        session, "SELECT first_channel, last_channel, status FROM conversation.conversations"
    ) == [("api", "email", "open")]


async def test_sender_identity_wins_over_a_linked_email(session: AsyncSession, outbox: Outbox) -> None:
    await service.record_inbound(session, outbox, [message("c-1", email="shared@example.com")])
    await service.record_inbound(session, outbox, [message("c-2")])
    # c-2 now claims the email c-1 owns: c-2 stays c-2, and the email is not moved.
    await service.record_inbound(session, outbox, [message("c-2", email="shared@example.com")])
    owners = await rows(
        session,
        "SELECT i.value, count(DISTINCT m.conversation_id) FROM conversation.customer_identities i "
        "JOIN conversation.conversations c ON c.customer_id = i.customer_id "
        "JOIN conversation.messages m ON m.conversation_id = c.id "
        "WHERE i.kind = 'api' GROUP BY i.value ORDER BY i.value",
    )
    assert owners == [("c-1", 1), ("c-2", 1)]
    assert await rows(
        session,
        "SELECT i2.value FROM conversation.customer_identities i1 JOIN conversation.customer_identities i2 "
        "ON i1.customer_id = i2.customer_id WHERE i1.value = 'shared@example.com' AND i2.kind = 'api'",
    ) == [("c-1",)]


async def test_a_redelivered_batch_changes_nothing(session: AsyncSession, outbox: Outbox) -> None:
    batch = [message("c-1"), message("c-2"), message("c-1")]
    await service.record_inbound(session, outbox, batch)
    before = await rows(session, "SELECT count(*) FROM conversation.outbox")
    await service.record_inbound(session, outbox, batch)
    await service.record_inbound(session, outbox, [batch[1], batch[1]])
    assert await rows(session, "SELECT count(*) FROM conversation.outbox") == before
    assert await rows(session, "SELECT count(*) FROM conversation.messages") == [(3,)]


async def test_after_resolution_the_customer_gets_a_new_conversation(
    session: AsyncSession, outbox: Outbox
) -> None:
    await service.record_inbound(session, outbox, [message("c-1")])
    await session.execute(sa.text("UPDATE conversation.conversations SET status = 'resolved'"))
    await service.record_inbound(session, outbox, [message("c-1")])
    assert await rows(
        session, "SELECT status, count(*) FROM conversation.conversations GROUP BY status ORDER BY status"
    ) == [("open", 1), ("resolved", 1)]


async def test_latest_activity_is_the_newest_message(session: AsyncSession, outbox: Outbox) -> None:
    late, early = message("c-1", channel=Channel.SMS), message("c-1", channel=Channel.WEBCHAT)
    early_event = early[1].model_copy(update={"received_at": late[1].received_at - timedelta(minutes=5)})
    await service.record_inbound(session, outbox, [late, (early[0], early_event)])
    assert await rows(
        session, "SELECT last_channel, last_message_at = opened_at FROM conversation.conversations"
    ) == [("sms", True)]


async def test_statements_do_not_grow_with_the_batch(session: AsyncSession, outbox: Outbox) -> None:
    async def statements_for(batch_size: int) -> int:
        count = 0

        def before_execute(*_: object) -> None:
            nonlocal count
            count += 1

        engine = session.bind.engine.sync_engine  # type: ignore[union-attr]
        event.listen(engine, "before_cursor_execute", before_execute)
        try:
            batch = [
                message(f"s{batch_size}-{i}", email=f"s{batch_size}-{i}@example.com")
                for i in range(batch_size)
            ]
            await service.record_inbound(session, outbox, batch)
        finally:
            event.remove(engine, "before_cursor_execute", before_execute)
        return count

    one, many = await statements_for(1), await statements_for(200)
    assert one == many
    assert many == 5  # known, customers+identities, conversations, messages+activity, outbox


async def _race(settings: Settings, first: list[Received], second: list[Received]) -> bool:
    """Two replicas' transactions store ``first`` and ``second`` at the same time: the second starts while
    the first is uncommitted. Returns whether the second was told to retry (it then retries, as the
    consumer does, after the first committed)."""
    engine = create_async_engine(settings.database_url)
    outbox = Outbox(outbox_table, settings)
    retried = False
    try:
        async with engine.connect() as one, engine.connect() as two:
            a, b = AsyncSession(bind=one), AsyncSession(bind=two)
            await a.begin()
            await service.record_inbound(a, outbox, first)
            if not second:
                await a.commit()
                return False
            await b.begin()
            racing = asyncio.create_task(service.record_inbound(b, outbox, second))
            await eventually(lambda: _blocked_on_a_lock(engine), what="the second to wait on the first")
            await a.commit()
            try:
                await racing
            except Unavailable:
                retried = True
                await b.rollback()
                await b.begin()
                await service.record_inbound(b, outbox, second)
            await b.commit()
            await a.close()
            await b.close()
    finally:
        await engine.dispose()
    return retried


async def _thread_counts(settings: Settings, identity_value: str) -> tuple[int, int, int]:
    """(customers, conversations, messages) reachable from the identity ``identity_value``."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.text(
                        "SELECT count(DISTINCT i.customer_id), count(DISTINCT c.id), count(DISTINCT m.id) "
                        "FROM conversation.customer_identities i "
                        "LEFT JOIN conversation.conversations c ON c.customer_id = i.customer_id "
                        "LEFT JOIN conversation.messages m ON m.conversation_id = c.id WHERE i.value = :v"
                    ),
                    {"v": identity_value},
                )
            ).one()
            empty = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM conversation.conversations c WHERE NOT EXISTS "
                    "(SELECT 1 FROM conversation.messages m WHERE m.conversation_id = c.id)"
                )
            )
    finally:
        await engine.dispose()
    assert empty == 0, "a conversation without any message was left behind"
    return row[0], row[1], row[2]


async def test_racing_batches_keep_one_unresolved_conversation_per_customer(settings: Settings) -> None:
    """Two replicas' transactions take the same new sender at once: the second is told to retry, and its
    retry joins the first one's customer and conversation."""
    sender = f"race-{uuid.uuid4().hex[:6]}"
    assert await _race(settings, [message(sender)], [message(sender)])
    assert await _thread_counts(settings, sender) == (1, 1, 2)


async def test_two_new_senders_with_one_email_racing_on_two_replicas_become_one_customer(
    settings: Settings,
) -> None:
    """Different sender ids carrying the same email (normalized by ingest, so equal here), first seen at
    the same moment by two replicas: one customer with one conversation, not two."""
    email = f"race-{uuid.uuid4().hex[:6]}@example.com"
    first = message(f"web-{uuid.uuid4().hex[:6]}", email=email)
    second = message(f"app-{uuid.uuid4().hex[:6]}", email=email)
    assert await _race(settings, [first], [second])
    assert await _thread_counts(settings, email) == (1, 1, 2)


@pytest.mark.parametrize("known_customer", [False, True], ids=["new customer", "known customer"])
async def test_one_record_processed_by_two_replicas_at_once_is_stored_once(
    settings: Settings, known_customer: bool
) -> None:
    """A rebalance can hand a record to a new owner while the old one is still storing it: the record is
    stored once, and no conversation is left without messages (which would break the customer's later
    messages)."""
    sender = f"rebalance-{uuid.uuid4().hex[:6]}"
    if known_customer:
        await _race(settings, [message(sender)], [])
    record = message(sender)
    await _race(settings, [record], [record])
    stored = 2 if known_customer else 1
    assert await _thread_counts(settings, sender) == (1, 1, stored)
    # The customer's next message still lands in the same thread.
    await _race(settings, [message(sender)], [])
    assert await _thread_counts(settings, sender) == (1, 1, stored + 1)


async def _blocked_on_a_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        waiting = await conn.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        )
    return bool(waiting)
