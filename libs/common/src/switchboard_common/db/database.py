"""The database handle each process owns, and the unit of work every change goes through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from switchboard_common.instrumentation import instrument_engine
from switchboard_common.settings import CommonSettings

_AFTER_COMMIT = "switchboard.after_commit"


def create_engine(settings: CommonSettings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # No pre-ping: it costs a round trip per transaction. A dropped connection fails its transaction
        # instead: HTTP answers 503, consumers retry the batch.
        pool_recycle=1800,
        # Last in, first out: the hot path keeps reusing the few connections it needs, warm, and the pool's
        # other connections (side jobs, bursts) stay idle. First in, first out rotated every transaction
        # through every pooled connection: with ingest's pool at 10 instead of 7, ack p50 at 200/s went
        # from 27-41 to 55-79 ms (docs/performance.md).
        pool_use_lifo=True,
        pool_timeout=settings.db_connect_timeout_ms / 1000,
        connect_args={"timeout": settings.db_connect_timeout_ms / 1000},
    )
    instrument_engine(engine)
    return engine


# SQLSTATE classes that say "not now" rather than "not this": connection exception, transaction rollback
# (serialization failure, deadlock), insufficient resources (too many connections), operator intervention
# (shutting down, starting up).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")
# Undefined table or column: code deployed ahead of its migration (a rolling deploy whose migration job
# lags). Not the record's fault: consumers must wait (and report it) rather than dead-letter acknowledged
# messages, and HTTP answers 503 until the schema catches up.
_SCHEMA_NOT_READY_SQLSTATES = ("42P01", "42703")


def database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached, dropped the connection or refused for now: a retry can succeed.

    The one classification every caller uses: HTTP answers 503, the consumer runner rewinds and retries
    instead of dead-lettering, ingest's group commit refuses the batch with 503.
    """
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc, "sqlstate", None)
    if isinstance(sqlstate, str) and (
        sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES) or sqlstate in _SCHEMA_NOT_READY_SQLSTATES
    ):
        return True
    # asyncpg's refused or reset connection surfaces as a plain OSError (ConnectionRefusedError, ...).
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError | OSError)


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's unit of work has committed (never on rollback)."""
    callbacks: list[Callable[[], None]] = session.info.setdefault(_AFTER_COMMIT, [])
    if callback not in callbacks:
        callbacks.append(callback)


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> Database:
        return cls(create_engine(settings))

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """One transaction: commits when the block exits normally, rolls back when it raises.

        Side effects registered with :func:`after_commit` run only after the commit succeeded.
        """
        async with self._sessions() as session:
            async with session.begin():
                yield session
            for callback in session.info.pop(_AFTER_COMMIT, []):
                callback()

    async def check(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
