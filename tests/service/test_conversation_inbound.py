"""The conversation domain's rules, called directly on the real database in a rolled-back transaction."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from switchboard_common.auth import Principal, Role
from switchboard_common.db.outbox import Outbox
from switchboard_common.errors import Unavailable
from switchboard_common.events import (
    OPENING_TEXT_MAX,
    Channel,
    ConversationAssigned,
    ConversationOpened,
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
    at: datetime | None = None,
) -> Received:
    external_id = uuid.uuid4().hex
    now = at or utcnow()
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


async def test_the_opening_event_carries_what_routing_rules_read(
    session: AsyncSession, outbox: Outbox
) -> None:
    envelope, event = message("c-1")
    event = event.model_copy(update={"text": "x" * 5000, "customer_attributes": {"plan": "enterprise"}})
    await service.record_inbound(session, outbox, [(envelope, event)])
    [(value,)] = await rows(
        session, "SELECT value FROM conversation.outbox WHERE headers->>'event_type' = 'conversation.opened'"
    )
    assert isinstance(value, bytes)
    opened = EventEnvelope.from_bytes(value).parse()
    assert isinstance(opened, ConversationOpened)
    assert opened.text == "x" * OPENING_TEXT_MAX  # the first message, cut to a bounded size
    assert opened.customer_attributes == {"plan": "enterprise"}


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
    ) == [("api", "email", "new")]


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
    await service.record_inbound(session, outbox, [message("c-1")], reopen_window=timedelta(0))
    assert await rows(
        session, "SELECT status, count(*) FROM conversation.conversations GROUP BY status ORDER BY status"
    ) == [("new", 1), ("resolved", 1)]


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
    # known, customers+identities, reopen+conversations, messages+activity, outbox
    assert many == 5


async def test_reopening_statements_do_not_grow_with_the_batch(session: AsyncSession, outbox: Outbox) -> None:
    """Returning customers whose conversations are resolved: reopening adds no statement."""
    admin = Principal(Role.ADMIN)
    earlier = utcnow() - timedelta(hours=1)

    async def statements_for(batch_size: int) -> int:
        senders = [f"r{batch_size}-{i}" for i in range(batch_size)]
        await service.record_inbound(session, outbox, [message(s, at=earlier) for s in senders])
        for cid in await session.scalars(
            sa.text("SELECT id FROM conversation.conversations WHERE status = 'new'")
        ):
            await service.resolve(session, outbox, admin, cid)
        count = 0

        def before_execute(*_: object) -> None:
            nonlocal count
            count += 1

        engine = session.bind.engine.sync_engine  # type: ignore[union-attr]
        event.listen(engine, "before_cursor_execute", before_execute)
        try:
            await service.record_inbound(session, outbox, [message(s) for s in senders])
        finally:
            event.remove(engine, "before_cursor_execute", before_execute)
        reopened = await session.scalar(
            sa.text("SELECT count(*) FROM conversation.conversations WHERE status = 'reopened'")
        )
        assert reopened == batch_size
        await session.execute(sa.text("UPDATE conversation.conversations SET status = 'resolved'"))
        return count

    one, many = await statements_for(1), await statements_for(200)
    assert one == many
    assert many == 4  # known, reopen+conversations, messages+activity, outbox (no new customer)


async def _race(
    settings: Settings,
    first: list[Received],
    second: list[Received],
    reopen_window: timedelta = service.DEFAULT_REOPEN_WINDOW,
) -> bool:
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
            await service.record_inbound(a, outbox, first, reopen_window)
            if not second:
                await a.commit()
                return False
            await b.begin()
            racing = asyncio.create_task(service.record_inbound(b, outbox, second, reopen_window))
            await eventually(lambda: _blocked_on_a_lock(engine), what="the second to wait on the first")
            await a.commit()
            try:
                await racing
            except Unavailable:
                retried = True
                await b.rollback()
                await b.begin()
                await service.record_inbound(b, outbox, second, reopen_window)
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


# --- reopening --------------------------------------------------------------------------------------------

ADMIN = Principal(Role.ADMIN)
HOUR = timedelta(hours=1)


async def _conversation_of(session: AsyncSession, sender: str) -> uuid.UUID:
    cid = await session.scalar(
        sa.text(
            "SELECT c.id FROM conversation.conversations c JOIN conversation.customer_identities i "
            "ON i.customer_id = c.customer_id WHERE i.value = :v ORDER BY c.opened_at DESC LIMIT 1"
        ),
        {"v": sender},
    )
    assert isinstance(cid, uuid.UUID)
    return cid


async def _served_and_resolved(
    session: AsyncSession, outbox: Outbox, sender: str, opened: datetime, resolved: datetime
) -> tuple[uuid.UUID, uuid.UUID]:
    """A conversation of ``sender`` opened at ``opened``, assigned to an agent, resolved at ``resolved``;
    returns (conversation id, agent id)."""
    await service.record_inbound(session, outbox, [message(sender, at=opened)])
    cid, agent = await _conversation_of(session, sender), uuid.uuid4()
    assignment = ConversationAssigned(
        conversation_id=cid, agent_id=agent, queued_at=opened, assigned_at=opened
    )
    await service.record_assignments(session, [assignment])
    await service.resolve(session, outbox, ADMIN, cid, at=resolved)
    return cid, agent


async def _events(session: AsyncSession) -> list[tuple[str, str, dict[str, object]]]:
    """(type, key, payload) of every event in the outbox, in order."""
    found = await session.execute(
        sa.text("SELECT headers->>'event_type', key, value FROM conversation.outbox ORDER BY id")
    )
    return [(t, k, json.loads(v)["payload"]) for t, k, v in found]


async def test_a_customer_writing_within_the_window_reopens_their_conversation(
    session: AsyncSession, outbox: Outbox
) -> None:
    now = utcnow()
    cid, agent = await _served_and_resolved(session, outbox, "c-1", now - 3 * HOUR, now - 2 * HOUR)
    again = message("c-1", channel=Channel.WEBCHAT, kind=IdentityKind.API, at=now)
    before = len(await _events(session))

    await service.record_inbound(session, outbox, [again])

    assert await rows(
        session,
        "SELECT id, status, resolved_at, assigned_agent_id, assigned_at, reopened_at, reopen_count "
        "FROM conversation.conversations",
    ) == [(cid, "reopened", None, None, None, now, 1)]
    assert await rows(session, "SELECT conversation_id, count(*) FROM conversation.messages GROUP BY 1") == [
        (cid, 2)
    ]
    new = (await _events(session))[before:]
    assert [(t, k) for t, k, _ in new] == [
        ("conversation.reopened", str(cid)),
        ("conversation.message_added", str(cid)),
    ]
    reopened = new[0][2]
    assert reopened["channel"] == "webchat"
    assert reopened["previous_agent_id"] == str(agent)
    assert datetime.fromisoformat(str(reopened["reopened_at"])) == now


async def test_after_the_window_a_new_conversation_starts(session: AsyncSession, outbox: Outbox) -> None:
    now = utcnow()
    window = timedelta(minutes=30)
    second = timedelta(seconds=1)
    late, _ = await _served_and_resolved(session, outbox, "late", now - HOUR, now - window - second)
    in_time, _ = await _served_and_resolved(session, outbox, "in-time", now - HOUR, now - window + second)
    before = len(await _events(session))

    batch = [message("late", at=now), message("in-time", at=now)]
    await service.record_inbound(session, outbox, batch, reopen_window=window)

    new = await _conversation_of(session, "late")
    assert new not in (late, in_time)
    assert set(await rows(session, "SELECT id, status, reopen_count FROM conversation.conversations")) == {
        (late, "resolved", 0),
        (new, "new", 0),
        (in_time, "reopened", 1),
    }
    assert {(t, k) for t, k, _ in (await _events(session))[before:]} == {
        ("conversation.opened", str(new)),
        ("conversation.message_added", str(new)),
        ("conversation.reopened", str(in_time)),
        ("conversation.message_added", str(in_time)),
    }


async def test_a_zero_window_never_reopens(session: AsyncSession, outbox: Outbox) -> None:
    now = utcnow()
    resolved = now - timedelta(seconds=1)
    off, _ = await _served_and_resolved(session, outbox, "off", now - HOUR, resolved)
    on, _ = await _served_and_resolved(session, outbox, "on", now - HOUR, resolved)

    await service.record_inbound(session, outbox, [message("off", at=now)], reopen_window=timedelta(0))
    await service.record_inbound(session, outbox, [message("on", at=now)], reopen_window=HOUR)

    new = await _conversation_of(session, "off")
    assert new != off
    assert set(await rows(session, "SELECT id, status FROM conversation.conversations")) == {
        (off, "resolved"),
        (new, "new"),
        (on, "reopened"),
    }


async def test_the_latest_resolved_conversation_is_the_one_reopened(
    session: AsyncSession, outbox: Outbox
) -> None:
    now = utcnow()
    first, _ = await _served_and_resolved(session, outbox, "c-1", now - 5 * HOUR, now - 4 * HOUR)
    await service.record_inbound(
        session, outbox, [message("c-1", at=now - 3 * HOUR)], reopen_window=timedelta(0)
    )
    second = await _conversation_of(session, "c-1")
    await service.resolve(session, outbox, ADMIN, second, at=now - 2 * HOUR)

    await service.record_inbound(session, outbox, [message("c-1", at=now)])

    assert await rows(session, "SELECT id, status FROM conversation.conversations ORDER BY opened_at") == [
        (first, "resolved"),
        (second, "reopened"),
    ]


async def test_a_message_received_before_the_resolution_reopens_after_it(
    session: AsyncSession, outbox: Outbox
) -> None:
    """The customer wrote just before the agent resolved, and the message is stored just after: the
    conversation reopens, at a time after the resolution it follows (the router orders the two by it)."""
    now = utcnow()
    cid, _ = await _served_and_resolved(session, outbox, "c-1", now - HOUR, now)
    await service.record_inbound(session, outbox, [message("c-1", at=now - timedelta(seconds=5))])
    assert await rows(session, "SELECT status, reopened_at FROM conversation.conversations") == [
        ("reopened", now + timedelta(microseconds=1))
    ]
    # Resolving it again lands after the reopen, even with a clock behind.
    resolved = await service.resolve(session, outbox, ADMIN, cid, at=now - HOUR)
    assert resolved.resolved_at == now + timedelta(microseconds=2)


async def test_a_redelivered_message_reopens_nothing(session: AsyncSession, outbox: Outbox) -> None:
    now = utcnow()
    cid, _ = await _served_and_resolved(session, outbox, "c-1", now - 2 * HOUR, now - HOUR)
    again = message("c-1", at=now)
    await service.record_inbound(session, outbox, [again])
    await service.resolve(session, outbox, ADMIN, cid, at=now + timedelta(seconds=1))
    before = await _events(session)

    await service.record_inbound(session, outbox, [again, again])

    assert await rows(session, "SELECT status, reopen_count FROM conversation.conversations") == [
        ("resolved", 1)
    ]
    assert await _events(session) == before


async def test_two_messages_of_a_returning_customer_in_one_batch_reopen_once(
    session: AsyncSession, outbox: Outbox
) -> None:
    now = utcnow()
    cid, _ = await _served_and_resolved(session, outbox, "c-1", now - 2 * HOUR, now - HOUR)
    before = len(await _events(session))
    await service.record_inbound(
        session,
        outbox,
        [message("c-1", at=now), message("c-1", channel=Channel.SMS, at=now + timedelta(seconds=1))],
    )
    assert await rows(
        session, "SELECT id, status, reopen_count, reopened_at FROM conversation.conversations"
    ) == [(cid, "reopened", 1, now)]
    assert [(t, k) for t, k, _ in (await _events(session))[before:]] == [
        ("conversation.reopened", str(cid)),
        ("conversation.message_added", str(cid)),
        ("conversation.message_added", str(cid)),
    ]


async def test_a_reopened_conversation_takes_its_new_assignment_not_a_replayed_old_one(
    session: AsyncSession, outbox: Outbox
) -> None:
    now = utcnow()
    opened = now - 2 * HOUR
    cid, old_agent = await _served_and_resolved(session, outbox, "c-1", opened, now - HOUR)
    await service.record_inbound(session, outbox, [message("c-1", at=now)])
    new_agent = uuid.uuid4()
    assigned_at = now + timedelta(seconds=1)

    await service.record_assignments(
        session,
        [
            ConversationAssigned(
                conversation_id=cid, agent_id=new_agent, queued_at=now, assigned_at=assigned_at
            )
        ],
    )
    # The assignment from before the reopen, redelivered: queued before the reopen, so it changes nothing.
    await service.record_assignments(
        session,
        [ConversationAssigned(conversation_id=cid, agent_id=old_agent, queued_at=opened, assigned_at=opened)],
    )

    assert await rows(
        session, "SELECT status, assigned_agent_id, assigned_at FROM conversation.conversations"
    ) == [("assigned", new_agent, assigned_at)]


async def _resolve_committed(settings: Settings, sender: str, at: datetime) -> None:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            session = AsyncSession(bind=conn)
            await session.begin()
            await service.resolve(
                session, Outbox(outbox_table, settings), ADMIN, await _conversation_of(session, sender), at=at
            )
            await session.commit()
            await session.close()
    finally:
        await engine.dispose()


async def _conversations(settings: Settings, sender: str) -> list[tuple[object, ...]]:
    """(status, reopen_count) of the sender's conversations, oldest first."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                sa.text(
                    "SELECT c.status, c.reopen_count FROM conversation.conversations c "
                    "JOIN conversation.customer_identities i ON i.customer_id = c.customer_id "
                    "WHERE i.value = :v ORDER BY c.opened_at"
                ),
                {"v": sender},
            )
            return [tuple(r) for r in found]
    finally:
        await engine.dispose()


