"""One thread per customer, proven with two conversation-service replicas on the real broker and
database: a customer who writes on two channels at the same moment (the same phone on WhatsApp and SMS, or
a shared email) gets one customer and one conversation, whichever replica takes which message."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack

import sqlalchemy as sa

from switchboard_common import topics
from switchboard_common.db.database import Database
from switchboard_common.events import (
    Channel,
    CustomerIdentity,
    EventEnvelope,
    IdentityKind,
    MessageReceived,
    utcnow,
)
from switchboard_common.kafka.producer import EventPublisher
from switchboard_conversation.app import create_app as conversation_app
from tests.conftest import Settings
from tests.support import eventually, owns_every_partition, read_topic, serve

CUSTOMERS = 24


def _message(channel: Channel, sender: CustomerIdentity, *also: CustomerIdentity) -> MessageReceived:
    now = utcnow()
    return MessageReceived(
        message_id=uuid.uuid4(),
        channel=channel,
        external_id=uuid.uuid4().hex,
        sender=sender,
        identities=list(also),
        text=f"hello on {channel.value}",
        sent_at=now,
        received_at=now,
    )


def _pairs() -> list[tuple[MessageReceived, MessageReceived]]:
    """Per customer, two messages sent at once on two channels that name the same person."""
    pairs = []
    for i in range(CUSTOMERS):
        if i % 2:
            phone = CustomerIdentity(kind=IdentityKind.PHONE, value=f"+1415555{i:04d}")
            pairs.append((_message(Channel.WHATSAPP, phone), _message(Channel.SMS, phone)))
        else:
            email = CustomerIdentity(kind=IdentityKind.EMAIL, value=f"shared{i}@example.com")
            web = CustomerIdentity(kind=IdentityKind.WEBCHAT, value=f"visitor-{i}")
            pairs.append((_message(Channel.WEBCHAT, web, email), _message(Channel.EMAIL, email)))
    return pairs


async def test_two_channels_at_once_through_two_replicas_open_one_conversation(settings: Settings) -> None:
    db = Database.from_settings(settings)
    publisher = EventPublisher(settings, client_id="test-cross-channel")
    await publisher.start()
    try:
        async with AsyncExitStack() as stack:
            apps = [conversation_app(settings), conversation_app(settings)]
            await stack.enter_async_context(serve(apps[0]))
            second = AsyncExitStack()
            await second.enter_async_context(serve(apps[1]))

            async def both_hold_partitions() -> bool:
                held = [app.state.runtime.consumers[0]._consumer for app in apps]
                return all(c is not None and c.assignment() for c in held)

            await eventually(both_hold_partitions, timeout=60, what="both replicas to hold partitions")
            pairs = _pairs()

            async def publish(message: MessageReceived) -> None:
                # Keyed as ingest keys them: by the sender's identity on its channel, so the two messages of
                # a pair land on different partitions, and so on different replicas, as often as not.
                key = f"{message.channel.value}:{message.sender.kind.value}:{message.sender.value}"
                envelope = EventEnvelope.wrap(message, producer="test")
                await publisher.publish(topics.MESSAGES_INBOUND, key, envelope)

            await asyncio.gather(*(publish(m) for pair in pairs for m in pair))

            async def stored() -> int | None:
                async with db.unit_of_work() as session:
                    n = await session.scalar(sa.text("SELECT count(*) FROM conversation.messages"))
                return n if n == 2 * CUSTOMERS else None

            await eventually(stored, timeout=60, what="every message stored")
            # The second replica leaves first and the first takes every partition back before it leaves too:
            # two members leaving a group mid-rebalance keep the next test's consumer waiting on the broker.
            await second.aclose()

            await eventually(
                lambda: owns_every_partition(apps[0], settings),
                timeout=60,
                what="the first replica to hold every partition",
            )
        async with db.unit_of_work() as session:
            customers = await session.scalar(sa.text("SELECT count(*) FROM conversation.customers"))
            conversations = await session.scalar(sa.text("SELECT count(*) FROM conversation.conversations"))
            split = await session.scalar(
                sa.text(
                    "SELECT count(*) FROM (SELECT customer_id FROM conversation.conversations "
                    "GROUP BY customer_id HAVING count(*) > 1) s"
                )
            )
            threads = (
                (
                    await session.execute(
                        sa.text(
                            "SELECT array_agg(m.id) FROM conversation.messages m GROUP BY m.conversation_id"
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert (customers, conversations, split) == (CUSTOMERS, CUSTOMERS, 0)
        expected = sorted(sorted((a.message_id, b.message_id)) for a, b in pairs)
        assert sorted(sorted(t) for t in threads) == expected  # each pair in one thread
        assert await read_topic(settings, topics.dlq(topics.MESSAGES_INBOUND), 1, timeout=1) == []
    finally:
        await publisher.stop()
        await db.dispose()
