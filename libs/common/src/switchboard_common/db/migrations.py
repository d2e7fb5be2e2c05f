"""Alembic, driven from code: each service keeps its migrations in its package and its version table in
its own schema, so services migrate independently."""

from __future__ import annotations

import asyncio
from importlib.resources import files

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(package: str, schema: str, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files(package) / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["schema"] = schema
    return cfg


def upgrade(package: str, schema: str, database_url: str, revision: str = "head") -> None:
    """Apply the service's migrations (blocking; run it outside any event loop)."""
    command.upgrade(alembic_config(package, schema, database_url), revision)


def run_env(target_metadata: sa.MetaData) -> None:
    """The body of every service's ``migrations/env.py``."""
    config = context.config
    schema: str = config.attributes["schema"]
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None

    def do_run(connection: Connection) -> None:
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=False,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=sa.pool.NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(do_run)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(run_async())
