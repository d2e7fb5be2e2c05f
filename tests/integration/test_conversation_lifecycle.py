# ruff: noqa: F811 - the desk fixture is imported from test_replies and named by the tests
"""The conversation's lifecycle and the agent API around it, on the real database and broker: states set by
the message flow, snoozes, reopening, tags from the catalogue, lists with filters and cursors, the handoff
card and the customer's history; supervisors see everything, agents their own conversations and those
waiting in their teams' queues."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from switchboard_common import topics
from switchboard_common.auth import Role, issue_agent_token
from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    Channel,
    ConversationQueued,
    ConversationReopened,
    ConversationStatusChanged,
    ConversationTagsChanged,
    CustomerIdentity,
    EventEnvelope,
    IdentityKind,
    utcnow,
)
from switchboard_conversation.app import create_app as conversation_app
from switchboard_conversation.conversations import service
from switchboard_conversation.models import outbox_table
from switchboard_router.app import create_app as router_app
from tests.conftest import ADMIN_KEY, Settings
from tests.integration.test_replies import Desk, desk  # noqa: F401 - the fixture
from tests.support import bearer, eventually, read_topic, serve

ADMIN = bearer(ADMIN_KEY)


def token(
    settings: Settings, role: Role = Role.AGENT, teams: tuple[str, ...] = ()
) -> tuple[uuid.UUID, dict[str, str]]:
    agent_id = uuid.uuid4()
    credential, _ = issue_agent_token(settings, agent_id, role, teams)
    return agent_id, bearer(credential)


async def queued(desk: Desk, cid: uuid.UUID, team: str | None, queue: str = "default") -> None:
    """The router's announcement that the conversation waits in ``queue``, served by ``team``."""
    event = ConversationQueued(
        conversation_id=cid, required_skills=[], priority=0, queued_at=utcnow(), queue=queue, team=team
    )
    async with desk.db.unit_of_work() as session:
        await service.record_queued(session, [event])


async def status_of(desk: Desk, cid: uuid.UUID) -> str:
    body = (await desk.client.get(f"/v1/conversations/{cid}", headers=ADMIN)).json()
    return str(body["status"])


async def conversation_events(settings: Settings, count: int) -> list[Any]:
    records = await read_topic(settings, topics.CONVERSATION_EVENTS, count)
    return [EventEnvelope.from_bytes(r.value).parse() for r in records]


async def test_the_message_flow_moves_a_conversation_through_its_states(desk: Desk) -> None:
    cid = await desk.conversation_of(await desk.inbound("m-1"))
    assert await status_of(desk, cid) == "new"
    await queued(desk, cid, team="support")
    assert await status_of(desk, cid) == "queued"
    agent_id, auth = desk.agent()
    await desk.assign(cid, agent_id)
    assert await status_of(desk, cid) == "assigned"
    assert (await desk.reply(cid, auth, "Hello!", "k-1")).status_code == 201
    assert await status_of(desk, cid) == "waiting_on_customer"
    await desk.inbound("m-2")
    assert await status_of(desk, cid) == "waiting_on_agent"
    assert (await desk.reply(cid, auth, "Done.", "k-2")).status_code == 201
    assert await status_of(desk, cid) == "waiting_on_customer"
    resolved = await desk.client.post(f"/v1/conversations/{cid}/resolve", headers=auth)
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"


async def test_a_snooze_ends_at_its_time_or_at_the_customers_next_message(
    desk: Desk, settings: Settings
) -> None:
    cid, agent_id, auth = await desk.assigned_conversation()
    url = f"/v1/conversations/{cid}/snooze"
    past = await desk.client.post(
        url, json={"until": (utcnow() - timedelta(minutes=1)).isoformat()}, headers=auth
    )
    assert past.status_code == 422
    assert past.json()["error"]["code"] == "snooze_in_past"

    until = utcnow() + timedelta(hours=1)
    snoozed = await desk.client.post(url, json={"until": until.isoformat()}, headers=auth)
    assert snoozed.status_code == 200, snoozed.text
    assert snoozed.json()["status"] == "snoozed"
    # The customer writes: the agent's turn again, the snooze is over.
    await desk.inbound("m-2")
    body = (await desk.client.get(f"/v1/conversations/{cid}", headers=auth)).json()
    assert (body["status"], body["snoozed_until"]) == ("waiting_on_agent", None)

    assert (await desk.client.post(url, json={"until": until.isoformat()}, headers=auth)).status_code == 200
    # Not due yet: nothing wakes. Due: it wakes, announced without an agent.
    outbox = Outbox(outbox_table, settings)
    async with desk.db.unit_of_work() as session:
        assert await service.wake_due(session, outbox, utcnow()) == 0
    async with desk.db.unit_of_work() as session:
        assert await service.wake_due(session, outbox, until + timedelta(seconds=1)) == 1
    assert await status_of(desk, cid) == "waiting_on_agent"
    again = await desk.client.post(f"/v1/conversations/{cid}/unsnooze", headers=auth)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_snoozed"

    changes = [e for e in await conversation_events(settings, 5) if isinstance(e, ConversationStatusChanged)]
    assert [(e.status, e.previous_status, e.agent_id) for e in changes] == [
        ("snoozed", "assigned", agent_id),
        ("snoozed", "waiting_on_agent", agent_id),
        ("waiting_on_agent", "snoozed", None),
    ]
    assert changes[0].snoozed_until == until


