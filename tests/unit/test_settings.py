from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchboard_common.settings import DEV_ADMIN_API_KEY, CommonSettings
from switchboard_ingest.settings import IngestSettings
from switchboard_router.settings import RouterSettings

STRONG = "s" * 40


def test_development_fills_documented_secrets() -> None:
    assert RouterSettings(environment="development").admin_key == DEV_ADMIN_API_KEY
    ingest = IngestSettings(environment="development")
    assert [k.get_secret_value() for k in ingest.ingest_api_keys] == ["dev-ingest-key"]


def test_production_requires_every_secret_of_the_service() -> None:
    with pytest.raises(ValidationError, match="SWITCHBOARD_ADMIN_API_KEY"):
        RouterSettings(environment="production", auth_secret=STRONG)
    with pytest.raises(ValidationError, match="SWITCHBOARD_INGEST_API_KEYS"):
        IngestSettings(environment="production")


def test_a_service_asks_only_for_its_own_secrets() -> None:
    ingest = IngestSettings(environment="production", ingest_api_keys=["k" * 20], webchat_token_secret=STRONG)
    assert not hasattr(ingest, "admin_api_key")
    router = RouterSettings(environment="production", admin_api_key="a" * 20, auth_secret=STRONG)
    assert not hasattr(router, "ingest_api_keys")


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(ValidationError, match="development secrets"):
        RouterSettings(environment="production", admin_api_key=DEV_ADMIN_API_KEY, auth_secret=STRONG)
    with pytest.raises(ValidationError, match="development secrets"):
        IngestSettings(
            environment="production", ingest_api_keys=["dev-ingest-key"], webchat_token_secret=STRONG
        )


def test_production_refuses_short_auth_secret() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        RouterSettings(environment="production", admin_api_key="a" * 20, auth_secret="short")


def test_topic_prefix_applies_to_physical_names() -> None:
    assert CommonSettings(topic_prefix="staging.").topic("messages.inbound") == "staging.messages.inbound"
