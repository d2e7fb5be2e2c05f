"""The caller, as the router accepts them: an agent's token also needs its agent not to be deleted."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from switchboard_common.auth import (
    CurrentPrincipal,
    Principal,
    authenticate,
    bearer_credential,
    matches_secret,
)
from switchboard_common.http.deps import SessionDep
from switchboard_common.http.errors import ApiError
from switchboard_router.agents import repository
from switchboard_router.settings import RouterSettings


async def live_principal(principal: CurrentPrincipal, session: SessionDep) -> Principal:
    """The caller, whose agent (for an agent's token) is not deleted: a token stays validly signed until it
    expires, so the router also looks the agent up (one indexed read) to refuse a deleted agent's."""
    if principal.agent_id is not None and not await repository.exists(session, principal.agent_id):
        raise ApiError(401, "the agent of this token was deleted")
    return principal


LivePrincipal = Annotated[Principal, Depends(live_principal)]


async def estimate_reader(request: Request) -> None:
    """Another service's key (``router_service_keys``), or the admin key: a service key opens nothing
    but the queue estimates, so a leaked one tells the expected wait and no more."""
    settings: RouterSettings = request.app.state.settings
    credential = bearer_credential(request)
    if any(matches_secret(credential, key.get_secret_value()) for key in settings.router_service_keys):
        return
    if not authenticate(settings, credential).is_admin:
        raise ApiError(403, "a service key or the admin credential is required")


EstimateReader = Depends(estimate_reader)