async def test_only_a_conversation_with_an_agent_can_be_snoozed(desk: Desk, settings: Settings) -> None:
    cid = await desk.conversation_of(await desk.inbound("m-1"))
    _, supervisor = token(settings, Role.SUPERVISOR)
    until = (utcnow() + timedelta(hours=1)).isoformat()
    waiting = await desk.client.post(
        f"/v1/conversations/{cid}/snooze", json={"until": until}, headers=supervisor
    )
    assert waiting.status_code == 409
    assert waiting.json()["error"]["code"] == "not_with_agent"


async def test_agents_see_their_own_and_their_teams_waiting_conversations_supervisors_all(
    desk: Desk, settings: Settings
) -> None:
    support_waiting = await desk.conversation_of(await desk.inbound("m-1", sender="c-1"))
    billing_waiting = await desk.conversation_of(await desk.inbound("m-2", sender="c-2"))
    await queued(desk, support_waiting, team="support")
    await queued(desk, billing_waiting, team="billing")
    _, member = token(settings, teams=("support",))
    _, outsider = token(settings, teams=("sales",))
    _, supervisor = token(settings, Role.SUPERVISOR)

    async def listed(auth: dict[str, str], view: str = "all") -> set[uuid.UUID]:
        response = await desk.client.get("/v1/conversations", params={"view": view}, headers=auth)
        assert response.status_code == 200, response.text
        return {uuid.UUID(c["id"]) for c in response.json()["items"]}

    assert await listed(member, "queue") == {support_waiting}
    assert await listed(outsider) == set()
    assert await listed(supervisor) == {support_waiting, billing_waiting}
    assert (await desk.client.get(f"/v1/conversations/{support_waiting}", headers=member)).status_code == 200
    assert (await desk.client.get(f"/v1/conversations/{billing_waiting}", headers=member)).status_code == 404
    # A team member reads and annotates a waiting conversation, but answers only once it is theirs.
    reply = await desk.reply(support_waiting, member, "hi", "k-1")
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "not_assigned"
    assert (await desk.note(support_waiting, member, "VIP, be quick")).status_code == 201

    # Assigned to someone else, it leaves the team's view.
    someone, _ = desk.agent()
    await desk.assign(support_waiting, someone)
    assert await listed(member) == set()
    assert (await desk.client.get(f"/v1/conversations/{support_waiting}", headers=member)).status_code == 404
    assert await listed(supervisor, "queue") == {billing_waiting}


