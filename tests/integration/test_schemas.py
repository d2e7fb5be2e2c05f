"""Every service's models are exactly what its migrations build: Alembic finds nothing to autogenerate."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from switchboard_devstack.stack import SERVICES
from tests.conftest import Settings


def _diff(connection: Connection, schema: str, metadata: sa.MetaData) -> list[Any]:
    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema":
            return name == schema
        return not (type_ == "table" and name == "alembic_version")

    context = MigrationContext.configure(
        connection, opts={"include_schemas": True, "include_name": include_name, "compare_type": True}
    )
    return list(compare_metadata(context, metadata))


@pytest.mark.parametrize("service", [s.name for s in SERVICES])
async def test_models_match_the_migrations(settings: Settings, service: str) -> None:
    models = importlib.import_module(f"switchboard_{service}.models")
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff, models.SCHEMA, models.Base.metadata)
    finally:
        await engine.dispose()
    assert diff == []
