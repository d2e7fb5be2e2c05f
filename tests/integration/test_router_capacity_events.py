"""A change of an agent's capacity alone is announced (``agent.capacity_changed``), so metrics and other
consumers know it without waiting for a change of status; a PATCH that leaves the capacity as it was
announces nothing. On the router app with the real broker and database."""

from __future__ import annotations

from switchboard_common import topics
from switchboard_common.events import AgentCapacityChanged, AgentStatusChanged, EventEnvelope
from switchboard_router.app import create_app as router_app
from tests.conftest import ADMIN_KEY, Settings
from tests.support import bearer, read_topic, serve

ADMIN = bearer(ADMIN_KEY)


async def test_a_new_capacity_alone_is_announced_with_the_agents_status(settings: Settings) -> None:
    async with serve(router_app(settings)) as router:
        body = {"name": "Ada", "email": "ada@example.com", "capacity": 5}
        created = await router.post("/v1/agents", json=body, headers=ADMIN)
        assert created.status_code == 201, created.text
        agent = created.json()["id"]
        path = f"/v1/agents/{agent}"
        online = await router.put(f"{path}/status", json={"status": "online"}, headers=ADMIN)
        assert online.status_code == 200, online.text

        for change in ({"capacity": 8}, {"capacity": 8}, {"languages": ["en"]}):
            patched = await router.patch(path, json=change, headers=ADMIN)
            assert patched.status_code == 200, patched.text
        assert patched.json()["capacity"] == 8
        away = await router.put(f"{path}/status", json={"status": "away"}, headers=ADMIN)
        assert away.status_code == 200, away.text

        # One partition per agent keeps the order: the two PATCHes that changed no capacity told nothing
        # between the resize and going away.
        records = await read_topic(settings, topics.AGENT_EVENTS, 3)
        told = [EventEnvelope.from_bytes(r.value).parse() for r in records]
        assert [p.event_type for p in told] == [
            AgentStatusChanged.event_type,
            AgentCapacityChanged.event_type,
            AgentStatusChanged.event_type,
        ]
        resized = told[1]
        assert isinstance(resized, AgentCapacityChanged)
        assert (str(resized.agent_id), resized.previous_capacity, resized.capacity, resized.status.value) == (
            agent,
            5,
            8,
            "online",
        )
        assert isinstance(told[2], AgentStatusChanged) and told[2].capacity == 8
