"""Who is calling: agents and supervisors carry a signed token (JWT, HS256), ops the admin API key.

Both arrive as ``Authorization: Bearer <credential>``. Tokens are verified with the shared
``SWITCHBOARD_AUTH_SECRET``, so the router (which issues them) and the conversation service (which checks
them) agree without calling each other.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Container
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, Request

from switchboard_common.http.errors import ApiError
from switchboard_common.settings import AgentAuthSettings

_ISSUER = "switchboard"
_ALGORITHM = "HS256"


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"  # an agent who also sees every conversation
    ADMIN = "admin"


# The roles an agent's token can carry.
AGENT_ROLES = (Role.AGENT, Role.SUPERVISOR)


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    agent_id: uuid.UUID | None = None
    # The agent's teams when the token was issued: they see the conversations waiting in their teams' queues.
    teams: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def sees_all(self) -> bool:
        """Supervisors and the admin credential see every conversation."""
        return self.role in (Role.ADMIN, Role.SUPERVISOR)

    def can_act_for(self, agent_id: uuid.UUID) -> bool:
        return self.is_admin or self.agent_id == agent_id


def issue_agent_token(
    settings: AgentAuthSettings,
    agent_id: uuid.UUID,
    role: Role = Role.AGENT,
    teams: tuple[str, ...] | list[str] = (),
) -> tuple[str, int]:
    """A signed token for ``agent_id`` with their role and teams; returns it with its lifetime in seconds.
    Teams are read when the token is issued: a change shows in the agent's next token."""
    if role not in AGENT_ROLES:
        raise ValueError(f"an agent's token cannot carry the role {role}")
    now = int(time.time())
    ttl = settings.agent_token_ttl_seconds
    claims = {
        "iss": _ISSUER,
        "sub": str(agent_id),
        "role": role.value,
        "teams": list(teams),
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, settings.token_secret, algorithm=_ALGORITHM), ttl


def bearer_credential(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise ApiError(401, "missing bearer credential (Authorization: Bearer ...)")
    return credential.strip()


def matches_secret(given: str, secret: str) -> bool:
    return hmac.compare_digest(given.encode(), secret.encode())


def authenticate(settings: AgentAuthSettings, credential: str) -> Principal:
    if matches_secret(credential, settings.admin_key):
        return Principal(Role.ADMIN)
    try:
        claims = jwt.decode(
            credential,
            settings.token_secret,
            algorithms=[_ALGORITHM],
            issuer=_ISSUER,
            options={"require": ["exp", "sub", "iss"]},
        )
        role = Role(str(claims.get("role")))
        teams = claims.get("teams", [])
        valid_teams = isinstance(teams, list) and all(isinstance(t, str) for t in teams)
        if role not in AGENT_ROLES or not valid_teams:
            raise ApiError(401, "invalid credential")
        return Principal(role, uuid.UUID(claims["sub"]), tuple(teams))
    except jwt.ExpiredSignatureError as exc:
        raise ApiError(401, "token expired") from exc
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise ApiError(401, "invalid credential") from exc


async def current_principal(request: Request) -> Principal:
    """The caller. A service that learns of deleted agents sets ``app.state.revoked_agents`` (a container
    of agent ids): their tokens, still validly signed until they expire, are refused too."""
    settings: AgentAuthSettings = request.app.state.settings
    principal = authenticate(settings, bearer_credential(request))
    revoked: Container[uuid.UUID] | None = getattr(request.app.state, "revoked_agents", None)
    if principal.agent_id is not None and revoked is not None and principal.agent_id in revoked:
        raise ApiError(401, "the agent of this token was deleted")
    return principal


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise ApiError(403, "admin credential required")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
