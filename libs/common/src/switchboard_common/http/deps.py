"""The dependencies every endpoint reads like intent with: ``RuntimeDep`` and ``SessionDep``.

All of them are ``async def``: a plain ``def`` dependency costs a worker-thread hop per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.runtime import ServiceRuntime


async def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: commits when the endpoint returns, rolls back when it raises.

    Scoped to the endpoint function, so the commit happens before the response is sent: a client never
    sees a success whose commit failed.
    """
    async with runtime.db.unit_of_work() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
