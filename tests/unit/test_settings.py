from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchboard_common.settings import DEV_ADMIN_API_KEY, Settings

STRONG = "s" * 40


def test_development_fills_documented_secrets() -> None:
    settings = Settings(environment="development")
    assert settings.admin_key == DEV_ADMIN_API_KEY
    assert [k.get_secret_value() for k in settings.ingest_api_keys] == ["dev-ingest-key"]


def test_production_requires_every_secret() -> None:
    with pytest.raises(ValidationError, match="SWITCHBOARD_ADMIN_API_KEY"):
        Settings(environment="production", ingest_api_keys=["k" * 20], auth_secret=STRONG)


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(ValidationError, match="development secrets"):
        Settings(
            environment="production",
            ingest_api_keys=["k" * 20],
            admin_api_key=DEV_ADMIN_API_KEY,
            auth_secret=STRONG,
        )


def test_production_refuses_short_auth_secret() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(
            environment="production", ingest_api_keys=["k" * 20], admin_api_key="a" * 20, auth_secret="short"
        )


def test_topic_prefix_applies_to_physical_names() -> None:
    assert Settings(topic_prefix="staging.").topic("messages.inbound") == "staging.messages.inbound"
