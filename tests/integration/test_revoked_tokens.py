"""A deleted agent's token, still validly signed, is refused by the conversation service too: the router
announces the deletion (agent.deleted), conversation records it and every replica reloads the set of
deleted agents; the four services run on the real broker and database."""

from __future__ import annotations

import pytest

from switchboard_common import topics
from switchboard_common.events import AgentDeleted, EventEnvelope
from tests.conftest import ADMIN_KEY, Settings
from tests.integration.test_message_path import running
from tests.support import bearer, eventually, read_topic

ADMIN = bearer(ADMIN_KEY)


@pytest.fixture
def settings_fast(settings: Settings) -> Settings:
    return settings.model_copy(update={"conversation_revocation_refresh_s": 0.1})


async def test_a_deleted_agents_token_is_refused_by_the_conversation_service(
    settings_fast: Settings,
) -> None:
    async with running(settings_fast) as system:
        ada = await system.agent("ada@example.com", ["billing"])
        bob = await system.agent("bob@example.com", ["billing"])
        listed = await system.conversation.get("/v1/conversations", headers=ada["auth"])
        assert listed.status_code == 200

        deleted = await system.router.delete(f"/v1/agents/{ada['id']}", headers=ADMIN)
        assert deleted.status_code == 204, deleted.text
        [event] = [
            e
            for r in await read_topic(settings_fast, topics.AGENT_EVENTS, 4)
            if isinstance(e := EventEnvelope.from_bytes(r.value).parse(), AgentDeleted)
        ]
        assert str(event.agent_id) == ada["id"]

        async def refused() -> bool:
            response = await system.conversation.get("/v1/conversations", headers=ada["auth"])
            return response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"

        await eventually(refused, what="ada's token refused by the conversation service")
        # Only hers: another agent's token and the admin key still work.
        assert (await system.conversation.get("/v1/conversations", headers=bob["auth"])).status_code == 200
        assert (await system.conversation.get("/v1/conversations", headers=ADMIN)).status_code == 200
