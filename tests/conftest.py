"""The test harness: one real PostgreSQL and one real broker for the whole session (embedded unless
SWITCHBOARD_DATABASE_URL / SWITCHBOARD_KAFKA_BOOTSTRAP name external ones), migrations applied once,
every test on fresh topics (a unique prefix) and empty tables."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from switchboard_common.db.database import Database
from switchboard_common.kafka.admin import ensure_topics
from switchboard_conversation.settings import ConversationSettings
from switchboard_devstack.ports import free_port
from switchboard_devstack.stack import SERVICES, Infrastructure, create_database, prepare
from switchboard_ingest.settings import IngestSettings
from switchboard_metrics.settings import MetricsSettings
from switchboard_router.settings import RouterSettings

ADMIN_KEY = "test-admin-key-0123456789"
INGEST_KEY = "test-ingest-key-0123456789"
AUTH_SECRET = "test-auth-secret-0123456789-0123456789"
WEBCHAT_SECRET = "test-webchat-secret-0123456789-0123456789"


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infrastructure]:
    workdir: Path = tmp_path_factory.mktemp("stack")
    stack = Infrastructure(workdir, database="switchboard_test", pg_port=free_port(), broker_port=free_port())
    stack.start()
    if "postgresql" not in stack.embedded:
        # Never touch the tables of an external database: test in a database of our own on that server.
        stack.database_url = asyncio.run(
            create_database(stack.database_url, f"switchboard_test_{os.getpid()}")
        )
    try:
        prepare(make_settings(stack, prefix="migrations."))
        yield stack
    finally:
        stack.stop()


class Settings(IngestSettings, ConversationSettings, RouterSettings, MetricsSettings):
    """Every service's settings in one object, so one test can run several services on the same values."""

    DEV_SECRETS: ClassVar[dict[str, Any]] = {
        **IngestSettings.DEV_SECRETS,
        **ConversationSettings.DEV_SECRETS,
    }


def make_settings(infra: Infrastructure, prefix: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "database_url": infra.database_url,
        "kafka_bootstrap": infra.kafka_bootstrap,
        "topic_prefix": prefix,
        "topic_partitions": 3,
        "ingest_api_keys": [INGEST_KEY],
        "admin_api_key": ADMIN_KEY,
        "auth_secret": AUTH_SECRET,
        "webchat_token_secret": WEBCHAT_SECRET,
        "consumer_retry_backoff_ms": 10,
        "outbox_poll_interval_ms": 50,
        "router_sweep_interval_ms": 200,
        "db_pool_size": 5,
        # Apps started in the test process must not freeze the runner's heap (see gc_tuning).
        "gc_young_threshold": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


# Reference data a migration seeds (the tags catalogue): kept between tests, which restore what they change.
SEEDED = ("conversation.tags",)


async def truncate_all(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT schemaname || '.' || tablename FROM pg_tables "
                    "WHERE schemaname = ANY(:schemas) AND tablename <> 'alembic_version' "
                    "AND schemaname || '.' || tablename <> ALL(:seeded)"
                ),
                {"schemas": [s.name for s in SERVICES], "seeded": list(SEEDED)},
            )
            tables = ", ".join(r[0] for r in rows)
            if tables:
                await conn.execute(sa.text(f"TRUNCATE {tables} CASCADE"))
    finally:
        await engine.dispose()


# The router's skills catalogue every test starts with: the names tests give agents and routing rules
# (the property tests' extreme shapes included). Agents and rules may name only catalogued skills; a test
# about the catalogue itself adds or removes others through the API.
CATALOGUE_SKILLS = (
    "billing",
    "sales",
    "general",
    "es",
    "spanish",
    "logistics",
    "vip",
    "0",
    "a.b-c_d",
    "z" * 64,
)


async def seed_skills(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("INSERT INTO router.skills (name) SELECT unnest(CAST(:names AS text[]))"),
                {"names": list(CATALOGUE_SKILLS)},
            )
    finally:
        await engine.dispose()


@pytest.fixture
async def settings(infra: Infrastructure) -> AsyncIterator[Settings]:
    """Settings for one test: its own topics, every service table emptied, the test skills catalogued."""
    test_settings = make_settings(infra, prefix=f"t{uuid.uuid4().hex[:10]}.")
    await truncate_all(test_settings.database_url)
    await seed_skills(test_settings.database_url)
    await ensure_topics(test_settings)
    yield test_settings


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    """The services' database, on this test's settings."""
    database = Database.from_settings(settings)
    yield database
    await database.dispose()


@pytest.fixture
async def session(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction that is rolled back after the test: service-level tests call
    service functions directly on the real database and leave nothing behind."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            db_session = AsyncSession(bind=conn, expire_on_commit=False, autoflush=False)
            try:
                yield db_session
            finally:
                await db_session.close()
                await transaction.rollback()
    finally:
        await engine.dispose()
