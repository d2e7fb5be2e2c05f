"""End to end: the four services as separate processes (as `make run` starts them), driven over HTTP,
talking through the real broker and PostgreSQL; then SIGTERM stops every one of them cleanly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from switchboard_devstack.ports import free_port
from switchboard_devstack.stack import SERVICES, ServiceProcesses, service_env
from tests.conftest import ADMIN_KEY, AUTH_SECRET, INGEST_KEY, WEBCHAT_SECRET, Settings
from tests.support import api_message, bearer, eventually

pytestmark = pytest.mark.e2e
ADMIN = bearer(ADMIN_KEY)


@pytest.fixture
def processes(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    env = service_env(
        {
            "SWITCHBOARD_ENVIRONMENT": "test",
            "SWITCHBOARD_DATABASE_URL": settings.database_url,
            "SWITCHBOARD_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "SWITCHBOARD_TOPIC_PREFIX": settings.topic_prefix,
            "SWITCHBOARD_INGEST_API_KEYS": f'["{INGEST_KEY}"]',
            "SWITCHBOARD_ADMIN_API_KEY": ADMIN_KEY,
            "SWITCHBOARD_AUTH_SECRET": AUTH_SECRET,
            "SWITCHBOARD_WEBCHAT_TOKEN_SECRET": WEBCHAT_SECRET,
            "SWITCHBOARD_DB_POOL_SIZE": "5",
        }
    )
    services = ServiceProcesses(
        env, tmp_path_factory.mktemp("logs"), ports={s.name: free_port() for s in SERVICES}
    )
    services.start()
    try:
        yield services
    finally:
        services.stop()


async def test_message_path_across_processes(processes: ServiceProcesses) -> None:
    url = processes.url
    async with httpx.AsyncClient(timeout=10) as client:
        created = await client.post(
            f"{url('router')}/v1/agents",
            json={"name": "Ada", "email": "ada@example.com", "skills": ["billing"], "capacity": 2},
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
        agent = created.json()
        auth = bearer(agent["token"]["access_token"])
        online = await client.put(
            f"{url('router')}/v1/agents/{agent['id']}/status", json={"status": "online"}, headers=auth
        )
        assert online.status_code == 200

        sent = await client.post(
            f"{url('ingest')}/v1/messages",
            json=api_message("e2e-1", "cust-e2e", skills=["billing"]),
            headers=bearer(INGEST_KEY),
        )
        assert sent.status_code == 202, sent.text

        async def assigned() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (
                await client.get(f"{url('conversation')}/v1/conversations", headers=auth)
            ).json()["items"]
            return items or None

        [conversation] = await eventually(assigned, timeout=60, what="assignment across processes")
        assert conversation["assigned_agent_id"] == agent["id"]
        detail = (
            await client.get(f"{url('conversation')}/v1/conversations/{conversation['id']}", headers=auth)
        ).json()
        assert [m["id"] for m in detail["messages"]] == [sent.json()["message_id"]]

        async def counted() -> dict[str, Any] | None:
            body: dict[str, Any] = (await client.get(f"{url('metrics')}/v1/kpis", headers=ADMIN)).json()
            return body if body["volume"]["conversations_assigned"] == 1 else None

        kpis = await eventually(counted, timeout=60, what="metrics")
        assert kpis["volume"]["messages_in"] == 1
        # The ops view, fed by the stack's SWITCHBOARD_METRICS_OPS_SERVICES, sees every process ready.
        ops = (await client.get(f"{url('metrics')}/v1/ops/health", headers=ADMIN)).json()
        assert {s["name"]: s["status"] for s in ops["services"]} == dict.fromkeys(processes.ports, "ok")
        for name in processes.ports:
            ready = await client.get(f"{url(name)}/health/ready")
            assert ready.status_code == 200, (name, ready.text)

    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal: -15 is a clean exit here. The log
    # line written at the end of the lifespan proves consumers, relays and clients were closed in order.
    codes = processes.stop()
    assert all(code in (0, -15) for code in codes.values()), codes
    for spec in SERVICES:
        log = (processes.log_dir / f"{spec.name}.log").read_text()
        assert '"msg": "service stopped"' in log, spec.name
