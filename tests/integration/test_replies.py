"""Agents' replies and internal notes, with the conversation service running on the real database and
broker: a reply is stored in the thread, queued, and handed to the dispatcher as one ``message.outbound``
however often it is asked for; a note never leaves; visibility and resolution are respected; metrics
counts one outbound message per reply."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka.structs import ConsumerRecord

from switchboard_common import topics
from switchboard_common.auth import issue_agent_token
from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    Channel,
    ConversationAssigned,
    CustomerIdentity,
    EventEnvelope,
    IdentityKind,
    MessageOutbound,
    MessageReceived,
    outbound_event_id,
    utcnow,
)
from switchboard_common.kafka.producer import EventPublisher
from switchboard_conversation.app import create_app as conversation_app
from switchboard_conversation.conversations import service
from switchboard_conversation.models import outbox_table
from switchboard_metrics.app import create_app as metrics_app
from tests.conftest import ADMIN_KEY, Settings
from tests.support import bearer, eventually, read_topic, serve

ADMIN = bearer(ADMIN_KEY)


class Desk:
    """The conversation service served in-process, with its inbound state set up through its own
    handlers on the real database (as its consumer would), and agents holding real tokens."""

    def __init__(self, settings: Settings, db: Database, client: httpx.AsyncClient) -> None:
        self.settings, self.db, self.client = settings, db, client

    def agent(self) -> tuple[uuid.UUID, dict[str, str]]:
        agent_id = uuid.uuid4()
        token, _ = issue_agent_token(self.settings, agent_id)
        return agent_id, bearer(token)

    async def inbound(
        self, external_id: str, channel: Channel = Channel.API, sender: str = "cust-1", **extra: Any
    ) -> MessageReceived:
        kind = IdentityKind.PHONE if channel in (Channel.SMS, Channel.WHATSAPP) else IdentityKind.API
        now = utcnow()
        event = MessageReceived(
            message_id=uuid.uuid4(),
            channel=channel,
            external_id=external_id,
            sender=CustomerIdentity(kind=kind, value=sender),
            text=f"customer says {external_id}",
            sent_at=now,
            received_at=now,
            **extra,
        )
        async with self.db.unit_of_work() as session:
            outbox = Outbox(outbox_table, self.settings)
            await service.record_inbound(
                session, outbox, [(EventEnvelope.wrap(event, producer="test"), event)]
            )
        return event

    async def conversation_of(self, message: MessageReceived) -> uuid.UUID:
        async with self.db.unit_of_work() as session:
            found = await session.scalar(
                sa.text("SELECT conversation_id FROM conversation.messages WHERE id = :id"),
                {"id": message.message_id},
            )
        assert isinstance(found, uuid.UUID)
        return found

    async def assign(self, conversation_id: uuid.UUID, agent_id: uuid.UUID) -> None:
        now = utcnow()
        event = ConversationAssigned(
            conversation_id=conversation_id, agent_id=agent_id, queued_at=now, assigned_at=now
        )
        async with self.db.unit_of_work() as session:
            await service.record_assignments(session, [event])

    async def assigned_conversation(
        self, external_id: str = "m-1", **extra: Any
    ) -> tuple[uuid.UUID, uuid.UUID, dict[str, str]]:
        """A customer's message in a new conversation assigned to a new agent: (conversation, agent, auth)."""
        cid = await self.conversation_of(await self.inbound(external_id, **extra))
        agent_id, auth = self.agent()
        await self.assign(cid, agent_id)
        return cid, agent_id, auth

    async def reply(
        self, cid: uuid.UUID, auth: dict[str, str], text: str, key: str, **extra: Any
    ) -> httpx.Response:
        body = {"text": text, "idempotency_key": key, **extra}
        return await self.client.post(f"/v1/conversations/{cid}/replies", json=body, headers=auth)

    async def note(self, cid: uuid.UUID, auth: dict[str, str], text: str) -> httpx.Response:
        return await self.client.post(f"/v1/conversations/{cid}/notes", json={"text": text}, headers=auth)

    async def thread(self, cid: uuid.UUID) -> dict[str, Any]:
        response = await self.client.get(f"/v1/conversations/{cid}", headers=ADMIN)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.db.unit_of_work() as session:
            return await session.scalar(sa.text(sql), params)


