"""Routing rules through the router's API on the real database: CRUD in evaluation order, the dry run
naming the rule and queue a sample message would get, admin-only access, a taken name (409) and a
pattern RE2 refuses (422)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from switchboard_common.auth import issue_agent_token
from switchboard_common.http.app import create_service_app
from switchboard_router.rules.endpoints import router as rules_router
from tests.conftest import ADMIN_KEY, Settings
from tests.support import bearer, serve

ADMIN = bearer(ADMIN_KEY)
RULES = "/v1/routing-rules"


def _app(settings: Settings) -> FastAPI:
    # The router service's HTTP stack (errors, auth, body limits, sessions) serving only the rules: they
    # need the database and nothing of the router's consumers or sweeper.
    return create_service_app("router", settings, [rules_router])


@pytest.fixture
async def router(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(_app(settings)) as client:
        yield client


async def _create(router: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await router.post(RULES, json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _dry_run(router: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await router.post(f"{RULES}/dry-run", json={"channel": "api", **body}, headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_rules_are_created_listed_changed_and_deleted(router: httpx.AsyncClient) -> None:
    vip = await _create(
        router,
        {
            "name": "VIP billing",
            "position": 10,
            "conditions": {"customer": {"vip": "true"}, "keywords": ["invoice", "refund", "invoice"]},
            "outcome": {
                "queue": "vip-billing",
                "required_skills": {"billing": 4},
                # Required wins: billing is left out of the optional skills.
                "optional_skills": ["spanish", "billing"],
                "priority": 8,
                "sla_target_seconds": 120,
            },
        },
    )
    assert vip["enabled"] is True
    assert vip["conditions"] == {
        "channels": [],
        "languages": [],
        "keywords": ["invoice", "refund"],
        "pattern": None,
        "customer": {"vip": "true"},
        "tags_any": [],
    }
    assert (vip["outcome"]["required_skills"], vip["outcome"]["optional_skills"]) == (
        {"billing": 4},
        ["spanish"],
    )
    # No position: after the last rule.
    email = await _create(
        router, {"name": "Email", "conditions": {"channels": ["email"]}, "outcome": {"queue": "email"}}
    )
    assert email["position"] == 11
    first = await _create(router, {"name": "First", "position": 0, "outcome": {"queue": "everything"}})

    listed = await router.get(RULES, headers=ADMIN)
    assert listed.status_code == 200, listed.text
    assert [r["name"] for r in listed.json()] == ["First", "VIP billing", "Email"]

    one = await router.get(f"{RULES}/{vip['id']}", headers=ADMIN)
    assert one.status_code == 200, one.text
    assert one.json() == vip

    patched = await router.patch(
        f"{RULES}/{first['id']}", json={"enabled": False, "position": 99}, headers=ADMIN
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["enabled"], patched.json()["position"], patched.json()["name"]) == (
        False,
        99,
        "First",
    )
    assert patched.json()["outcome"] == first["outcome"]
    assert patched.json()["updated_at"] >= first["updated_at"]
    renamed = await router.patch(
        f"{RULES}/{email['id']}",
        json={"name": "Email, any", "outcome": {"queue": "email", "priority": 2}},
        headers=ADMIN,
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["outcome"] == {
        "queue": "email",
        "required_skills": {},
        "optional_skills": [],
        "priority": 2,
        "sla_target_seconds": None,
    }
    unchanged = await router.patch(f"{RULES}/{vip['id']}", json={}, headers=ADMIN)
    assert unchanged.status_code == 200, unchanged.text
    assert unchanged.json() == vip

    listed = await router.get(RULES, headers=ADMIN)
    assert [r["name"] for r in listed.json()] == ["VIP billing", "Email, any", "First"]

    deleted = await router.delete(f"{RULES}/{vip['id']}", headers=ADMIN)
    assert deleted.status_code == 204, deleted.text
    for method in ("GET", "PATCH", "DELETE"):
        gone = await router.request(
            method, f"{RULES}/{vip['id']}", headers=ADMIN, json={} if method == "PATCH" else None
        )
        assert (gone.status_code, gone.json()["error"]["code"]) == (404, "not_found"), method
    missing = await router.patch(f"{RULES}/{uuid.uuid4()}", json={"enabled": True}, headers=ADMIN)
    assert missing.status_code == 404, missing.text


async def test_the_dry_run_names_the_first_matching_rule_and_its_outcome(router: httpx.AsyncClient) -> None:
    nothing = await _dry_run(router, text="Hello, my invoice is wrong")
    assert nothing == {
        "rule_id": None,
        "rule_name": None,
        "outcome": {
            "queue": "default",
            "required_skills": {},
            "optional_skills": [],
            "priority": 0,
            "sla_target_seconds": None,
        },
        # The dry run reports the language even when no rule asks for it.
        "language": "en",
    }

    vip = await _create(
        router,
        {
            "name": "VIP",
            "position": 1,
            "conditions": {"customer": {"vip": "true"}},
            "outcome": {
                "queue": "vip",
                "required_skills": {"billing": 3},
                "priority": 9,
                "sla_target_seconds": 60,
            },
        },
    )
    spanish = await _create(
        router,
        {
            "name": "Spanish",
            "position": 2,
            "conditions": {"languages": ["es"], "channels": ["api", "webchat"]},
            "outcome": {"queue": "spanish", "required_skills": {"spanish": 2}},
        },
    )
    orders = await _create(
        router,
        {
            "name": "Orders",
            "position": 3,
            "conditions": {"pattern": r"(?i)order\s*#?\d{4,}", "tags_any": ["shop"]},
            "outcome": {"queue": "orders", "optional_skills": ["logistics"]},
        },
    )
    await _create(router, {"name": "Off", "position": 0, "enabled": False, "outcome": {"queue": "never"}})

    as_vip = await _dry_run(router, text="Hola, mi factura está mal", customer={"vip": "true"})
    assert (as_vip["rule_id"], as_vip["rule_name"]) == (vip["id"], "VIP")
    assert as_vip["outcome"] == {
        "queue": "vip",
        "required_skills": {"billing": 3},
        "optional_skills": [],
        "priority": 9,
        "sla_target_seconds": 60,
    }
    assert as_vip["language"] == "es"

    in_spanish = await _dry_run(router, text="Hola, mi factura está mal y necesito ayuda")
    assert (in_spanish["rule_id"], in_spanish["outcome"]["queue"]) == (spanish["id"], "spanish")
    by_sms = await _dry_run(router, channel="sms", text="Hola, mi factura está mal y necesito ayuda")
    assert by_sms["rule_id"] is None

    order = await _dry_run(router, text="Where is ORDER #12345?", tags=["shop"])
    assert (order["rule_id"], order["outcome"]["optional_skills"]) == (orders["id"], ["logistics"])
    untagged = await _dry_run(router, text="Where is ORDER #12345?")
    assert untagged["rule_id"] is None


async def test_only_an_admin_manages_rules(settings: Settings, router: httpx.AsyncClient) -> None:
    token, _ = issue_agent_token(settings, uuid.uuid4())
    as_agent = bearer(token)
    rule = await _create(router, {"name": "Any", "outcome": {"queue": "any"}})
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", RULES, {"name": "Mine", "outcome": {"queue": "mine"}}),
        ("GET", RULES, None),
        ("GET", f"{RULES}/{rule['id']}", None),
        ("PATCH", f"{RULES}/{rule['id']}", {"enabled": False}),
        ("DELETE", f"{RULES}/{rule['id']}", None),
        ("POST", f"{RULES}/dry-run", {"channel": "api", "text": "hi"}),
    ]
    for method, path, body in calls:
        anonymous = await router.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        forbidden = await router.request(method, path, json=body, headers=as_agent)
        assert forbidden.status_code == 403, (method, path, forbidden.text)
    after = await router.get(f"{RULES}/{rule['id']}", headers=ADMIN)
    assert after.json() == rule


async def test_a_taken_name_answers_409_and_changes_nothing(router: httpx.AsyncClient) -> None:
    a = await _create(router, {"name": "A", "outcome": {"queue": "a"}})
    b = await _create(router, {"name": "B", "outcome": {"queue": "b"}})
    again = await router.post(RULES, json={"name": "A", "outcome": {"queue": "other"}}, headers=ADMIN)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "rule_name_taken"), again.text
    renamed = await router.patch(f"{RULES}/{b['id']}", json={"name": "A", "position": 50}, headers=ADMIN)
    assert (renamed.status_code, renamed.json()["error"]["code"]) == (409, "rule_name_taken"), renamed.text
    listed = await router.get(RULES, headers=ADMIN)
    assert listed.json() == [a, b]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"conditions": {"pattern": r"(a+)\1"}}, "pattern", "not a valid RE2 regular expression"),
        ({"conditions": {"pattern": r"(?<=a)b"}}, "pattern", "lookaround"),
        ({"conditions": {"languages": ["xx"]}}, "languages", "not an ISO 639-1"),
        ({"conditions": {"keywords": ["  "]}}, "keywords", None),
        ({"conditions": {"channels": ["pigeon"]}}, "channels", None),
        ({"conditions": {"colour": "red"}}, "colour", None),
        ({"outcome": {"queue": "q", "required_skills": {"billing": 6}}}, "required_skills", None),
        ({"outcome": {"queue": "q", "required_skills": {"billing": True}}}, "required_skills", None),
        ({"outcome": {"queue": "Not A Queue"}}, "queue", None),
        ({"outcome": {"queue": "q", "priority": 11}}, "priority", None),
        ({"position": -1}, "position", None),
    ],
)
async def test_invalid_rules_answer_422_saying_why(
    router: httpx.AsyncClient, body: dict[str, Any], field: str, message: str | None
) -> None:
    full = {"name": "R", "outcome": {"queue": "q"}, **body}
    response = await router.post(RULES, json=full, headers=ADMIN)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(field in d["loc"] for d in error["details"]), error
    if message is not None:
        assert any(message in d["msg"] for d in error["details"]), error
    rule = await _create(router, {"name": "Valid", "outcome": {"queue": "q"}})
    patched = await router.patch(
        f"{RULES}/{rule['id']}", json={k: v for k, v in full.items() if k != "name"}, headers=ADMIN
    )
    assert patched.status_code == 422, patched.text
    assert (await router.get(RULES, headers=ADMIN)).json() == [rule]
