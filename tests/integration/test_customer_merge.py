"""Linking and merging customers through HTTP with the four services running on the real database and
broker, agents holding real tokens: the merge is published as ``customer.merged`` and the router frees
the capacity the closed conversation held."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard_common import topics
from switchboard_common.events import CustomerMerged, EventEnvelope
from tests.conftest import ADMIN_KEY, Settings
from tests.integration.test_message_path import System, running
from tests.support import bearer, eventually, read_topic

ADMIN = bearer(ADMIN_KEY)


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running(settings) as system:
        yield system


async def customer_of(system: System, agent: dict[str, Any], customer: str) -> tuple[str, str]:
    """(customer id, conversation id) of the conversation ``agent`` holds for the API customer."""
    for item in await system.conversations_of(agent):
        detail = (
            await system.conversation.get(f"/v1/conversations/{item['id']}", headers=agent["auth"])
        ).json()
        if {"kind": "api", "value": customer} in detail["customer"]["identities"]:
            return str(detail["customer"]["id"]), str(item["id"])
    raise AssertionError(f"{customer} is not among the agent's conversations")


async def test_an_agent_links_and_merges_and_the_router_frees_the_closed_conversation(
    system: System, settings: Settings
) -> None:
    ada = await system.agent("ada@example.com", ["billing"], capacity=2)
    bob = await system.agent("bob@example.com", ["sales"])
    await system.send("m-1", "cust-s", skills=["billing"])
    await system.send("m-2", "cust-t", skills=["billing"])
    await eventually(lambda: _holding(system, ada, 2), what="both conversations assigned")
    await system.send("m-3", "cust-w", skills=["billing"])  # ada is full: it waits
    source, closed = await customer_of(system, ada, "cust-s")
    target, kept = await customer_of(system, ada, "cust-t")

    # Linking: normalized like ingest's; known again is a no-op; another customer's names the owner.
    link = {"kind": "email", "value": "Ann@Example.COM"}
    created = await system.conversation.post(
        f"/v1/customers/{target}/identities", json=link, headers=ada["auth"]
    )
    assert (created.status_code, created.json()["value"]) == (201, "ann@example.com")
    again = await system.conversation.post(
        f"/v1/customers/{target}/identities", json=link, headers=ada["auth"]
    )
    assert again.status_code == 200
    owned = await system.conversation.post(
        f"/v1/customers/{source}/identities", json=link, headers=ada["auth"]
    )
    assert owned.status_code == 409
    assert owned.json()["error"]["code"] == "identity_owned_by_other_customer"
    assert owned.json()["error"]["details"] == {"customer_id": target}
    bad_phone = {"kind": "phone", "value": "((((("}
    refused = await system.conversation.post(
        f"/v1/customers/{target}/identities", json=bad_phone, headers=ada["auth"]
    )
    assert refused.status_code == 422

    # Someone who reads neither customer's conversations is told nothing.
    body = {"source_customer_id": source}
    hidden = await system.conversation.post(f"/v1/customers/{target}/merge", json=body, headers=bob["auth"])
    assert hidden.status_code == 404

    merged = await system.conversation.post(f"/v1/customers/{target}/merge", json=body, headers=ada["auth"])
    assert merged.status_code == 201, merged.text
    audit = merged.json()
    assert (audit["closed_conversation_id"], audit["kept_conversation_id"]) == (closed, kept)
    assert audit["merged_by_agent_id"] == ada["id"]
    repeated = await system.conversation.post(f"/v1/customers/{target}/merge", json=body, headers=ada["auth"])
    assert (repeated.status_code, repeated.json()["id"]) == (200, audit["id"])
    back = await system.conversation.post(
        f"/v1/customers/{source}/merge", json={"source_customer_id": target}, headers=ada["auth"]
    )
    assert (back.status_code, back.json()["error"]["code"]) == (409, "merge_cycle")
    itself = await system.conversation.post(
        f"/v1/customers/{target}/merge", json={"source_customer_id": target}, headers=ADMIN
    )
    assert itself.status_code == 422

    # The kept conversation holds both threads; the closed one is resolved.
    thread = (await system.conversation.get(f"/v1/conversations/{kept}", headers=ada["auth"])).json()
    assert len(thread["messages"]) == 2
    assert (await system.conversation.get(f"/v1/conversations/{closed}", headers=ADMIN)).json()[
        "status"
    ] == "resolved"

    # Published once, keyed by the target; the router frees the closed conversation's unit, and the
    # waiting conversation takes it.
    records = [
        r
        for r in await read_topic(settings, topics.CONVERSATION_EVENTS, 5)
        if r.headers and dict(r.headers).get("event_type") == b"customer.merged"
    ]
    [record] = records
    assert record.key.decode() == target
    event = EventEnvelope.from_bytes(record.value).parse()
    assert isinstance(event, CustomerMerged)
    assert str(event.closed_conversation_id) == closed
    waiting_served = await eventually(
        lambda: _conversation_with(system, ada, "cust-w"), what="the waiting conversation assigned to ada"
    )
    assert waiting_served["assigned_agent_id"] == ada["id"]


async def _holding(system: System, agent: dict[str, Any], count: int) -> bool:
    items = await system.conversations_of(agent)
    return sum(1 for i in items if i["status"] == "assigned") == count


async def _conversation_with(system: System, agent: dict[str, Any], customer: str) -> dict[str, Any] | None:
    for item in await system.conversations_of(agent):
        detail = (
            await system.conversation.get(f"/v1/conversations/{item['id']}", headers=agent["auth"])
        ).json()
        if {"kind": "api", "value": customer} in detail["customer"]["identities"] and item[
            "status"
        ] == "assigned":
            return item
    return None