@pytest.fixture
async def desk(settings: Settings) -> AsyncIterator[Desk]:
    db = Database.from_settings(settings)
    try:
        async with serve(conversation_app(settings)) as client:
            yield Desk(settings, db, client)
    finally:
        await db.dispose()


def outbound(records: list[ConsumerRecord]) -> list[tuple[str, EventEnvelope, MessageOutbound]]:
    out = []
    for record in records:
        envelope = EventEnvelope.from_bytes(record.value)
        payload = envelope.parse()
        assert isinstance(payload, MessageOutbound)
        out.append((record.key.decode(), envelope, payload))
    return out


async def test_a_reply_is_stored_queued_and_handed_to_the_dispatcher(desk: Desk, settings: Settings) -> None:
    cid, agent_id, auth = await desk.assigned_conversation()
    response = await desk.client.post(
        f"/v1/conversations/{cid}/replies",
        json={"text": "Happy to help!", "idempotency_key": "click-1"},
        headers={**auth, "X-Correlation-ID": "corr-reply-1"},
    )
    assert response.status_code == 201, response.text
    reply = response.json()
    assert reply["direction"] == "outbound"
    assert reply["channel"] == "api"
    assert reply["author_agent_id"] == str(agent_id)
    assert reply["delivery_status"] == "queued"
    assert reply["body"] == "Happy to help!"

    [(key, envelope, event)] = outbound(await read_topic(settings, topics.MESSAGES_OUTBOUND, 1))
    assert key == str(cid)  # a conversation's replies leave in order
    assert envelope.event_id == outbound_event_id(uuid.UUID(reply["id"]))
    assert envelope.correlation_id == "corr-reply-1"
    assert event.message_id == uuid.UUID(reply["id"])
    assert event.conversation_id == cid
    assert event.channel is Channel.API
    assert event.agent_id == agent_id
    assert event.text == "Happy to help!"
    assert event.sent_at.isoformat() == reply["sent_at"].replace("Z", "+00:00")

    thread = await desk.thread(cid)
    assert [m["direction"] for m in thread["messages"]] == ["inbound", "outbound"]
    assert thread["messages"][1] == reply
    assert thread["first_replied_at"] == reply["sent_at"]
    # Its owner sees it too, and the reply does not change the channel the customer last wrote on.
    mine = (await desk.client.get(f"/v1/conversations/{cid}", headers=auth)).json()
    assert mine["messages"] == thread["messages"]
    assert mine["last_channel"] == "api"


async def test_a_reply_goes_through_the_channel_the_customer_last_wrote_on(
    desk: Desk, settings: Settings
) -> None:
    phone, email = "+14155550100", "ada@example.com"
    cid, _, auth = await desk.assigned_conversation(
        identities=[
            CustomerIdentity(kind=IdentityKind.PHONE, value=phone),
            CustomerIdentity(kind=IdentityKind.EMAIL, value=email),
        ]
    )
    later = await desk.inbound("sms-1", Channel.SMS, sender=phone)
    assert await desk.conversation_of(later) == cid  # the same customer, the same thread

    by_default = await desk.reply(cid, auth, "Got your text", "k-1")
    assert by_default.status_code == 201, by_default.text
    assert by_default.json()["channel"] == "sms"
    chosen = await desk.reply(cid, auth, "Also by email", "k-2", channel="email")
    assert chosen.status_code == 201, chosen.text
    assert chosen.json()["channel"] == "email"
    events = outbound(await read_topic(settings, topics.MESSAGES_OUTBOUND, 2))
    # Each addressed to the customer's identity on its channel.
    assert [(e.channel, e.recipient) for _, _, e in events] == [(Channel.SMS, phone), (Channel.EMAIL, email)]


async def test_a_reply_on_a_channel_the_customer_cannot_be_reached_on_is_refused(desk: Desk) -> None:
    cid, _, auth = await desk.assigned_conversation()
    refused = await desk.reply(cid, auth, "By WhatsApp?", "k-1", channel="whatsapp")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "customer_unreachable"
    thread = (await desk.client.get(f"/v1/conversations/{cid}", headers=auth)).json()["messages"]
    assert [m["direction"] for m in thread] == ["inbound"]  # nothing stored, nothing sent


