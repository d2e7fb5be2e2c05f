"""The visitor API's rate limits on the real database: per session token and per client address, shared by
every replica (two apps on one database), answered 429 with Retry-After, one counting statement per request,
and a window that has ended opening a new one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from switchboard_common.db.database import Database
from switchboard_ingest.app import create_app as ingest_app
from tests.conftest import Settings
from tests.integration.test_webchat import webchat_settings
from tests.support import bearer

WINDOW_S = 3600  # far longer than a test: no window ends by itself while one runs


def limited(settings: Settings, **limits: int) -> Settings:
    return webchat_settings(
        settings,
        webchat_rate_window_s=WINDOW_S,
        webchat_session_rate_window_s=WINDOW_S,
        # Two replicas are two members of the dispatcher's group: when one leaves, the other rejoins, and
        # a rejoin the broker holds open waits up to this (the rebalance timeout), 5 minutes by default.
        consumer_max_poll_interval_ms=10_000,
        **limits,
    )


class Replicas:
    """Ingest apps on one database, each reachable from any client address."""

    def __init__(self, stack: AsyncExitStack, apps: list[FastAPI]) -> None:
        self._stack = stack
        self.apps = apps

    async def client(self, replica: int = 0, address: str = "198.51.100.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.apps[replica], client=(address, 40000))
        return await self._stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://t")
        )


@pytest.fixture
async def replicas(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Replicas]:
    limits: dict[str, int] = dict(getattr(request, "param", {}))
    # A second replica only where the test is about sharing: two ingest apps are two members of the
    # dispatcher's consumer group, and their leaving one after the other makes the broker rebalance.
    count = limits.pop("replicas", 1)
    configured = limited(settings, **limits)
    async with AsyncExitStack() as stack:
        apps = [ingest_app(configured) for _ in range(count)]
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield Replicas(stack, apps)


async def new_session(client: httpx.AsyncClient) -> str:
    response = await client.post("/webchat/sessions", json={})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def post(client: httpx.AsyncClient, token: str, client_id: str | None = None) -> httpx.Response:
    body = {"client_message_id": client_id or uuid.uuid4().hex, "text": "hello"}
    return await client.post("/webchat/messages", json=body, headers=bearer(token))


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= WINDOW_S


async def receipts(db: Database) -> int:
    async with db.unit_of_work() as session:
        return int(await session.scalar(sa.text("SELECT count(*) FROM ingest.receipts")) or 0)


@pytest.mark.parametrize(
    "replicas",
    [{"replicas": 2, "webchat_session_messages_per_window": 3, "webchat_address_messages_per_window": 1000}],
    indirect=True,
)
async def test_a_session_over_its_message_limit_is_refused_on_every_replica(
    replicas: Replicas, db: Database
) -> None:
    one, two = await replicas.client(0), await replicas.client(1)
    token = await new_session(one)
    assert [(await post(c, token)).status_code for c in (one, two, one)] == [202, 202, 202]

    refused = await post(two, token)
    assert_rate_limited(refused)
    assert_rate_limited(await post(one, token))
    assert await receipts(db) == 3  # the refused messages were not recorded

    # The limit is this session's: another visitor at the same address still posts.
    assert (await post(two, await new_session(two))).status_code == 202


@pytest.mark.parametrize(
    "replicas",
    [{"webchat_address_sessions_per_window": 2, "webchat_session_messages_per_window": 1000}],
    indirect=True,
)
async def test_an_address_may_start_only_so_many_sessions(replicas: Replicas) -> None:
    client = await replicas.client(0, "203.0.113.5")
    await new_session(client)
    await new_session(client)
    assert_rate_limited(await client.post("/webchat/sessions", json={}))
    # Counted before the identity proof: guessing a user_hash is limited too.
    guess = await client.post("/webchat/sessions", json={"user_id": "u-1", "user_hash": "00" * 32})
    assert_rate_limited(guess)

    elsewhere = await replicas.client(0, "203.0.113.6")
    assert (await elsewhere.post("/webchat/sessions", json={})).status_code == 201


@pytest.mark.parametrize(
    "replicas",
    [{"webchat_address_messages_per_window": 3, "webchat_session_messages_per_window": 1000}],
    indirect=True,
)
async def test_an_address_may_post_only_so_many_messages_across_its_sessions(replicas: Replicas) -> None:
    client = await replicas.client(0, "192.0.2.10")
    first, second = await new_session(client), await new_session(client)
    assert [(await post(client, t)).status_code for t in (first, second, second)] == [202, 202, 202]
    assert_rate_limited(await post(client, first))

    other = await replicas.client(0, "192.0.2.11")
    assert (await post(other, await new_session(other))).status_code == 202


@contextmanager
def counting_statements(needle: str) -> Iterator[list[str]]:
    """Every statement sent by any engine of this process whose text contains ``needle``."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if needle in statement:
            seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", before)


@pytest.mark.parametrize("replicas", [{"webchat_session_messages_per_window": 2}], indirect=True)
async def test_one_statement_counts_a_request_and_an_ended_window_opens_anew(
    replicas: Replicas, db: Database
) -> None:
    client = await replicas.client(0)
    token = await new_session(client)
    with counting_statements("webchat_rate_counters") as statements:
        assert (await post(client, token)).status_code == 202
    assert len(statements) == 1  # the session's and the address's counters in one statement
    assert (await post(client, token)).status_code == 202
    assert_rate_limited(await post(client, token))

    # Time passing, played by the database: every window has ended.
    async with db.unit_of_work() as session:
        await session.execute(
            sa.text("UPDATE ingest.webchat_rate_counters SET window_end = now() - interval '1 s'")
        )
    assert (await post(client, token)).status_code == 202
    async with db.unit_of_work() as session:
        rows = (await session.execute(sa.text("SELECT key, hits FROM ingest.webchat_rate_counters"))).all()
    assert {key.split(":")[0]: hits for key, hits in rows} == {
        "session-messages": 1,
        "address-messages": 1,
        "address-sessions": 1,
    }
