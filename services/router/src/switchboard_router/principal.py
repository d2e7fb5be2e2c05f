"""The caller, as the router accepts them: an agent's token also needs its agent not to be deleted."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from switchboard_common.auth import CurrentPrincipal, Principal
from switchboard_common.http.deps import SessionDep
from switchboard_common.http.errors import ApiError
from switchboard_router.agents import repository


async def live_principal(principal: CurrentPrincipal, session: SessionDep) -> Principal:
    """The caller, whose agent (for an agent's token) is not deleted: a token stays validly signed until it
    expires, so the router also looks the agent up (one indexed read) to refuse a deleted agent's."""
    if principal.agent_id is not None and not await repository.exists(session, principal.agent_id):
        raise ApiError(401, "the agent of this token was deleted")
    return principal


LivePrincipal = Annotated[Principal, Depends(live_principal)]
