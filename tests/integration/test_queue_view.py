"""The queue view with positions and estimated waits, on the router app with the real broker and database:
conversations opened and resolved through conversation.events, read through /v1/queue; what an arrival
can expect, through /v1/queues/{name}/estimate with a service key."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from switchboard_common import topics
from switchboard_common.events import (
    Channel,
    ConversationOpened,
    ConversationResolved,
    EventEnvelope,
    Payload,
    utcnow,
)
from switchboard_common.kafka.producer import EventPublisher
from switchboard_router.app import create_app as router_app
from tests.conftest import ADMIN_KEY, Settings
from tests.support import bearer, eventually, serve

ADMIN = bearer(ADMIN_KEY)
PRIOR = 300
SERVICE_KEY = "ingest-service-key-0123456789"


async def _publish(publisher: EventPublisher, payload: Payload, conversation_id: uuid.UUID) -> None:
    envelope = EventEnvelope.wrap(payload, producer="test")
    await publisher.publish(topics.CONVERSATION_EVENTS, str(conversation_id), envelope)


def _opened(at: datetime, skills: list[str], priority: int = 0, text: str = "") -> ConversationOpened:
    return ConversationOpened(
        conversation_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        required_skills=skills,
        priority=priority,
        opened_at=at,
        text=text,
    )


async def _queue(router: httpx.AsyncClient) -> dict[str, Any]:
    response = await router.get("/v1/queue", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _agent(router: httpx.AsyncClient, agent_id: str) -> dict[str, Any]:
    response = await router.get(f"/v1/agents/{agent_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_positions_and_estimates_follow_the_queue_and_the_measured_handle_times(
    settings: Settings,
) -> None:
    settings = settings.model_copy(
        update={
            "router_default_handle_time_s": float(PRIOR),
            "router_rules_refresh_s": 0.0,
            "router_service_keys": [SecretStr(SERVICE_KEY)],
        }
    )
    publisher = EventPublisher(settings, client_id="test-queue-view")
    await publisher.start()
    try:
        async with serve(router_app(settings)) as router:
            # Customers who want to buy wait in the queue "sales"; everyone else in "default".
            rule = await router.post(
                "/v1/routing-rules",
                json={"name": "sales", "conditions": {"keywords": ["buy"]}, "outcome": {"queue": "sales"}},
                headers=ADMIN,
            )
            assert rule.status_code == 201, rule.text
            created = await router.post(
                "/v1/agents",
                json={"name": "Ada", "email": "ada@example.com", "skills": ["billing"], "capacity": 1},
                headers=ADMIN,
            )
            assert created.status_code == 201, created.text
            agent = created.json()
            online = await router.put(
                f"/v1/agents/{agent['id']}/status", json={"status": "online"}, headers=ADMIN
            )
            assert online.status_code == 200, online.text

            t0 = utcnow() - timedelta(minutes=10)
            first = _opened(t0, ["billing"])
            await _publish(publisher, first, first.conversation_id)

            async def busy() -> dict[str, Any] | None:
                state = await _agent(router, agent["id"])
                return state if state["active_count"] == 1 else None

            await eventually(busy, timeout=30, what="the first conversation assigned")

            # The agent's one slot is taken: these wait. The newest billing one has a higher priority and
            # goes first; one needing no skill waits in the same queue, behind them (positions count the
            # queue, not the skills); the one who wants to buy is in the queue "sales", which no online
            # agent can serve.
            a = _opened(t0 + timedelta(minutes=1), ["billing"])
            b = _opened(t0 + timedelta(minutes=2), ["billing"])
            c = _opened(t0 + timedelta(minutes=3), ["billing"], priority=1)
            d = _opened(t0 + timedelta(minutes=4), ["sales"], text="I want to buy a plan")
            e = _opened(t0 + timedelta(minutes=5), [])
            for event in (a, b, c, d, e):
                await _publish(publisher, event, event.conversation_id)

            async def waiting(n: int) -> dict[str, Any] | None:
                view = await _queue(router)
                return view if view["length"] == n and len(view["items"]) == n else None

            view = await eventually(lambda: waiting(5), what="five conversations waiting")
            entries = {i["conversation_id"]: i for i in view["items"]}
            default = [entries[str(x.conversation_id)] for x in (c, a, b, e)]
            assert {x["queue"] for x in default} == {"default"}
            assert [x["position"] for x in default] == [1, 2, 3, 4]
            assert [x["estimated_wait_seconds"] for x in default] == [PRIOR, 2 * PRIOR, 3 * PRIOR, 4 * PRIOR]
            assert {x["estimate_basis"] for x in entries.values()} == {"prior"}
            sales = entries[str(d.conversation_id)]
            assert (sales["queue"], sales["position"], sales["estimated_wait_seconds"]) == ("sales", 1, None)

            # What an arrival can expect, as ingest's voice greeting asks with its service key: behind the
            # four of "default"; behind the one of "sales", which nobody online serves; first in an empty
            # queue, served by whoever takes a conversation without requirement (Ada, busy).
            arrivals = {
                name: (await router.get(f"/v1/queues/{name}/estimate", headers=bearer(SERVICE_KEY))).json()
                for name in ("default", "sales", "voice")
            }
            assert arrivals["default"] == {
                "queue": "default",
                "waiting": 4,
                "position": 5,
                "estimated_wait_seconds": 5 * PRIOR,
                "estimate_basis": "prior",
            }
            assert [arrivals["sales"][k] for k in ("waiting", "position", "estimated_wait_seconds")] == [
                1,
                2,
                None,
            ]
            assert [arrivals["voice"][k] for k in ("waiting", "position", "estimated_wait_seconds")] == [
                0,
                1,
                PRIOR,
            ]
            for credential, status in (
                (ADMIN, 200),
                (bearer(agent["token"]["access_token"]), 403),  # an agent's token reads no estimate
                (bearer("not-a-service-key"), 401),
                ({}, 401),
            ):
                response = await router.get("/v1/queues/default/estimate", headers=credential)
                assert response.status_code == status, (credential, response.text)
            # The service key opens nothing else.
            assert (await router.get("/v1/queue", headers=bearer(SERVICE_KEY))).status_code == 401

            # One conversation's view, as the conversation service's acknowledgement reads it, agrees.
            for event in (c, a, b, d, e):
                one = await router.get(f"/v1/queue/{event.conversation_id}", headers=ADMIN)
                assert one.status_code == 200, one.text
                assert one.json() == {
                    **entries[str(event.conversation_id)],
                    "waiting_seconds": one.json()["waiting_seconds"],
                }
            assigned = await router.get(f"/v1/queue/{first.conversation_id}", headers=ADMIN)
            assert assigned.status_code == 404, assigned.text
            unknown = await router.get(f"/v1/queue/{uuid.uuid4()}", headers=ADMIN)
            assert unknown.status_code == 404, unknown.text
            as_agent = await router.get(
                f"/v1/queue/{a.conversation_id}", headers=bearer(agent["token"]["access_token"])
            )
            assert as_agent.status_code == 403, as_agent.text

            # The first conversation is resolved after 120 s with the agent (its resolution time is set
            # from the assignment, never from this test's clock): the agent takes the head, c.
            assigned_at = datetime.fromisoformat((await _agent(router, agent["id"]))["last_assigned_at"])
            resolved = ConversationResolved(
                conversation_id=first.conversation_id,
                agent_id=uuid.UUID(agent["id"]),
                resolved_at=assigned_at + timedelta(seconds=120),
            )
            await _publish(publisher, resolved, first.conversation_id)
            view = await eventually(lambda: waiting(4), what="the head assigned after the resolution")
            entries = {i["conversation_id"]: i for i in view["items"]}
            assert str(c.conversation_id) not in entries
            default = [entries[str(x.conversation_id)] for x in (a, b, e)]
            assert [x["position"] for x in default] == [1, 2, 3]
            assert [x["estimated_wait_seconds"] for x in default] == [120, 240, 360]
            # The sales queue has no measurement of its own: the overall one.
            assert {x["estimate_basis"] for x in entries.values()} == {"measured"}

            # c is resolved after 60 s: the handle time is the mean of the two, 90 s; a is assigned.
            assigned_at = datetime.fromisoformat((await _agent(router, agent["id"]))["last_assigned_at"])
            resolved = ConversationResolved(
                conversation_id=c.conversation_id,
                agent_id=uuid.UUID(agent["id"]),
                resolved_at=assigned_at + timedelta(seconds=60),
            )
            await _publish(publisher, resolved, c.conversation_id)
            view = await eventually(lambda: waiting(3), what="the next head assigned")
            entries = {i["conversation_id"]: i for i in view["items"]}
            rest = [entries[str(x.conversation_id)] for x in (b, e)]
            assert [(x["position"], x["estimated_wait_seconds"], x["estimate_basis"]) for x in rest] == [
                (1, 90, "measured"),
                (2, 180, "measured"),
            ]
            one = (await router.get(f"/v1/queue/{e.conversation_id}", headers=ADMIN)).json()
            assert (one["position"], one["estimated_wait_seconds"]) == (2, 180)
            still = (await router.get(f"/v1/queue/{d.conversation_id}", headers=ADMIN)).json()
            assert (still["queue"], still["position"], still["estimated_wait_seconds"]) == ("sales", 1, None)
    finally:
        await publisher.stop()
