"""Agents for a driven system (the bench, the fault suite): created and set online through the router's
API, as an admin would."""

from __future__ import annotations

import httpx

from switchboard_common.settings import DEV_ADMIN_API_KEY

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_API_KEY}"}
# Driven agents send no heartbeats (no desktop runs behind them): a driven system turns the router's
# presence timeout off, or they would go offline mid-run.
DRIVEN_ROUTER_ENV = {"SWITCHBOARD_ROUTER_PRESENCE_TIMEOUT_S": "0"}


async def create_online_agent(
    client: httpx.AsyncClient, router_url: str, *, name: str, email: str, capacity: int
) -> str:
    """An online agent with the ``general`` skill (the one driven messages ask for; catalogued first, which
    changes nothing when it is); returns its id."""
    catalogued = await client.put(
        f"{router_url}/v1/skills/general", json={"description": "driven messages"}, headers=ADMIN
    )
    catalogued.raise_for_status()
    created = await client.post(
        f"{router_url}/v1/agents",
        json={"name": name, "email": email, "skills": ["general"], "capacity": capacity},
        headers=ADMIN,
    )
    created.raise_for_status()
    agent_id: str = created.json()["id"]
    online = await client.put(
        f"{router_url}/v1/agents/{agent_id}/status", json={"status": "online"}, headers=ADMIN
    )
    online.raise_for_status()
    return agent_id
