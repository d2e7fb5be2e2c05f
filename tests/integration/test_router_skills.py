"""The skills catalogue on the router app and the real database: /v1/skills read and written, agents and
routing rules held to it, deletion refused while a skill is in use, and the migration that seeds it from
the skills agents and rules already name."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from switchboard_common.db.migrations import upgrade
from switchboard_devstack.stack import create_database
from switchboard_router.app import create_app as router_app
from tests.conftest import ADMIN_KEY, CATALOGUE_SKILLS, Settings
from tests.support import bearer, serve

ADMIN = bearer(ADMIN_KEY)


@pytest.fixture
async def router(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(router_app(settings)) as client:
        yield client


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _unknown(response: httpx.Response, skills: list[str]) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("unknown_skill", {"skills": skills})
    for skill in skills:
        assert skill in error["message"]


async def test_skills_are_catalogued_read_with_their_holders_and_written_by_the_admin_only(
    router: httpx.AsyncClient,
) -> None:
    listed = await _ok(await router.get("/v1/skills", headers=ADMIN))
    assert [s["name"] for s in listed] == sorted(CATALOGUE_SKILLS)
    assert {s["agents"] for s in listed} == {0}

    refunds = await _ok(
        await router.put("/v1/skills/refunds", json={"description": "Money back"}, headers=ADMIN)
    )
    assert (refunds["name"], refunds["description"], refunds["agents"]) == ("refunds", "Money back", 0)
    changed = await _ok(
        await router.put("/v1/skills/refunds", json={"description": "Refunds"}, headers=ADMIN)
    )
    assert (changed["description"], changed["created_at"]) == ("Refunds", refunds["created_at"])

    ada = await _ok(
        await router.post(
            "/v1/agents",
            json={
                "name": "Ada",
                "email": "ada@example.com",
                "skills": ["refunds", {"skill": "billing", "level": 5}],
            },
            headers=ADMIN,
        ),
        201,
    )
    one = await _ok(await router.get("/v1/skills/refunds", headers=ADMIN))
    assert one["agents"] == 1
    counts = {s["name"]: s["agents"] for s in await _ok(await router.get("/v1/skills", headers=ADMIN))}
    assert (counts["refunds"], counts["billing"], counts["sales"]) == (1, 1, 0)

    # Agents read the catalogue; only the admin credential changes it.
    ada_auth = bearer(ada["token"]["access_token"])
    assert len(await _ok(await router.get("/v1/skills", headers=ada_auth))) == len(CATALOGUE_SKILLS) + 1
    assert (await router.put("/v1/skills/x", json={}, headers=ada_auth)).status_code == 403
    assert (await router.delete("/v1/skills/sales", headers=ada_auth)).status_code == 403
    assert (await router.get("/v1/skills")).status_code == 401

    bad = await router.put("/v1/skills/Not A Skill", json={}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error", bad.text
    assert (await router.get("/v1/skills/astrology", headers=ADMIN)).status_code == 404
    assert (await router.delete("/v1/skills/astrology", headers=ADMIN)).status_code == 404


async def test_agents_and_rules_must_name_catalogued_skills(router: httpx.AsyncClient) -> None:
    body = {
        "name": "Ada",
        "email": "ada@example.com",
        "skills": ["billing", "astrology", {"skill": "tarot", "level": 2}],
    }
    _unknown(await router.post("/v1/agents", json=body, headers=ADMIN), ["astrology", "tarot"])
    assert await _ok(await router.get("/v1/agents", headers=ADMIN)) == []

    ada = await _ok(await router.post("/v1/agents", json={**body, "skills": ["billing"]}, headers=ADMIN), 201)
    path = f"/v1/agents/{ada['id']}"
    _unknown(await router.patch(path, json={"skills": ["sales", "astrology"]}, headers=ADMIN), ["astrology"])
    assert (await _ok(await router.get(path, headers=ADMIN)))["skills"] == ["billing"]
    changed = await _ok(await router.patch(path, json={"skills": ["sales"]}, headers=ADMIN))
    assert changed["skills"] == ["sales"]

    rule = {"name": "Stars", "outcome": {"queue": "stars", "required_skills": {"astrology": 2}}}
    _unknown(await router.post("/v1/routing-rules", json=rule, headers=ADMIN), ["astrology"])
    optional = {"name": "Stars", "outcome": {"queue": "stars", "optional_skills": ["tarot", "billing"]}}
    _unknown(await router.post("/v1/routing-rules", json=optional, headers=ADMIN), ["tarot"])
    created = await _ok(
        await router.post(
            "/v1/routing-rules",
            json={**rule, "outcome": {"queue": "stars", "required_skills": {"billing": 2}}},
            headers=ADMIN,
        ),
        201,
    )
    _unknown(
        await router.patch(
            f"/v1/routing-rules/{created['id']}", json={"outcome": rule["outcome"]}, headers=ADMIN
        ),
        ["astrology"],
    )

    # Once catalogued, the same requests are accepted.
    await _ok(await router.put("/v1/skills/astrology", json={}, headers=ADMIN))
    await _ok(
        await router.patch(
            f"/v1/routing-rules/{created['id']}", json={"outcome": rule["outcome"]}, headers=ADMIN
        )
    )
    await _ok(await router.patch(path, json={"skills": ["astrology"]}, headers=ADMIN))


async def test_a_skill_in_use_cannot_be_deleted(router: httpx.AsyncClient) -> None:
    ada = await _ok(
        await router.post(
            "/v1/agents",
            json={"name": "Ada", "email": "ada@example.com", "skills": ["billing"]},
            headers=ADMIN,
        ),
        201,
    )
    rule = await _ok(
        await router.post(
            "/v1/routing-rules",
            json={"name": "Spanish", "outcome": {"queue": "es", "optional_skills": ["spanish"]}},
            headers=ADMIN,
        ),
        201,
    )

    held = await router.delete("/v1/skills/billing", headers=ADMIN)
    assert held.status_code == 409, held.text
    assert held.json()["error"]["code"] == "skill_in_use"
    assert held.json()["error"]["details"] == {"agents": 1, "rules": []}
    used = await router.delete("/v1/skills/spanish", headers=ADMIN)
    assert used.status_code == 409, used.text
    assert used.json()["error"]["details"] == {"agents": 0, "rules": ["Spanish"]}

    # A deleted agent holds nothing; a deleted rule uses nothing.
    await _ok(await router.delete(f"/v1/agents/{ada['id']}", headers=ADMIN), 204)
    await _ok(await router.delete(f"/v1/routing-rules/{rule['id']}", headers=ADMIN), 204)
    for name in ("billing", "spanish"):
        await _ok(await router.delete(f"/v1/skills/{name}", headers=ADMIN), 204)
        assert (await router.get(f"/v1/skills/{name}", headers=ADMIN)).status_code == 404
        assert (await router.delete(f"/v1/skills/{name}", headers=ADMIN)).status_code == 404
    _unknown(
        await router.post(
            "/v1/agents", json={"name": "Bo", "email": "bo@example.com", "skills": ["billing"]}, headers=ADMIN
        ),
        ["billing"],
    )


async def test_the_migration_seeds_the_catalogue_from_agents_and_rules(settings: Settings) -> None:
    """On a database of its own: the router's migrations up to 0011, skills named by an agent and a rule,
    then 0012."""
    url = await create_database(settings.database_url, f"skills_seed_{uuid.uuid4().hex[:8]}")
    package = "switchboard_router"
    await asyncio.to_thread(upgrade, package, "router", url, "0011")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO router.agents (id, name, email, skills, proficiency, capacity, capacities, "
                    "status, active_count) VALUES (:id, 'Ada', 'ada@example.com', ARRAY['billing', 'sales'], "
                    """'{"billing": 3, "sales": 3}', 3, '{3,3,3,3}', 'offline', 0)"""
                ),
                {"id": uuid.uuid4()},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO router.routing_rules (id, name, position, enabled, conditions, outcome) "
                    "VALUES (:id, 'r', 0, true, '{}', "
                    """'{"queue": "q", "required_skills": {"billing": 2, "fraud": 4}, "optional_skills": ["vip"],"""
                    """ "priority": 0, "sla_target_seconds": null}')"""
                ),
                {"id": uuid.uuid4()},
            )
        await asyncio.to_thread(upgrade, package, "router", url, "head")
        async with engine.connect() as conn:
            names = (await conn.scalars(sa.text("SELECT name FROM router.skills ORDER BY name"))).all()
        assert names == ["billing", "fraud", "sales", "vip"]
    finally:
        await engine.dispose()


async def test_a_name_that_is_no_skill_name_is_a_422(router: httpx.AsyncClient) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = await router.request(
            method, "/v1/skills/bad%00name", headers=ADMIN, json={"description": ""}
        )
        assert response.status_code == 422, (method, response.text)
    for path in ("/v1/teams/bad%00name", "/v1/queues/bad%00name"):
        assert (await router.delete(path, headers=ADMIN)).status_code == 422, path
