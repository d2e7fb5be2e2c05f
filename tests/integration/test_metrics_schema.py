"""The metrics migrations go down and up again (test_schemas.py checks the models match them)."""

from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from switchboard_common.db.migrations import alembic_config, upgrade
from switchboard_devstack.stack import create_database
from switchboard_metrics.models import SCHEMA
from tests.conftest import Settings

PACKAGE = "switchboard_metrics"
HEAD = {
    "alembic_version",
    "event_counts",
    "conversation_facts",
    "message_facts",
    "agent_status_changes",
    "conversation_reopens",
    "conversation_handoffs",
    "kpi_cells",
    "survey_answers",
    "delivery_facts",
    "conversation_retags",
    "routing_occurrences",
}


async def _scalars(url: str, sql: str, **params: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.scalars(sa.text(sql), {"s": SCHEMA, **params}))
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    return await _scalars(url, "SELECT tablename FROM pg_tables WHERE schemaname = :s")


async def _columns(url: str, table: str) -> set[str]:
    return await _scalars(
        url,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = :s AND table_name = :t",
        t=table,
    )


async def test_migrations_downgrade_and_upgrade_again(settings: Settings) -> None:
    name = f"metrics_migrations_{uuid.uuid4().hex[:8]}"
    url = await create_database(settings.database_url, name)
    try:
        await asyncio.to_thread(upgrade, PACKAGE, SCHEMA, url, "0001")
        assert await _tables(url) == {
            "alembic_version",
            "processed_events",
            "event_counts",
            "conversation_facts",
        }
        await asyncio.to_thread(upgrade, PACKAGE, SCHEMA, url, "0002")
        assert await _tables(url) == {
            "alembic_version",
            "partition_offsets",
            "event_counts",
            "conversation_facts",
        }
        await asyncio.to_thread(upgrade, PACKAGE, SCHEMA, url)
        assert await _tables(url) == HEAD
        assert "queued" in await _columns(url, "conversation_facts")
        await asyncio.to_thread(command.downgrade, alembic_config(PACKAGE, SCHEMA, url), "0002")
        assert "partition_offsets" in await _tables(url)
        assert "message_facts" not in await _tables(url)
        assert "queued" not in await _columns(url, "conversation_facts")
        await asyncio.to_thread(command.downgrade, alembic_config(PACKAGE, SCHEMA, url), "0001")
        assert "processed_events" in await _tables(url)
        await asyncio.to_thread(command.downgrade, alembic_config(PACKAGE, SCHEMA, url), "base")
        assert await _tables(url) == {"alembic_version"}
        await asyncio.to_thread(upgrade, PACKAGE, SCHEMA, url)
        assert await _tables(url) == HEAD
    finally:
        server = create_async_engine(settings.database_url, isolation_level="AUTOCOMMIT")
        try:
            async with server.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            await server.dispose()