async def test_two_replicas_reopening_one_conversation_at_once_reopen_it_once(settings: Settings) -> None:
    """The second transaction waits on the conversation the first is reopening, then finds it reopened and
    joins it: one reopen, both messages in it."""
    sender, now = f"reopen-{uuid.uuid4().hex[:6]}", utcnow()
    await _race(settings, [message(sender, at=now - 2 * HOUR)], [])
    await _resolve_committed(settings, sender, now - HOUR)

    retried = await _race(
        settings, [message(sender, at=now)], [message(sender, at=now + timedelta(seconds=1))]
    )

    assert not retried
    assert await _thread_counts(settings, sender) == (1, 1, 3)
    assert await _conversations(settings, sender) == [("reopened", 1)]


async def test_a_reopen_meeting_a_conversation_opened_meanwhile_retries_and_joins_it(
    settings: Settings,
) -> None:
    """One replica opens a new conversation for a customer (their message came after the window) while
    another reopens the resolved one (its message, delayed, came within it): the one-unresolved index
    refuses the reopen, the batch is retried, and the retry joins the new conversation."""
    sender, now = f"reopen-{uuid.uuid4().hex[:6]}", utcnow()
    await _race(settings, [message(sender, at=now - 5 * HOUR)], [])
    await _resolve_committed(settings, sender, now - 4 * HOUR)
    late = message(sender, at=now)  # 4 hours after the resolution
    delayed = message(sender, at=now - 3 * HOUR - timedelta(minutes=30))  # 30 minutes after it

    assert await _race(settings, [late], [delayed], reopen_window=HOUR)
    assert await _thread_counts(settings, sender) == (1, 2, 3)
    assert await _conversations(settings, sender) == [("resolved", 0), ("new", 0)]
