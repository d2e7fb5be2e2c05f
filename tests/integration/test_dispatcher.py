"""The dispatcher on the real database: a reply whose adapter fails unexpectedly still ends in a recorded
outcome, retried on the schedule and dead-lettered after its last attempt, instead of coming due again
at every lease forever."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa

from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import Channel, EventEnvelope, MessageOutbound, utcnow
from switchboard_ingest.channels.base import OutboundMessage, SendOutcome
from switchboard_ingest.models import outbox_table
from switchboard_ingest.outbound import service
from switchboard_ingest.outbound.dispatcher import Dispatcher
from tests.conftest import Settings
from tests.support import eventually


class Broken:
    """An adapter with a bug: building the request raises something no adapter is expected to raise."""

    def build(self, message: OutboundMessage) -> httpx.Request:
        raise KeyError("a bug")

    def outcome(self, response: httpx.Response) -> SendOutcome:
        raise AssertionError("never reached")


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database.from_settings(settings)
    try:
        yield database
    finally:
        await database.dispose()


async def test_an_adapter_bug_ends_in_the_dead_letters_after_the_last_attempt(
    settings: Settings, db: Database
) -> None:
    quick = settings.model_copy(
        update={
            "dispatch_max_attempts": 2,
            "dispatch_backoff_initial_ms": 10,
            "dispatch_poll_interval_ms": 20,
        }
    )
    outbox = Outbox(outbox_table, quick)
    reply = MessageOutbound(
        message_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        channel=Channel.SMS,
        agent_id=uuid.uuid4(),
        text="hello",
        sent_at=utcnow(),
        recipient="+14155550100",
    )
    async with db.unit_of_work() as session:
        await service.schedule(session, [(EventEnvelope.wrap(reply, producer="test"), reply)])
    dispatcher = Dispatcher(db, outbox, {Channel.SMS: Broken()}, quick)
    await dispatcher.start()
    try:

        async def state() -> tuple[str, int] | None:
            async with db.unit_of_work() as session:
                row = (
                    await session.execute(
                        sa.text(
                            "SELECT state, attempts FROM ingest.outbound_deliveries WHERE message_id = :id"
                        ),
                        {"id": reply.message_id},
                    )
                ).one()
            return (row[0], row[1]) if row[0] != "pending" else None

        assert await eventually(state, what="the reply given up on") == ("dead", 2)
    finally:
        await dispatcher.stop()
    async with db.unit_of_work() as session:
        topics_written = (
            (await session.execute(sa.text("SELECT topic FROM ingest.outbox ORDER BY id"))).scalars().all()
        )
    assert [t.removeprefix(quick.topic_prefix) for t in topics_written] == [
        "delivery.events",
        "messages.outbound.dlq",
    ]
