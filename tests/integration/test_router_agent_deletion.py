"""Deleting an agent, on the router app with the real broker and database: conversations opened and
resolved through conversation.events, the agent deleted through DELETE /v1/agents/{id}, and what follows
read back through the API, routing.events and the router's tables."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from switchboard_common import topics
from switchboard_common.auth import Principal, Role
from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    Channel,
    ConversationOfferTimedOut,
    ConversationOpened,
    ConversationRequeued,
    ConversationResolved,
    EventEnvelope,
    Payload,
    utcnow,
)
from switchboard_common.kafka.producer import EventPublisher
from switchboard_router.agents import service as agents
from switchboard_router.agents.schemas import AgentCreate
from switchboard_router.app import create_app as router_app
from switchboard_router.models import AgentStatus, outbox_table
from switchboard_router.routing import service as routing
from switchboard_router.routing.service import RoutingConfig
from tests.conftest import ADMIN_KEY, Settings
from tests.support import bearer, eventually, read_topic, serve

ADMIN = bearer(ADMIN_KEY)
ADMIN_PRINCIPAL = Principal(Role.ADMIN)


async def _publish(publisher: EventPublisher, payload: Payload, conversation_id: uuid.UUID) -> None:
    await publisher.publish(
        topics.CONVERSATION_EVENTS, str(conversation_id), EventEnvelope.wrap(payload, producer="test")
    )


def _opened(minutes_ago: int) -> ConversationOpened:
    return ConversationOpened(
        conversation_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        required_skills=[],
        priority=0,
        opened_at=utcnow() - timedelta(minutes=minutes_ago),
    )


async def _online_agent(router: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "email": f"{name}@example.com", "capacity": 5, **fields}
    created = await router.post("/v1/agents", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    agent: dict[str, Any] = created.json()
    online = await router.put(f"/v1/agents/{agent['id']}/status", json={"status": "online"}, headers=ADMIN)
    assert online.status_code == 200, online.text
    return agent


async def _task(settings: Settings, conversation_id: uuid.UUID) -> Any:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            query = "SELECT state, agent_id, enqueued_at FROM router.tasks WHERE conversation_id = :id"
            return (await conn.execute(sa.text(query), {"id": conversation_id})).one()
    finally:
        await engine.dispose()


async def test_a_deleted_agents_work_goes_back_at_once_their_token_stops_and_their_history_stays(
    settings: Settings,
) -> None:
    publisher = EventPublisher(settings, client_id="test-agent-deletion")
    await publisher.start()
    try:
        async with serve(router_app(settings)) as router:
            # Ada's team is offered work: she holds one conversation she accepted, one offer she has not
            # answered, and one she resolved earlier (her history).
            team = await router.put("/v1/teams/tier2", json={"auto_accept": False}, headers=ADMIN)
            assert team.status_code == 200, team.text
            ada = await _online_agent(router, "ada", teams=["tier2"])
            ada_auth = bearer(ada["token"]["access_token"])

            async def offered() -> list[dict[str, Any]] | None:
                offers = await router.get("/v1/offers", headers=ada_auth)
                assert offers.status_code == 200, offers.text
                body: list[dict[str, Any]] = offers.json()
                return body or None

            done, held, open_offer = _opened(30), _opened(20), _opened(10)
            await _publish(publisher, done, done.conversation_id)
            await eventually(offered, timeout=30, what="the first offer")
            accepted = await router.post(f"/v1/offers/{done.conversation_id}/accept", headers=ada_auth)
            assert accepted.status_code == 200, accepted.text
            resolved = ConversationResolved(
                conversation_id=done.conversation_id, agent_id=uuid.UUID(ada["id"]), resolved_at=utcnow()
            )
            await _publish(publisher, resolved, done.conversation_id)
            await _publish(publisher, held, held.conversation_id)

            async def offer_of(cid: uuid.UUID) -> bool:
                return any(o["conversation_id"] == str(cid) for o in await offered() or [])

            await eventually(lambda: offer_of(held.conversation_id), what="the second offer")
            accepted = await router.post(f"/v1/offers/{held.conversation_id}/accept", headers=ada_auth)
            assert accepted.status_code == 200, accepted.text
            await _publish(publisher, open_offer, open_offer.conversation_id)
            await eventually(lambda: offer_of(open_offer.conversation_id), what="the third offer")
            assert (await _task(settings, done.conversation_id)).state == "closed"

            # Bo comes online with room; nothing waits, so he takes nothing yet.
            bo = await _online_agent(router, "bo")
            bo_auth = bearer(bo["token"]["access_token"])
            as_agent = await router.delete(f"/v1/agents/{ada['id']}", headers=bo_auth)
            assert as_agent.status_code == 403, as_agent.text

            deleted = await router.delete(f"/v1/agents/{ada['id']}", headers=ADMIN)
            assert deleted.status_code == 204, deleted.text

            # Both go to Bo in the same transaction, with the age they had.
            for event in (held, open_offer):
                task = await _task(settings, event.conversation_id)
                assert (task.state, str(task.agent_id)) == ("assigned", bo["id"])
                assert task.enqueued_at == event.opened_at
            bo_now = (await router.get(f"/v1/agents/{bo['id']}", headers=ADMIN)).json()
            assert bo_now["active_count"] == 2

            # The assignment is announced requeued (reason agent_deleted), the offer as lapsed, and Ada's
            # status as offline.
            records = await read_topic(settings, topics.ROUTING_EVENTS, 9)
            payloads = [EventEnvelope.from_bytes(r.value).parse() for r in records]
            requeued = [p for p in payloads if isinstance(p, ConversationRequeued)]
            assert [(p.conversation_id, str(p.agent_id), p.reason.value) for p in requeued] == [
                (held.conversation_id, ada["id"], "agent_deleted")
            ]
            assert requeued[0].queued_at == held.opened_at
            lapsed = [p for p in payloads if isinstance(p, ConversationOfferTimedOut)]
            assert [(p.conversation_id, str(p.agent_id)) for p in lapsed] == [
                (open_offer.conversation_id, ada["id"])
            ]
            # Ada online, Bo online, Ada offline, Ada deleted.
            events = [
                EventEnvelope.from_bytes(r.value) for r in await read_topic(settings, topics.AGENT_EVENTS, 4)
            ]
            assert [
                (e.type, e.payload.get("status")) for e in events if e.payload["agent_id"] == ada["id"]
            ] == [
                ("agent.status_changed", "online"),
                ("agent.status_changed", "offline"),
                ("agent.deleted", None),
            ]

            # Her token no longer works; she is gone from the API.
            for method, path in (
                ("GET", "/v1/agents/me"),
                ("GET", f"/v1/agents/{ada['id']}"),
                ("POST", f"/v1/agents/{ada['id']}/heartbeat"),
                ("GET", "/v1/offers"),
            ):
                refused = await router.request(method, path, headers=ada_auth)
                assert refused.status_code == 401, (path, refused.text)
                assert refused.json()["error"]["code"] == "unauthorized"
            listed = (await router.get("/v1/agents", headers=ADMIN)).json()
            assert [a["id"] for a in listed] == [bo["id"]]
            assert (await router.get(f"/v1/agents/{ada['id']}", headers=ADMIN)).status_code == 404
            again = await router.put(
                f"/v1/agents/{ada['id']}/status", json={"status": "online"}, headers=ADMIN
            )
            assert again.status_code == 404, again.text
            token = await router.post(f"/v1/agents/{ada['id']}/tokens", headers=ADMIN)
            assert token.status_code == 404, token.text

            # A second delete, and an unknown agent, answer 404.
            twice = await router.delete(f"/v1/agents/{ada['id']}", headers=ADMIN)
            assert twice.status_code == 404, twice.text
            assert twice.json()["error"]["code"] == "not_found"
            unknown = await router.delete(f"/v1/agents/{uuid.uuid4()}", headers=ADMIN)
            assert unknown.status_code == 404, unknown.text

            # Her history stays: the conversation she resolved still names her.
            closed = await _task(settings, done.conversation_id)
            assert (closed.state, str(closed.agent_id)) == ("closed", ada["id"])

            # Her email may be given to someone new.
            reused = await router.post(
                "/v1/agents", json={"name": "Ada II", "email": "ada@example.com"}, headers=ADMIN
            )
            assert reused.status_code == 201, reused.text
    finally:
        await publisher.stop()


async def test_an_assignment_the_deletion_could_not_lock_is_requeued_by_the_sweeper_without_grace(
    settings: Settings,
) -> None:
    """A task another transaction held while its agent was deleted stays assigned to them; the sweeper's
    requeue pass takes it at once (a deleted agent is past the grace), with the deletion's reason."""
    db = Database.from_settings(settings)
    outbox = Outbox(outbox_table, settings)
    try:
        async with db.unit_of_work() as session:
            ada = await agents.create(session, AgentCreate(name="ada", email="ada@example.com", capacity=2))
            await agents.set_status(session, outbox, ADMIN_PRINCIPAL, ada.id, AgentStatus.ONLINE)
        opened = _opened(5)
        envelope = EventEnvelope.wrap(opened, producer="test")
        long_grace = RoutingConfig(sticky_window=timedelta(0), offline_grace=timedelta(hours=1))
        async with db.unit_of_work() as session:
            await routing.on_opened(session, outbox, [(envelope, opened)], long_grace)
        assert (await _task(settings, opened.conversation_id)).state == "assigned"
        # As the deletion leaves it when the task was locked elsewhere: deleted, offline, still assigned.
        async with db.unit_of_work() as session:
            await session.execute(
                sa.text("UPDATE router.agents SET deleted_at = now(), status = 'offline' WHERE id = :id"),
                {"id": ada.id},
            )
        async with db.unit_of_work() as session:
            assert await routing.requeue_abandoned(session, outbox, long_grace) == 1
        task = await _task(settings, opened.conversation_id)
        assert (task.state, task.agent_id, task.enqueued_at) == ("queued", None, opened.opened_at)
        async with db.unit_of_work() as session:
            values = (
                await session.scalars(sa.select(outbox_table.c.value).order_by(outbox_table.c.id))
            ).all()
        requeued = [
            p
            for p in (EventEnvelope.from_bytes(bytes(v)).parse() for v in values)
            if isinstance(p, ConversationRequeued)
        ]
        assert [(p.conversation_id, p.agent_id, p.reason.value) for p in requeued] == [
            (opened.conversation_id, ada.id, "agent_deleted")
        ]
    finally:
        await db.dispose()
