"""Per-agent capacity through the metrics consumer on the real broker and database: the capacity an agent
status change carries (the router's) is the agent's as of the latest change that told one, whatever the
order the changes arrive in and however often; the agent row shows the conversations held now against it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from switchboard_common.events import (
    AgentCapacityChanged,
    AgentStatus,
    AgentStatusChanged,
    utcnow,
)
from switchboard_metrics.app import create_app as metrics_app
from tests.conftest import ADMIN_KEY, Settings
from tests.integration.test_metrics_counting import (
    Event,
    assigned,
    keyed,
    opened,
    publish,
    report_once_counted,
)
from tests.support import bearer, serve

ADMIN = bearer(ADMIN_KEY)


def _status(agent: uuid.UUID, status: AgentStatus, at: datetime, capacity: int | None) -> Event:
    change = AgentStatusChanged(
        agent_id=agent, status=status, previous_status=AgentStatus.OFFLINE, changed_at=at, capacity=capacity
    )
    return keyed(agent, change)


async def test_agents_show_what_they_hold_against_their_latest_told_capacity(settings: Settings) -> None:
    t0 = utcnow() - timedelta(minutes=5)
    agent, untold = uuid.uuid4(), uuid.uuid4()
    online = _status(agent, AgentStatus.ONLINE, t0, 3)
    held = [uuid.uuid4(), uuid.uuid4()]
    events = [
        online,
        # Later, without a capacity (a producer before it was carried, or the router marking silence).
        _status(agent, AgentStatus.AWAY, t0 + timedelta(minutes=2), None),
        # Earlier, arriving last, with another capacity: not the latest told.
        _status(agent, AgentStatus.ONLINE, t0 - timedelta(minutes=5), 8),
        online,  # redelivered
        _status(untold, AgentStatus.ONLINE, t0, None),
    ]
    for n, cid in enumerate(held):
        events += [keyed(cid, opened(cid, t0)), keyed(cid, assigned(cid, agent, t0 + timedelta(seconds=n)))]

    async with serve(metrics_app(settings)) as client:
        await publish(settings, events)

        await report_once_counted(client, {"agent.status_changed": 4, "conversation.assigned": 2})
        body = (await client.get("/v1/kpis", params={"window": "hour"}, headers=ADMIN)).json()
        rows = {r["agent_id"]: r for r in body["agents"]}
        row = rows[str(agent)]
        assert (row["status"], row["active_conversations"], row["capacity"]) == ("away", 2, 3)
        assert row["capacity_used"] == round(2 / 3, 4)
        assert (rows[str(untold)]["capacity"], rows[str(untold)]["capacity_used"]) == (None, None)
        # The agent filter narrows to one row, with its capacity.
        only = (await client.get("/v1/kpis", params={"agent_id": str(agent)}, headers=ADMIN)).json()
        assert [(r["agent_id"], r["capacity"]) for r in only["agents"]] == [(str(agent), 3)]


async def test_a_capacity_change_without_a_status_change_is_the_agents_capacity(settings: Settings) -> None:
    t0 = utcnow() - timedelta(minutes=5)
    agent = uuid.uuid4()

    def resized(at: datetime, capacity: int, previous: int) -> Event:
        change = AgentCapacityChanged(
            agent_id=agent,
            capacity=capacity,
            previous_capacity=previous,
            status=AgentStatus.ONLINE,
            changed_at=at,
        )
        return keyed(agent, change)

    events = [
        _status(agent, AgentStatus.ONLINE, t0, 3),
        resized(t0 + timedelta(minutes=2), 6, 3),
        resized(t0 + timedelta(minutes=1), 4, 3),  # earlier, arriving last: not the latest told
        resized(t0 + timedelta(minutes=2), 6, 3),  # redelivered
    ]
    async with serve(metrics_app(settings)) as client:
        await publish(settings, events)

        counted = await report_once_counted(client, {"agent.status_changed": 1, "agent.capacity_changed": 2})
        assert counted["events_by_type"]["agent.capacity_changed"] == 2
        body = (await client.get("/v1/kpis", params={"window": "hour"}, headers=ADMIN)).json()
        [row] = [r for r in body["agents"] if r["agent_id"] == str(agent)]
        # The capacity is the latest told; the status is still the one it changed to, online all along.
        assert (row["status"], row["capacity"]) == ("online", 6)
        assert set(row["status_seconds"]) == {"online"}