async def test_tags_come_from_the_catalogue_and_filter_lists(desk: Desk, settings: Settings) -> None:
    cid, agent_id, auth = await desk.assigned_conversation()
    url = f"/v1/conversations/{cid}/tags"
    unknown = await desk.client.post(url, json={"add": ["what:teleportation"]}, headers=auth)
    assert unknown.status_code == 409
    assert unknown.json()["error"]["code"] == "unknown_tag"
    malformed = await desk.client.post(url, json={"add": ["refund"]}, headers=auth)
    assert malformed.status_code == 422

    tagged = await desk.client.post(url, json={"add": ["why:bug", "what:refund"]}, headers=auth)
    assert tagged.status_code == 200, tagged.text
    assert tagged.json()["tags"] == ["what:refund", "why:bug"]
    # The same again changes nothing and announces nothing.
    assert (await desk.client.post(url, json={"add": ["what:refund"]}, headers=auth)).json()["tags"] == [
        "what:refund",
        "why:bug",
    ]
    removed = await desk.client.post(url, json={"remove": ["why:bug"]}, headers=auth)
    assert removed.json()["tags"] == ["what:refund"]

    other = await desk.conversation_of(await desk.inbound("m-9", sender="c-9"))
    await desk.assign(other, agent_id)
    page = await desk.client.get("/v1/conversations", params={"tag": "what:refund"}, headers=auth)
    assert [c["id"] for c in page.json()["items"]] == [str(cid)]

    changes = [e for e in await conversation_events(settings, 3) if isinstance(e, ConversationTagsChanged)]
    assert [(e.tags, e.added, e.removed) for e in changes] == [
        (["what:refund", "why:bug"], ["what:refund", "why:bug"], []),
        (["what:refund"], [], ["why:bug"]),
    ]

    # The catalogue: everyone reads it, supervisors change it.
    names = [t["name"] for t in (await desk.client.get("/v1/tags", headers=auth)).json()]
    assert "what:refund" in names and "why:bug" in names
    new_tag = {"description": "Asked about teleporting parcels"}
    assert (
        await desk.client.put("/v1/tags/what:teleportation", json=new_tag, headers=auth)
    ).status_code == 403
    _, supervisor = token(settings, Role.SUPERVISOR)
    put = await desk.client.put("/v1/tags/what:teleportation", json=new_tag, headers=supervisor)
    assert put.status_code == 200, put.text
    assert (
        await desk.client.post(url, json={"add": ["what:teleportation"]}, headers=auth)
    ).status_code == 200
    assert (await desk.client.delete("/v1/tags/what:teleportation", headers=supervisor)).status_code == 204
    assert (await desk.client.delete("/v1/tags/what:teleportation", headers=supervisor)).status_code == 404


async def test_lists_page_with_cursors_and_filter_by_status_channel_and_priority(desk: Desk) -> None:
    agent_id, auth = desk.agent()
    cids = []
    for i in range(5):
        channel = Channel.SMS if i % 2 else Channel.API
        cid = await desk.conversation_of(
            await desk.inbound(f"m-{i}", channel, sender=f"+1415555010{i}" if i % 2 else f"c-{i}", priority=i)
        )
        await desk.assign(cid, agent_id)
        cids.append(cid)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await desk.client.get("/v1/conversations", params=params, headers=auth)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(c) for c in reversed(cids)]  # latest activity first, each once

    by_channel = await desk.client.get("/v1/conversations", params={"channel": "sms"}, headers=auth)
    assert {c["id"] for c in by_channel.json()["items"]} == {str(cids[1]), str(cids[3])}
    by_priority = await desk.client.get("/v1/conversations", params={"priority": 3}, headers=auth)
    assert {c["id"] for c in by_priority.json()["items"]} == {str(cids[3]), str(cids[4])}
    assert (await desk.reply(cids[0], auth, "hi", "k-1")).status_code == 201
    waiting = await desk.client.get(
        "/v1/conversations", params=[("status", "waiting_on_customer"), ("status", "snoozed")], headers=auth
    )
    assert [c["id"] for c in waiting.json()["items"]] == [str(cids[0])]
    bad = await desk.client.get("/v1/conversations", params={"cursor": "not-a-cursor"}, headers=auth)
    assert bad.status_code == 422
    # Every well-formed cursor is a position: one past every instant comes before all conversations.
    far = await desk.client.get(
        "/v1/conversations", params={"cursor": "9" * 18 + "-" + "f" * 32}, headers=auth
    )
    assert far.status_code == 200 and len(far.json()["items"]) == 5


async def test_an_agent_reopens_a_resolved_conversation_for_its_previous_agent(
    desk: Desk, settings: Settings
) -> None:
    cid, agent_id, auth = await desk.assigned_conversation()
    not_resolved = await desk.client.post(f"/v1/conversations/{cid}/reopen", headers=auth)
    assert not_resolved.status_code == 409
    assert (await desk.client.post(f"/v1/conversations/{cid}/resolve", headers=auth)).status_code == 200
    reopened = await desk.client.post(f"/v1/conversations/{cid}/reopen", headers=auth)
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["status"] == "reopened"
    [event] = [e for e in await conversation_events(settings, 4) if isinstance(e, ConversationReopened)]
    assert (event.conversation_id, event.previous_agent_id) == (cid, agent_id)

    # Resolved again, and the customer has started a new conversation since: that one is where to work.
    _, supervisor = token(settings, Role.SUPERVISOR)
    assert (await desk.client.post(f"/v1/conversations/{cid}/resolve", headers=supervisor)).status_code == 200
    async with desk.db.unit_of_work() as session:
        await session.execute(
            sa.text("UPDATE conversation.conversations SET resolved_at = now() - interval '2 days'")
        )
    await desk.inbound("m-later")
    blocked = await desk.client.post(f"/v1/conversations/{cid}/reopen", headers=supervisor)
    assert blocked.status_code == 409
    assert blocked.json()["error"]["code"] == "customer_has_open_conversation"


