from __future__ import annotations

import time
import uuid

import jwt
import pytest

from switchboard_common.auth import Role, authenticate, issue_agent_token
from switchboard_common.http.errors import ApiError
from switchboard_common.settings import AgentAuthSettings as Settings

SECRET = "x" * 40


def _settings() -> Settings:
    return Settings(environment="test", admin_api_key="a" * 20, auth_secret=SECRET)


def test_agent_token_authenticates_as_that_agent() -> None:
    settings = _settings()
    agent_id = uuid.uuid4()
    token, ttl = issue_agent_token(settings, agent_id)
    principal = authenticate(settings, token)
    assert principal.role is Role.AGENT and principal.agent_id == agent_id
    assert ttl == settings.agent_token_ttl_seconds
    assert principal.can_act_for(agent_id) and not principal.can_act_for(uuid.uuid4())


def test_admin_key_authenticates_as_admin() -> None:
    principal = authenticate(_settings(), "a" * 20)
    assert principal.is_admin and principal.can_act_for(uuid.uuid4())


@pytest.mark.parametrize(
    "credential",
    [
        "garbage",
        jwt.encode(
            {"iss": "switchboard", "sub": str(uuid.uuid4()), "role": "agent", "exp": time.time() + 60},
            "y" * 40,
        ),
        jwt.encode(
            {"iss": "switchboard", "sub": str(uuid.uuid4()), "role": "admin", "exp": time.time() + 60}, SECRET
        ),
        jwt.encode(
            {"iss": "switchboard", "sub": "not-a-uuid", "role": "agent", "exp": time.time() + 60}, SECRET
        ),
    ],
    ids=["garbage", "wrong-secret", "forged-role", "bad-subject"],
)
def test_bad_credentials_are_refused(credential: str) -> None:
    with pytest.raises(ApiError) as err:
        authenticate(_settings(), credential)
    assert err.value.status == 401


def test_expired_token_is_refused() -> None:
    expired = jwt.encode(
        {"iss": "switchboard", "sub": str(uuid.uuid4()), "role": "agent", "exp": int(time.time()) - 5}, SECRET
    )
    with pytest.raises(ApiError, match="expired"):
        authenticate(_settings(), expired)
