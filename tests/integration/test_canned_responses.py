"""Canned responses on the conversation service (real database): the admin credential writes them, any
agent reads them, and an agent renders one for a conversation it may see, filled with that
conversation's customer, channel and agent; templates that escape the sandbox are refused when saved."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from switchboard_common.auth import issue_agent_token
from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    Channel,
    ConversationAssigned,
    CustomerIdentity,
    EventEnvelope,
    IdentityKind,
    MessageReceived,
    utcnow,
)
from switchboard_conversation.app import create_app as conversation_app
from switchboard_conversation.conversations import service
from switchboard_conversation.models import outbox_table
from tests.conftest import ADMIN_KEY, Settings
from tests.support import bearer, serve

ADMIN = bearer(ADMIN_KEY)
REFUND = {
    "shortcut": "/refund",
    "title": "Refund on its way",
    "body": "Hi {{ customer.first_name }}, your refund is on its way to {{ customer.email }} "
    "({{ channel }}, agent {{ agent.id }}).{% if customer.phone %} We may text {{ customer.phone }}.{% endif %}",
}


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(conversation_app(settings)) as served:
        yield served


def _agent(settings: Settings) -> tuple[uuid.UUID, dict[str, str]]:
    agent_id = uuid.uuid4()
    token, _ = issue_agent_token(settings, agent_id)
    return agent_id, bearer(token)


async def _assigned_conversation(settings: Settings, agent_id: uuid.UUID) -> uuid.UUID:
    """A customer (Ada Lovelace, with an email) writes by SMS; the conversation is assigned to the agent."""
    db = Database.from_settings(settings)
    now = utcnow()
    message = MessageReceived(
        message_id=uuid.uuid4(),
        channel=Channel.SMS,
        external_id=f"sms-{uuid.uuid4()}",
        sender=CustomerIdentity(kind=IdentityKind.PHONE, value="+14155550100"),
        identities=[CustomerIdentity(kind=IdentityKind.EMAIL, value="ada@example.com")],
        display_name="Ada Lovelace",
        text="Where is my refund?",
        sent_at=now,
        received_at=now,
    )
    try:
        async with db.unit_of_work() as session:
            outbox = Outbox(outbox_table, settings)
            await service.record_inbound(
                session, outbox, [(EventEnvelope.wrap(message, producer="test"), message)]
            )
        async with db.unit_of_work() as session:
            [cid] = (
                await session.execute(
                    sa.text("SELECT conversation_id FROM conversation.messages WHERE id = :id"),
                    {"id": message.message_id},
                )
            ).scalars()
            await service.record_assignments(
                session,
                [
                    ConversationAssigned(
                        conversation_id=cid, agent_id=agent_id, queued_at=now, assigned_at=now
                    )
                ],
            )
    finally:
        await db.dispose()
    assert isinstance(cid, uuid.UUID)
    return cid


async def test_admin_writes_agents_read(client: httpx.AsyncClient, settings: Settings) -> None:
    _, agent = _agent(settings)
    refused = await client.post("/v1/canned-responses", json=REFUND, headers=agent)
    assert refused.status_code == 403, refused.text

    created = await client.post("/v1/canned-responses", json=REFUND, headers=ADMIN)
    assert created.status_code == 201, created.text
    canned: dict[str, Any] = created.json()
    assert {k: canned[k] for k in REFUND} == REFUND
    path = f"/v1/canned-responses/{canned['id']}"

    listed = await client.get("/v1/canned-responses", headers=agent)
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()] == [canned["id"]]
    assert (await client.get(path, headers=agent)).json() == canned

    taken = await client.post("/v1/canned-responses", json={**REFUND, "title": "Again"}, headers=ADMIN)
    assert taken.status_code == 409, taken.text
    assert taken.json()["error"]["code"] == "shortcut_taken"

    changed_body = {**REFUND, "shortcut": "/refund-sent", "body": "Sent, {{ customer.display_name }}."}
    assert (await client.put(path, json=changed_body, headers=agent)).status_code == 403
    changed = await client.put(path, json=changed_body, headers=ADMIN)
    assert changed.status_code == 200, changed.text
    assert changed.json()["shortcut"] == "/refund-sent"
    assert changed.json()["body"] == "Sent, {{ customer.display_name }}."

    other = await client.post("/v1/canned-responses", json={**REFUND, "shortcut": "/other"}, headers=ADMIN)
    assert other.status_code == 201
    clash = await client.put(path, json={**changed_body, "shortcut": "/other"}, headers=ADMIN)
    assert clash.status_code == 409, clash.text
    assert clash.json()["error"]["code"] == "shortcut_taken"

    assert (await client.delete(path, headers=agent)).status_code == 403
    assert (await client.delete(path, headers=ADMIN)).status_code == 204
    assert (await client.get(path, headers=agent)).status_code == 404
    assert (await client.delete(path, headers=ADMIN)).status_code == 404
    assert (await client.put(path, json=changed_body, headers=ADMIN)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{% if %}",
        "{{ customer.frist_name }}",
    ],
)
async def test_a_template_escaping_the_sandbox_or_broken_is_refused_on_save(
    client: httpx.AsyncClient, body: str
) -> None:
    response = await client.post("/v1/canned-responses", json={**REFUND, "body": body}, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert (await client.get("/v1/canned-responses", headers=ADMIN)).json() == []


async def test_render_fills_the_conversation_for_an_agent_who_may_see_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    agent_id, agent = _agent(settings)
    cid = await _assigned_conversation(settings, agent_id)
    canned = (await client.post("/v1/canned-responses", json=REFUND, headers=ADMIN)).json()

    rendered = await client.post(
        f"/v1/conversations/{cid}/canned-responses/{canned['id']}/render", headers=agent
    )
    assert rendered.status_code == 200, rendered.text
    assert rendered.json() == {
        "canned_response_id": canned["id"],
        "conversation_id": str(cid),
        "text": f"Hi Ada, your refund is on its way to ada@example.com (sms, agent {agent_id}). "
        "We may text +14155550100.",
    }

    # Another agent does not see the conversation: 404, as for a missing one.
    _, stranger = _agent(settings)
    hidden = await client.post(
        f"/v1/conversations/{cid}/canned-responses/{canned['id']}/render", headers=stranger
    )
    assert hidden.status_code == 404, hidden.text
    missing = await client.post(
        f"/v1/conversations/{cid}/canned-responses/{uuid.uuid4()}/render", headers=agent
    )
    assert missing.status_code == 404, missing.text
