# ruff: noqa: F811 - the desk fixture is imported from test_replies and named by the tests
"""Satisfaction surveys on the real database and broker: a resolution asks the customer on their channel
(an automated message, no first response), their score answers it without reopening the conversation, a
low score flags the conversation, and only a bare score on the scale counts."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from switchboard_common import topics
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    Channel,
    CustomerIdentity,
    EventEnvelope,
    IdentityKind,
    MessageOutbound,
    MessageReceived,
    SurveyAnswered,
    utcnow,
)
from switchboard_conversation.conversations import service
from switchboard_conversation.models import outbox_table
from tests.conftest import ADMIN_KEY, Settings
from tests.integration.test_replies import Desk, desk  # noqa: F401 - the fixture
from tests.support import bearer, read_topic

ADMIN = bearer(ADMIN_KEY)


async def _events(settings: Settings, topic: str, count: int) -> list[Any]:
    return [EventEnvelope.from_bytes(r.value).parse() for r in await read_topic(settings, topic, count)]


async def _say(
    desk: Desk, external_id: str, text: str, again: MessageReceived | None = None
) -> MessageReceived:
    """The customer (cust-1 on the API channel) writes ``text``; ``again`` delivers that message once more."""
    now = utcnow()
    event = again or MessageReceived(
        message_id=uuid.uuid4(),
        channel=Channel.API,
        external_id=external_id,
        sender=CustomerIdentity(kind=IdentityKind.API, value="cust-1"),
        text=text,
        sent_at=now,
        received_at=now,
    )
    async with desk.db.unit_of_work() as session:
        outbox = Outbox(outbox_table, desk.settings)
        await service.record_inbound(session, outbox, [(EventEnvelope.wrap(event, producer="test"), event)])
    return event


async def _resolve(desk: Desk, cid: uuid.UUID, auth: dict[str, str]) -> None:
    response = await desk.client.post(f"/v1/conversations/{cid}/resolve", headers=auth)
    assert response.status_code == 200, response.text


async def test_a_resolution_asks_and_a_score_answers_without_reopening(
    desk: Desk, settings: Settings
) -> None:
    cid, agent_id, auth = await desk.assigned_conversation()
    await _resolve(desk, cid, auth)
    [question] = [
        e for e in await _events(settings, topics.MESSAGES_OUTBOUND, 1) if isinstance(e, MessageOutbound)
    ]
    assert question.automated and question.agent_id is None
    assert "1 (very unsatisfied)" in question.text and question.recipient == "cust-1"
    thread = await desk.thread(cid)
    assert thread["first_replied_at"] is None  # the question is no human response
    assert thread["messages"][-1]["automated"] is True

    await _say(desk, "m-score", "2")
    after = await desk.thread(cid)
    assert after["status"] == "resolved"  # the answer did not reopen it
    assert after["follow_up"] is True  # 2 of 5 is low
    survey = await desk.scalar("SELECT score FROM conversation.surveys WHERE conversation_id = :c", c=cid)
    assert survey == 2
    answered = [
        e for e in await _events(settings, topics.CONVERSATION_EVENTS, 8) if isinstance(e, SurveyAnswered)
    ]
    assert [(e.conversation_id, e.kind, e.score, e.follow_up, e.agent_id) for e in answered] == [
        (cid, "csat", 2, True, agent_id)
    ]
    flagged = await desk.client.get("/v1/conversations", params={"follow_up": "true"}, headers=ADMIN)
    assert [c["id"] for c in flagged.json()["items"]] == [str(cid)]


async def test_only_the_first_bare_score_answers(desk: Desk, settings: Settings) -> None:
    cid, _, auth = await desk.assigned_conversation()
    await _resolve(desk, cid, auth)
    # A sentence with a number in it is a message: it reopens the conversation, and closes the survey.
    await _say(desk, "m-words", "2 items are still missing")
    assert (await desk.thread(cid))["status"] == "reopened"
    await _say(desk, "m-late-score", "5")
    assert await desk.scalar("SELECT count(*) FROM conversation.surveys WHERE answered_at IS NOT NULL") == 0
    assert (await desk.thread(cid))["follow_up"] is False


async def test_a_redelivered_answer_counts_once(desk: Desk, settings: Settings) -> None:
    cid, _, auth = await desk.assigned_conversation()
    await _resolve(desk, cid, auth)
    answer = await _say(desk, "m-score", "4")
    await _say(desk, "m-score", "4", again=answer)
    assert (
        await desk.scalar("SELECT count(*) FROM conversation.messages WHERE id = :m", m=answer.message_id)
        == 1
    )
    assert await desk.scalar("SELECT score FROM conversation.surveys") == 4
    answered = [
        e for e in await _events(settings, topics.CONVERSATION_EVENTS, 6) if isinstance(e, SurveyAnswered)
    ]
    assert len(answered) == 1 and answered[0].follow_up is False


async def test_no_survey_when_the_customer_cannot_be_reached_on_the_channel(
    desk: Desk, settings: Settings
) -> None:
    cid, _, auth = await desk.assigned_conversation()
    async with desk.db.unit_of_work() as session:
        await session.execute(sa.text("DELETE FROM conversation.customer_identities"))
    await _resolve(desk, cid, auth)
    assert await desk.scalar("SELECT count(*) FROM conversation.surveys") == 0


async def test_a_merged_customers_open_survey_is_answered_as_the_target(
    desk: Desk, settings: Settings
) -> None:
    cid, _, auth = await desk.assigned_conversation()
    await _resolve(desk, cid, auth)  # cust-1 is asked
    now = utcnow()
    other = MessageReceived(
        message_id=uuid.uuid4(),
        channel=Channel.API,
        external_id="m-other",
        sender=CustomerIdentity(kind=IdentityKind.API, value="cust-2"),
        text="hello from my other account",
        sent_at=now,
        received_at=now,
    )
    async with desk.db.unit_of_work() as session:
        outbox = Outbox(outbox_table, desk.settings)
        await service.record_inbound(session, outbox, [(EventEnvelope.wrap(other, producer="test"), other)])
    owner = "SELECT customer_id FROM conversation.customer_identities WHERE value = :v"
    source, target = await desk.scalar(owner, v="cust-1"), await desk.scalar(owner, v="cust-2")
    merged = await desk.client.post(
        f"/v1/customers/{target}/merge", json={"source_customer_id": str(source)}, headers=ADMIN
    )
    assert merged.status_code == 201, merged.text

    await _say(desk, "m-score", "5")  # cust-1 is the target's identity now
    answered = "SELECT score, customer_id FROM conversation.surveys WHERE conversation_id = :c"
    async with desk.db.unit_of_work() as session:
        assert (await session.execute(sa.text(answered), {"c": cid})).one() == (5, target)
    assert (await desk.thread(cid))["status"] == "resolved"  # an answer, not a message reopening it