async def test_the_handoff_card_tells_the_next_agent_everything(desk: Desk, settings: Settings) -> None:
    phone = "+14155550100"
    first, first_agent, first_auth = await desk.assigned_conversation(
        identities=[CustomerIdentity(kind=IdentityKind.PHONE, value=phone)], display_name="Ada Lovelace"
    )
    assert (await desk.note(first, first_auth, "Prefers SMS; refund promised")).status_code == 201
    assert (await desk.reply(first, first_auth, "Refund on its way", "k-1")).status_code == 201
    assert (
        await desk.client.post(f"/v1/conversations/{first}/resolve", headers=first_auth)
    ).status_code == 200
    async with desk.db.unit_of_work() as session:
        await session.execute(
            sa.text("UPDATE conversation.conversations SET resolved_at = now() - interval '2 days'")
        )
    second = await desk.conversation_of(await desk.inbound("sms-1", Channel.SMS, sender=phone))
    assert second != first
    next_agent, next_auth = desk.agent()
    await desk.assign(second, next_agent)

    card = await desk.client.get(f"/v1/conversations/{second}/handoff", headers=next_auth)
    assert card.status_code == 200, card.text
    body = card.json()
    assert body["conversation"]["id"] == str(second)
    assert body["customer"]["display_name"] == "Ada Lovelace"
    assert body["customer"]["channels"] == ["api", "sms"]
    assert {"kind": "phone", "value": phone} in body["customer"]["identities"]
    assert [c["id"] for c in body["conversations"]] == [str(second), str(first)]
    assert [a["agent_id"] for a in body["previous_agents"]] == [str(next_agent), str(first_agent)]
    assert [n["body"] for n in body["notes"]] == ["Prefers SMS; refund promised"]
    assert [(m["direction"], m["channel"], m["automated"]) for m in body["last_messages"]] == [
        ("inbound", "api", False),
        ("outbound", "api", False),
        ("outbound", "api", True),  # the satisfaction survey asked on the resolution
        ("inbound", "sms", False),
    ]

    customer_id = body["customer"]["id"]
    profile = await desk.client.get(f"/v1/customers/{customer_id}", headers=next_auth)
    assert profile.status_code == 200 and profile.json()["channels"] == ["api", "sms"]
    history = await desk.client.get(
        f"/v1/customers/{customer_id}/conversations", params={"limit": 1}, headers=next_auth
    )
    assert [c["id"] for c in history.json()["items"]] == [str(second)]
    older = await desk.client.get(
        f"/v1/customers/{customer_id}/conversations",
        params={"limit": 1, "cursor": history.json()["next_cursor"]},
        headers=next_auth,
    )
    assert [c["id"] for c in older.json()["items"]] == [str(first)]
    # An agent with nothing of this customer's sees nothing of it.
    _, stranger = desk.agent()
    assert (await desk.client.get(f"/v1/customers/{customer_id}", headers=stranger)).status_code == 404
    assert (await desk.client.get(f"/v1/conversations/{second}/handoff", headers=stranger)).status_code == 404


async def test_the_thread_pages_back_from_the_latest(desk: Desk) -> None:
    cid, _, auth = await desk.assigned_conversation("m-0")
    for i in range(1, 5):
        await desk.inbound(f"m-{i}")
    first = (
        await desk.client.get(f"/v1/conversations/{cid}/messages", params={"limit": 2}, headers=auth)
    ).json()
    assert [m["body"] for m in first["items"]] == ["customer says m-3", "customer says m-4"]
    second = (
        await desk.client.get(
            f"/v1/conversations/{cid}/messages",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=auth,
        )
    ).json()
    assert [m["body"] for m in second["items"]] == ["customer says m-1", "customer says m-2"]