async def test_a_double_click_sends_once(desk: Desk, settings: Settings) -> None:
    cid, _, auth = await desk.assigned_conversation()
    first, second = await asyncio.gather(
        desk.reply(cid, auth, "Once only", "double"), desk.reply(cid, auth, "Once only", "double")
    )
    assert sorted([first.status_code, second.status_code]) == [200, 201], (first.text, second.text)
    assert first.json() == second.json()
    again = await desk.reply(cid, auth, "Once only", "double")
    assert (again.status_code, again.json()) == (200, first.json())
    later = await desk.reply(cid, auth, "A second reply", "next")
    assert later.status_code == 201

    outbound_rows = await desk.scalar(
        "SELECT count(*) FROM conversation.messages WHERE conversation_id = :cid AND direction = 'outbound'",
        cid=cid,
    )
    assert outbound_rows == 2
    # One conversation's events share a partition, in commit order: a second event for the double click
    # would come before the later reply's.
    events = outbound(await read_topic(settings, topics.MESSAGES_OUTBOUND, 2))
    assert [str(e.message_id) for _, _, e in events] == [first.json()["id"], later.json()["id"]]


async def test_an_idempotency_key_reused_for_another_reply_is_a_conflict(desk: Desk) -> None:
    cid, _, auth = await desk.assigned_conversation()
    assert (await desk.reply(cid, auth, "First words", "key-1")).status_code == 201
    for other in ({"text": "Other words"}, {"text": "First words", "channel": "email"}):
        response = await desk.reply(cid, auth, **{"text": "First words", "key": "key-1", **other})
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "idempotency_key_reused"
    # The same key in another conversation is another reply.
    cid2, _, auth2 = await desk.assigned_conversation("m-2", sender="cust-2")
    assert (await desk.reply(cid2, auth2, "Other words", "key-1")).status_code == 201
    assert len((await desk.thread(cid))["messages"]) == 2


async def test_someone_elses_conversation_is_not_found(desk: Desk) -> None:
    cid, _, auth = await desk.assigned_conversation()
    _, stranger = desk.agent()
    for path, body in (("replies", {"text": "hi", "idempotency_key": "k"}), ("notes", {"text": "hi"})):
        stolen = await desk.client.post(f"/v1/conversations/{cid}/{path}", json=body, headers=stranger)
        assert stolen.status_code == 404, stolen.text
        missing = await desk.client.post(f"/v1/conversations/{uuid.uuid4()}/{path}", json=body, headers=auth)
        assert missing.status_code == 404
        # The admin credential sees everything but is nobody: it cannot author a reply or a note.
        admin = await desk.client.post(f"/v1/conversations/{cid}/{path}", json=body, headers=ADMIN)
        assert admin.status_code == 403, admin.text
    assert [m["direction"] for m in (await desk.thread(cid))["messages"]] == ["inbound"]


async def test_a_resolved_conversation_takes_notes_but_no_reply(desk: Desk) -> None:
    cid, _, auth = await desk.assigned_conversation()
    resolved = await desk.client.post(f"/v1/conversations/{cid}/resolve", headers=auth)
    assert resolved.status_code == 200
    response = await desk.reply(cid, auth, "Too late", "late")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conversation_resolved"
    assert (await desk.note(cid, auth, "Wrap-up: refunded")).status_code == 201
    # The resolution asked the customer the satisfaction survey: an automated message, not a reply.
    thread = (await desk.thread(cid))["messages"]
    assert [(m["direction"], m["automated"]) for m in thread] == [
        ("inbound", False),
        ("outbound", True),
        ("note", False),
    ]


