"""The acknowledgement auto-reply end to end, with the router and the conversation service served
in-process on the real database and broker: a conversation left waiting gets one automated reply stating
the router's estimate (however often conversation.queued is delivered), marked automated in the thread and
on message.outbound, which is no first response; out of its team's business hours, it is told when the
team answers instead."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import pytest

from switchboard_common import topics
from switchboard_common.db.database import Database
from switchboard_common.events import (
    ConversationAssigned,
    ConversationQueued,
    EventEnvelope,
    MessageOutbound,
    utcnow,
)
from switchboard_common.kafka.producer import EventPublisher
from switchboard_conversation.app import create_app as conversation_app
from switchboard_router.app import create_app as router_app
from tests.conftest import ADMIN_KEY, Settings
from tests.integration.test_replies import Desk
from tests.support import bearer, eventually, read_topic, serve

ADMIN = bearer(ADMIN_KEY)
PRIOR_S = 300  # the router's prior handle time: one busy slot ahead makes a 5-minute wait


@dataclass
class Stack:
    settings: Settings
    db: Database
    router: httpx.AsyncClient
    desk: httpx.AsyncClient

    async def write(self, sender: str, display_name: str | None = None) -> uuid.UUID:
        """A customer's first message, as the conversation service's consumer stores it: it opens a
        conversation, announced through the outbox to the router. Returns the conversation id."""
        desk = Desk(self.settings, self.db, self.desk)
        return await desk.conversation_of(
            await desk.inbound(f"ext-{sender}", sender=sender, display_name=display_name)
        )

    async def thread(self, cid: uuid.UUID) -> dict[str, Any]:
        response = await self.desk.get(f"/v1/conversations/{cid}", headers=ADMIN)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def automated(self, cid: uuid.UUID) -> list[dict[str, Any]]:
        return [m for m in (await self.thread(cid))["messages"] if m["automated"]]


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    settings = settings.model_copy(update={"router_default_handle_time_s": float(PRIOR_S)})
    db = Database.from_settings(settings)
    try:
        async with serve(router_app(settings)) as router, serve(conversation_app(settings)) as desk:
            yield Stack(settings, db, router, desk)
    finally:
        await db.dispose()


def _outbound(records: list[Any]) -> list[MessageOutbound]:
    out = []
    for record in records:
        payload = EventEnvelope.from_bytes(record.value).parse()
        assert isinstance(payload, MessageOutbound)
        out.append(payload)
    return out


async def _queued_record(settings: Settings, cid: uuid.UUID) -> tuple[EventEnvelope, ConversationQueued]:
    for record in await read_topic(settings, topics.ROUTING_EVENTS, 2, timeout=5):
        envelope = EventEnvelope.from_bytes(record.value)
        payload = envelope.parse()
        if isinstance(payload, ConversationQueued) and payload.conversation_id == cid:
            return envelope, payload
    raise AssertionError("no conversation.queued for the conversation")


async def test_a_waiting_conversation_gets_one_automated_reply_stating_the_estimate(stack: Stack) -> None:
    created = await stack.router.post(
        "/v1/agents",
        json={"name": "Ada", "email": "ada@example.com", "skills": [], "capacity": 1},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    agent = created.json()
    online = await stack.router.put(
        f"/v1/agents/{agent['id']}/status", json={"status": "online"}, headers=ADMIN
    )
    assert online.status_code == 200, online.text

    # The first customer takes the agent's only slot at once: assigned, so never acknowledged.
    first = await stack.write("cust-first")

    async def assigned() -> bool:
        return bool((await stack.thread(first))["status"] == "assigned")

    await eventually(assigned, timeout=30, what="the first conversation assigned")

    # The second waits behind one busy slot: about PRIOR_S seconds.
    second = await stack.write("cust-second", display_name="Grace Hopper")
    [ack] = await eventually(lambda: stack.automated(second), timeout=30, what="the acknowledgement")
    assert ack["body"] == "Thanks for your message, Grace! An agent will answer you in about 5 minutes."
    assert ack["direction"] == "outbound"
    assert ack["channel"] == "api"
    assert ack["author_agent_id"] is None
    assert ack["delivery_status"] == "queued"

    envelope, queued = await _queued_record(stack.settings, second)
    assert (queued.position, queued.estimated_wait_s, queued.opens_at) == (1, PRIOR_S, None)

    # conversation.queued delivered again (a consumer's redelivery), then an assignment of the same
    # conversation (same key, so handled after it): once it shows, the redelivery has been handled.
    publisher = EventPublisher(stack.settings, client_id="test-redeliver")
    await publisher.start()
    try:
        await publisher.publish(topics.ROUTING_EVENTS, str(second), envelope)
        now = utcnow()
        assignment = ConversationAssigned(
            conversation_id=second, agent_id=uuid.uuid4(), queued_at=queued.queued_at, assigned_at=now
        )
        await publisher.publish(
            topics.ROUTING_EVENTS, str(second), EventEnvelope.wrap(assignment, producer="test")
        )
    finally:
        await publisher.stop()

    async def second_assigned() -> dict[str, Any] | None:
        thread = await stack.thread(second)
        return thread if thread["status"] == "assigned" else None

    thread = await eventually(second_assigned, timeout=30, what="the redelivery handled")
    assert [m["id"] for m in thread["messages"] if m["automated"]] == [ack["id"]]
    assert thread["first_replied_at"] is None  # an acknowledgement is no first response
    assert await stack.automated(first) == []

    sent = _outbound(await read_topic(stack.settings, topics.MESSAGES_OUTBOUND, 2, timeout=3))
    assert len(sent) == 1
    [event] = sent
    assert event.automated is True
    assert event.agent_id is None
    assert event.message_id == uuid.UUID(ack["id"])
    assert event.conversation_id == second
    assert event.recipient == "cust-second"
    assert event.text == ack["body"]


async def test_out_of_business_hours_the_reply_says_when_the_team_answers(stack: Stack) -> None:
    # Open one minute a week, three days from now (UTC): closed now, whenever the test runs.
    day = (utcnow() + timedelta(days=3)).date()
    team = await stack.router.put("/v1/teams/support", json={}, headers=ADMIN)
    assert team.status_code == 200, team.text
    hours = await stack.router.put(
        "/v1/teams/support/hours",
        json={"timezone": "UTC", "weekly": [{"weekday": day.weekday(), "opens": "03:00", "closes": "03:01"}]},
        headers=ADMIN,
    )
    assert hours.status_code == 200, hours.text
    opens = datetime.combine(day, time(3), tzinfo=UTC)
    assert hours.json()["open_now"] is False
    assert datetime.fromisoformat(hours.json()["next_opening"]) == opens
    # The default queue is served by that team; conversations of queues without a team follow it.
    queue = await stack.router.put("/v1/queues/default", json={"team": "support"}, headers=ADMIN)
    assert queue.status_code == 200, queue.text
    assert queue.json()["team"] == "support"

    cid = await stack.write("cust-late", display_name="Ada")
    [ack] = await eventually(lambda: stack.automated(cid), timeout=30, what="the out-of-hours reply")
    assert ack["body"] == (
        f"Thanks for your message, Ada! We're closed right now; we answer from {opens:%A %d %B}, 03:00 UTC."
    )
    _, queued = await _queued_record(stack.settings, cid)
    assert queued.opens_at == opens
    assert queued.timezone == "UTC"


async def test_queues_name_only_existing_teams_and_hours_only_existing_teams(stack: Stack) -> None:
    unknown = await stack.router.put("/v1/queues/vip", json={"team": "nobody"}, headers=ADMIN)
    assert unknown.status_code == 409, unknown.text
    assert unknown.json()["error"]["code"] == "unknown_team"
    span = [{"weekday": 0, "opens": "09:00", "closes": "17:00"}]
    missing = await stack.router.put(
        "/v1/teams/nobody/hours", json={"timezone": "UTC", "weekly": span}, headers=ADMIN
    )
    assert missing.status_code == 404, missing.text
    bad = await stack.router.put(
        "/v1/teams/nobody/hours", json={"timezone": "Mars/Olympus", "weekly": span}, headers=ADMIN
    )
    assert bad.status_code == 422, bad.text
    assert (await stack.router.delete("/v1/teams/nobody/hours", headers=ADMIN)).status_code == 404
