"""Agents' realtime stream (``GET /v1/stream``) with the conversation service served in-process on the real
database and broker: what reaches an agent's stream and what does not, resuming after a reconnect, a row
written through one replica reaching a stream held on another, and redelivered events adding nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.database import Database
from switchboard_common.events import (
    Channel,
    ConversationAssigned,
    ConversationOffered,
    ConversationOfferTimedOut,
    ConversationRequeued,
    DeliveryState,
    DeliveryStatusChanged,
    EventEnvelope,
    Payload,
    RequeueReason,
    utcnow,
)
from switchboard_common.kafka.producer import EventPublisher
from switchboard_conversation.app import create_app as conversation_app
from switchboard_conversation.conversations import service
from switchboard_conversation.stream import repository
from switchboard_conversation.stream import service as stream_service
from tests.conftest import ADMIN_KEY, Settings
from tests.integration.test_replies import Desk
from tests.integration.test_webchat import serve_on_port
from tests.support import bearer, eventually, owns_every_partition

ADMIN = bearer(ADMIN_KEY)


@dataclass(frozen=True)
class Item:
    id: str
    kind: str
    data: dict[str, Any]


class Events:
    """An open stream, read one item at a time; the retry hint and keep-alive comments are skipped."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 20.0) -> Item:
        return await asyncio.wait_for(self._item(), timeout)

    async def _item(self) -> Item:
        event: dict[str, str] = {}
        async for line in self._lines:
            if line.startswith(":"):
                continue
            if line:
                field, _, value = line.partition(":")
                event[field] = value.removeprefix(" ")
                continue
            if "data" in event:
                return Item(event["id"], event["event"], json.loads(event["data"]))
            event = {}
        raise AssertionError("the stream ended")


@asynccontextmanager
async def stream(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    after: int | None = None,
    last_event_id: str | None = None,
) -> AsyncIterator[Events]:
    params = {"after": after} if after is not None else {}
    headers = {**auth, **({"Last-Event-ID": last_event_id} if last_event_id is not None else {})}
    timeout = httpx.Timeout(10, read=None)
    async with client.stream(
        "GET", "/v1/stream", params=params, headers=headers, timeout=timeout
    ) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Events(response)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database.from_settings(settings)
    try:
        yield database
    finally:
        await database.dispose()