async def test_a_note_stays_in_the_thread_and_never_leaves(desk: Desk, settings: Settings) -> None:
    cid, agent_id, auth = await desk.assigned_conversation()
    note = await desk.note(cid, auth, "VIP: be nice")
    assert note.status_code == 201, note.text
    assert {k: note.json()[k] for k in ("direction", "channel", "author_agent_id", "delivery_status")} == {
        "direction": "note",
        "channel": None,
        "author_agent_id": str(agent_id),
        "delivery_status": None,
    }
    reply = await desk.reply(cid, auth, "Hello!", "k")
    assert reply.status_code == 201
    await desk.inbound("m-2")

    thread = (await desk.thread(cid))["messages"]
    assert [(m["direction"], m["body"]) for m in thread] == [
        ("inbound", "customer says m-1"),
        ("note", "VIP: be nice"),
        ("outbound", "Hello!"),
        ("inbound", "customer says m-2"),
    ]
    assert [m["author_agent_id"] for m in thread] == [None, str(agent_id), str(agent_id), None]
    assert [m["delivery_status"] for m in thread] == [None, None, "queued", None]
    assert [m["channel"] for m in thread] == ["api", None, "api", "api"]
    # The only outbound event is the reply's: the note made none.
    events = outbound(await read_topic(settings, topics.MESSAGES_OUTBOUND, 2, timeout=3))
    assert [str(e.message_id) for _, _, e in events] == [reply.json()["id"]]


async def test_the_first_reply_is_recorded_once(desk: Desk) -> None:
    cid, _, auth = await desk.assigned_conversation()
    assert (await desk.thread(cid))["first_replied_at"] is None
    await desk.note(cid, auth, "a note is no reply")
    assert (await desk.thread(cid))["first_replied_at"] is None
    first = (await desk.reply(cid, auth, "First", "1")).json()
    await desk.reply(cid, auth, "Second", "2")
    await desk.reply(cid, auth, "First", "1")  # the first again
    assert (await desk.thread(cid))["first_replied_at"] == first["sent_at"]


async def test_reply_input_is_checked(desk: Desk) -> None:
    cid, _, auth = await desk.assigned_conversation()
    bad: list[dict[str, Any]] = [
        {"text": "hi"},  # no idempotency key
        {"text": "hi", "idempotency_key": ""},
        {"text": "hi", "idempotency_key": "has space"},
        {"text": "hi", "idempotency_key": "é"},
        {"text": "hi", "idempotency_key": "k" * 201},
        {"text": "", "idempotency_key": "k"},
        {"text": "   ", "idempotency_key": "k"},
        {"text": "nul\u0000", "idempotency_key": "k"},
        {"text": "x" * 4097, "idempotency_key": "k"},
        {"text": "hi", "idempotency_key": "k", "channel": "pigeon"},
    ]
    for body in bad:
        response = await desk.client.post(f"/v1/conversations/{cid}/replies", json=body, headers=auth)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    ok = await desk.reply(cid, auth, "x" * 4096, "k" * 200)
    assert ok.status_code == 201, ok.text
    assert (
        await desk.client.post(f"/v1/conversations/{cid}/notes", json={}, headers=auth)
    ).status_code == 422


async def test_metrics_counts_one_outbound_message_per_reply(desk: Desk, settings: Settings) -> None:
    cid, _, auth = await desk.assigned_conversation()
    first = await desk.reply(cid, auth, "One", "1")
    [record] = await read_topic(settings, topics.MESSAGES_OUTBOUND, 1)
    # The same event delivered twice more, as a relay republishes after a crash.
    publisher = EventPublisher(settings, client_id="test-republish")
    await publisher.start()
    try:
        for _ in range(2):
            await publisher.publish(
                topics.MESSAGES_OUTBOUND, str(cid), EventEnvelope.from_bytes(record.value)
            )
    finally:
        await publisher.stop()
    second = await desk.reply(cid, auth, "Two", "2")  # after the copies on the same partition
    assert (first.status_code, second.status_code) == (201, 201)

    async with serve(metrics_app(settings)) as metrics:

        async def both_recorded() -> bool:
            facts = await desk.scalar(
                "SELECT count(*) FROM metrics.message_facts WHERE direction = 'outbound' "
                "AND conversation_id = :cid AND channel = 'api' AND sent_at IS NOT NULL",
                cid=cid,
            )
            return bool(facts == 2)

        # The second reply's facts, committed with its count, come after the copies of the first.
        await eventually(both_recorded, timeout=60, what="metrics to record both replies")
        snapshot = (await metrics.get("/v1/kpis", headers=ADMIN)).json()
    assert snapshot["events_by_type"]["message.outbound"] == 2