async def test_the_router_names_the_team_and_the_team_sees_the_waiting_conversation(
    settings: Settings,
) -> None:
    """End to end across services: a queue served by a team, nobody online; the router queues the
    conversation and names the team; the conversation service lets that team's agents see it."""
    db = Database.from_settings(settings)
    try:
        async with serve(router_app(settings)) as router, serve(conversation_app(settings)) as client:
            desk = Desk(settings, db, client)
            assert (await router.put("/v1/teams/support", json={}, headers=ADMIN)).status_code == 200
            assert (
                await router.put("/v1/queues/default", json={"team": "support"}, headers=ADMIN)
            ).status_code == 200
            created = await router.post(
                "/v1/agents",
                json={"name": "Ada", "email": "ada@example.com", "teams": ["support"], "role": "agent"},
                headers=ADMIN,
            )
            assert created.status_code == 201, created.text
            member = bearer(created.json()["token"]["access_token"])
            boss = await router.post(
                "/v1/agents",
                json={"name": "Bo", "email": "bo@example.com", "role": "supervisor"},
                headers=ADMIN,
            )
            assert boss.json()["role"] == "supervisor"
            supervisor = bearer(boss.json()["token"]["access_token"])

            # Through the outbox: conversation.opened reaches the router, conversation.queued comes back.
            cid = await desk.conversation_of(await desk.inbound("m-1"))

            async def waiting_for_team() -> Any:
                body = (await client.get(f"/v1/conversations/{cid}", headers=ADMIN)).json()
                return body if body["team"] == "support" else None

            body = await eventually(waiting_for_team, what="the queued conversation to name its team")
            assert (body["status"], body["queue"]) == ("queued", "default")
            assert (await client.get(f"/v1/conversations/{cid}", headers=member)).status_code == 200
            assert (await client.get(f"/v1/conversations/{cid}", headers=supervisor)).status_code == 200
    finally:
        await db.dispose()


async def test_a_transfer_moves_the_conversation_and_the_agents_capacity(settings: Settings) -> None:
    """Across services: an agent hands a conversation to a colleague; that one sends it back to the queue
    for a skill only a third agent has. Each hop frees the giver's capacity and keeps the thread."""
    db = Database.from_settings(settings)
    try:
        async with serve(router_app(settings)) as router, serve(conversation_app(settings)) as client:
            desk = Desk(settings, db, client)

            async def online_agent(name: str, skills: list[str]) -> tuple[str, dict[str, str]]:
                created = await router.post(
                    "/v1/agents",
                    json={"name": name, "email": f"{name}@example.com", "skills": skills, "capacity": 2},
                    headers=ADMIN,
                )
                assert created.status_code == 201, created.text
                agent_id = created.json()["id"]
                status = await router.put(
                    f"/v1/agents/{agent_id}/status", json={"status": "online"}, headers=ADMIN
                )
                assert status.status_code == 200, status.text
                return agent_id, bearer(created.json()["token"]["access_token"])

            ada, ada_auth = await online_agent("ada", [])
            cid = await desk.conversation_of(await desk.inbound("m-1"))

            async def holder() -> str | None:
                body = (await client.get(f"/v1/conversations/{cid}", headers=ADMIN)).json()
                return str(body["assigned_agent_id"]) if body["status"] == "assigned" else None

            assert await eventually(holder, what="the first assignment") == ada
            bo, bo_auth = await online_agent("bo", [])
            cy, _ = await online_agent("cy", ["vip"])

            url = f"/v1/conversations/{cid}/transfer"
            both = await client.post(url, json={"agent_id": bo, "skills": ["vip"]}, headers=ada_auth)
            assert both.status_code == 422
            to_bo = await client.post(
                url, json={"agent_id": bo, "note": "Bo knows this customer"}, headers=ada_auth
            )
            assert to_bo.status_code == 202, to_bo.text
            assert await eventually(lambda: _held_by(client, cid, bo), what="the transfer to Bo") == bo
            # Ada no longer sees it, nor can she move it again.
            assert (await client.post(url, json={"agent_id": cy}, headers=ada_auth)).status_code == 404

            to_vip = await client.post(url, json={"skills": ["vip"]}, headers=bo_auth)
            assert to_vip.status_code == 202, to_vip.text
            assert (
                await eventually(lambda: _held_by(client, cid, cy), what="the transfer to the vip skill")
                == cy
            )

            async def loads() -> dict[str, int]:
                out = {}
                for agent_id in (ada, bo, cy):
                    body = (await router.get(f"/v1/agents/{agent_id}", headers=ADMIN)).json()
                    out[agent_id] = body["active_count"]
                return out

            assert await loads() == {ada: 0, bo: 0, cy: 1}
            thread = (await client.get(f"/v1/conversations/{cid}", headers=ADMIN)).json()
            assert [(m["direction"], m["body"]) for m in thread["messages"]] == [
                ("inbound", "customer says m-1"),
                ("note", "Bo knows this customer"),
            ]
    finally:
        await db.dispose()


async def _held_by(client: Any, cid: uuid.UUID, agent_id: str) -> str | None:
    body = (await client.get(f"/v1/conversations/{cid}", headers=ADMIN)).json()
    held = body["assigned_agent_id"] == agent_id and body["status"] == "assigned"
    return agent_id if held else None