@asynccontextmanager
async def replica(settings: Settings, db: Database) -> AsyncIterator[tuple[Desk, FastAPI]]:
    """A conversation app (a replica) on the shared database and broker, with its own pool and hub, ready:
    its consumer joined the group (one stopped while still joining can keep the broker's group waiting)."""
    app = conversation_app(settings)
    # On a real port: the in-process transport would hold a streaming response until it ends.
    async with (
        serve_on_port(app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
    ):
        desk, hub = Desk(settings, db, client), app.state.feed_hub
        await eventually(lambda: _ready(desk), timeout=60, what="the replica to be ready")
        await eventually(lambda: _true(hub.listening), what="the hub to listen")
        yield desk, app


@pytest.fixture
async def desk(settings: Settings, db: Database) -> AsyncIterator[Desk]:
    async with replica(settings, db) as (one, _):
        yield one


async def publish(settings: Settings, *payloads: Payload) -> None:
    """Publish on the payloads' topics, keyed as their producers key them."""
    publisher = EventPublisher(settings, client_id="test")
    await publisher.start()
    try:
        for payload in payloads:
            key = getattr(payload, "conversation_id", None) or getattr(payload, "message_id", None)
            await publisher.publish(payload.topic, str(key), EventEnvelope.wrap(payload, producer="test"))
    finally:
        await publisher.stop()


def offer(conversation_id: uuid.UUID, agent_id: uuid.UUID) -> ConversationOffered:
    now = utcnow()
    return ConversationOffered(
        conversation_id=conversation_id,
        agent_id=agent_id,
        queued_at=now,
        offered_at=now,
        expires_at=now + timedelta(seconds=30),
    )


async def _true(value: bool) -> bool:
    return value


async def _ready(desk: Desk) -> bool:
    return (await desk.client.get("/health/ready")).status_code == 200


# --- tests -----------------------------------------------------------------------------------------------


async def test_a_stream_gets_a_customer_message_a_reply_and_its_delivery_status(
    desk: Desk, settings: Settings
) -> None:
    cid, agent_id, auth = await desk.assigned_conversation("m-1", sender="cust-9")
    async with stream(desk.client, auth) as events:
        await desk.inbound("m-2", sender="cust-9")
        message = await events.next()
        assert (message.kind, message.data["direction"], message.data["text"]) == (
            "message",
            "inbound",
            "customer says m-2",
        )
        assert (message.data["agent_id"], message.data["conversation_id"]) == (str(agent_id), str(cid))

        response = await desk.reply(cid, auth, "on it", "key-1")
        assert response.status_code == 201, response.text
        reply = await events.next()
        assert (reply.kind, reply.data["direction"], reply.data["text"]) == ("message", "outbound", "on it")
        assert reply.data["message_id"] == response.json()["id"]

        # Through the broker and the consumer, as ingest's dispatcher reports it.
        sent = DeliveryStatusChanged(
            channel=Channel.API,
            message_id=uuid.UUID(reply.data["message_id"]),
            external_id="prov-1",
            status=DeliveryState.SENT,
            at=utcnow(),
        )
        await publish(settings, sent)
        delivery = await events.next(timeout=60)
        assert (delivery.kind, delivery.data["message_id"], delivery.data["status"]) == (
            "delivery",
            reply.data["message_id"],
            "sent",
        )
        assert int(message.id) < int(reply.id) < int(delivery.id)


async def test_an_offer_reaches_the_offered_agents_stream_and_no_other(
    desk: Desk, settings: Settings
) -> None:
    ada, ada_auth = desk.agent()
    bob, bob_auth = desk.agent()
    cid, other = uuid.uuid4(), uuid.uuid4()
    async with stream(desk.client, ada_auth) as ada_events, stream(desk.client, bob_auth) as bob_events:
        offered = offer(cid, ada)
        lapsed = ConversationOfferTimedOut(
            conversation_id=cid,
            agent_id=ada,
            queued_at=offered.queued_at,
            offered_at=offered.offered_at,
            ended_at=utcnow(),
        )
        await publish(settings, offered, lapsed)
        first, second = await ada_events.next(timeout=60), await ada_events.next()
        assert (first.kind, first.data["conversation_id"], first.data["agent_id"]) == (
            "offered",
            str(cid),
            str(ada),
        )
        assert first.data["expires_at"] is not None
        assert (second.kind, second.data["conversation_id"]) == ("offer_timed_out", str(cid))
        # Bob's stream reads again for his own offer, after Ada's items committed: they are not in it.
        await publish(settings, offer(other, bob))
        bobs = await bob_events.next(timeout=60)
        assert (bobs.kind, bobs.data["conversation_id"], bobs.data["agent_id"]) == (
            "offered",
            str(other),
            str(bob),
        )

    # The admin credential streams every agent's items.
    async with stream(desk.client, ADMIN, after=0) as every:
        seen = [await every.next() for _ in range(3)]
    assert sorted((i.kind, i.data["agent_id"]) for i in seen) == sorted(
        [("offered", str(ada)), ("offer_timed_out", str(ada)), ("offered", str(bob))]
    )


async def test_a_reconnect_gets_exactly_the_rows_it_missed(desk: Desk) -> None:
    cid, _, auth = await desk.assigned_conversation("m-1", sender="cust-3")
    async with stream(desk.client, auth) as events:
        assert (await desk.note(cid, auth, "one")).status_code == 201
        one = await events.next()
    assert (await desk.note(cid, auth, "two")).status_code == 201
    assert (await desk.note(cid, auth, "three")).status_code == 201

    async with stream(desk.client, auth, last_event_id=one.id) as events:
        missed = [await events.next(), await events.next()]
        assert [i.data["text"] for i in missed] == ["two", "three"]
        assert (await desk.note(cid, auth, "four")).status_code == 201
        assert (await events.next()).data["text"] == "four"  # nothing repeated before it

    # ?after= resumes the same way; the header, newer on a reconnect, wins over it.
    async with stream(desk.client, auth, after=int(missed[1].id)) as events:
        assert (await events.next()).data["text"] == "four"
    async with stream(desk.client, auth, after=int(one.id), last_event_id=missed[1].id) as events:
        assert (await events.next()).data["text"] == "four"
    bad = await desk.client.get("/v1/stream", headers={**auth, "Last-Event-ID": "12x"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "validation_error")


async def test_a_row_written_through_one_replica_reaches_a_stream_on_another(
    settings: Settings, db: Database
) -> None:
    # A poll far longer than the test waits: only the notification can bring the row in time.
    slow = settings.model_copy(update={"stream_poll_interval_ms": 600_000})
    async with replica(slow, db) as (a, a_app):
        async with replica(slow, db) as (b, _):
            cid, _, auth = await a.assigned_conversation("m-1", sender="cust-5")
            async with stream(b.client, auth, after=0) as events:
                # Its first read is done (it brought the assignment): the stream now waits for a wake-up.
                assert (await events.next()).kind == "assigned"
                response = await a.reply(cid, auth, "from replica A", "key-1")
                assert response.status_code == 201, response.text
                item = await events.next()
                assert (item.kind, item.data["text"]) == ("message", "from replica A")
        # A takes B's partitions back before it leaves too: a group left mid-rebalance keeps the broker's
        # next member of it (the next test's) waiting for A.
        await eventually(lambda: owns_every_partition(a_app, slow), timeout=60, what="the group to settle")


async def test_redelivered_events_add_no_second_row(session: AsyncSession, settings: Settings) -> None:
    agent_id, cid = uuid.uuid4(), uuid.uuid4()
    offered = offer(cid, agent_id)
    await stream_service.record_offers(session, [offered])
    await stream_service.record_offers(session, [offered, offered])
    await stream_service.resolved(session, cid, agent_id, offered.offered_at)
    await stream_service.resolved(session, cid, agent_id, offered.offered_at)
    rows = (
        await session.execute(sa.text("SELECT kind, count(*) FROM conversation.agent_feed GROUP BY kind"))
    ).all()
    assert sorted(tuple(r) for r in rows) == [("offered", 1), ("resolved", 1)]


async def test_a_redelivered_assignment_adds_no_second_row(desk: Desk) -> None:
    cid, agent_id, _ = await desk.assigned_conversation("m-1")
    now = utcnow()
    again = ConversationAssigned(conversation_id=cid, agent_id=agent_id, queued_at=now, assigned_at=now)
    async with desk.db.unit_of_work() as session:
        await service.record_assignments(session, [again])
    async with desk.db.unit_of_work() as session:
        await service.record_assignments(session, [again])
    count = await desk.scalar("SELECT count(*) FROM conversation.agent_feed WHERE kind = 'assigned'")
    assert count == 2  # the fixture's assignment and this one, once


async def test_a_row_committed_late_with_a_smaller_seq_is_not_skipped(settings: Settings) -> None:
    """Streams read up to the oldest running transaction: a row another transaction committed first,
    with a larger seq, waits until the earlier writer ends, so a cursor past it cannot skip the other."""
    db = Database.from_settings(settings)
    agent_id = uuid.uuid4()
    try:
        async with db.engine.connect() as slow:
            transaction = await slow.begin()
            slow_session = AsyncSession(bind=slow)
            await stream_service.record_offers(slow_session, [offer(uuid.uuid4(), agent_id)])  # smaller seq
            async with db.unit_of_work() as fast:
                await stream_service.record_offers(
                    fast, [offer(uuid.uuid4(), agent_id)]
                )  # larger, commits first
            async with db.unit_of_work() as reader:
                assert await repository.read(reader, agent_id, repository.START, 10) == []
            await transaction.commit()
        async with db.unit_of_work() as reader:
            items = await repository.read(reader, agent_id, repository.START, 10)
        assert len(items) == 2
        assert [i.position for i in items] == sorted(i.position for i in items)
    finally:
        await db.dispose()


async def test_items_past_their_retention_are_deleted(session: AsyncSession) -> None:
    agent_id = uuid.uuid4()
    await stream_service.record_offers(
        session, [offer(uuid.uuid4(), agent_id), offer(uuid.uuid4(), agent_id)]
    )
    old = await session.scalar(sa.text("SELECT min(seq) FROM conversation.agent_feed"))
    await session.execute(
        sa.text("UPDATE conversation.agent_feed SET at = now() - interval '2 days' WHERE seq = :seq"),
        {"seq": old},
    )
    assert await repository.purge(session, timedelta(days=1)) == 1
    left = await session.scalar(
        sa.text("SELECT count(*) FROM conversation.agent_feed WHERE seq <> :seq"), {"seq": old}
    )
    assert left == 1


async def test_assignment_changes_reach_the_agents_they_concern(desk: Desk) -> None:
    """Taken back, assigned to another agent, resolved by them, then reopened by the customer: each agent
    is told what concerns them."""
    cid, ada, ada_auth = await desk.assigned_conversation("m-1", sender="cust-7")
    bob, bob_auth = desk.agent()
    async with stream(desk.client, ada_auth) as ada_events, stream(desk.client, bob_auth) as bob_events:
        now = utcnow()
        taken = ConversationRequeued(
            conversation_id=cid, agent_id=ada, reason=RequeueReason.SUPERVISOR, queued_at=now, requeued_at=now
        )
        async with desk.db.unit_of_work() as session:
            await service.record_requeues(session, [taken])
        requeued = await ada_events.next()
        assert (requeued.kind, requeued.data["reason"], requeued.data["conversation_id"]) == (
            "requeued",
            "supervisor",
            str(cid),
        )

        await desk.assign(cid, bob)
        assert (await bob_events.next()).kind == "assigned"
        resolved = await desk.client.post(f"/v1/conversations/{cid}/resolve", headers=bob_auth)
        assert resolved.status_code == 200, resolved.text
        assert (await bob_events.next()).kind == "resolved"

        await desk.inbound("m-2", sender="cust-7")  # within the reopen window: the conversation comes back
        reopened = await bob_events.next()
        assert (reopened.kind, reopened.data["conversation_id"]) == ("reopened", str(cid))
    # Ada was told of nothing after the conversation left her.
    async with desk.db.unit_of_work() as session:
        adas = await repository.read(session, ada, repository.START, 10)
    assert [i.kind for i in adas] == ["assigned", "requeued"]
