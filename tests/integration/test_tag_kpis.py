"""Volume by tag counts a conversation under the tags it carries now, through the metrics consumer on the
real broker and database: the latest ``conversation.tags_changed`` by event time wins over the opening's
tags and over an earlier change that arrives later; a redelivered change counts once."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from httpx import AsyncClient

from switchboard_common.events import (
    Channel,
    ConversationResolved,
    ConversationTagsChanged,
    utcnow,
)
from switchboard_metrics.app import create_app as metrics_app
from tests.conftest import ADMIN_KEY, Settings
from tests.integration.test_metrics_counting import Event, keyed, opened, publish, report_once_counted
from tests.support import bearer, serve

ADMIN = bearer(ADMIN_KEY)


def _opened(cid: uuid.UUID, at: datetime, tags: list[str]) -> Event:
    return keyed(cid, opened(cid, at, Channel.WEBCHAT, tags))


def _retagged(cid: uuid.UUID, at: datetime, tags: list[str]) -> Event:
    return keyed(
        cid,
        ConversationTagsChanged(
            conversation_id=cid, tags=tags, added=tags, removed=[], agent_id=None, changed_at=at
        ),
    )


async def _by_tag(client: AsyncClient, **params: str) -> dict[str, tuple[int, int]]:
    body: dict[str, Any] = (await client.get("/v1/kpis", params=params, headers=ADMIN)).json()
    return {b["key"]: (b["conversations_opened"], b["conversations_resolved"]) for b in body["by_tag"]}


async def test_volume_by_tag_follows_the_latest_tag_change(settings: Settings) -> None:
    t0 = (utcnow() - timedelta(minutes=3)).replace(second=0, microsecond=0)
    one, two, three = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    latest = _retagged(one, t0 + timedelta(seconds=20), ["billing", "refund"])
    earlier = _retagged(one, t0 + timedelta(seconds=10), ["spam"])
    async with serve(metrics_app(settings)) as client:
        await publish(
            settings,
            [
                _opened(one, t0, ["vip"]),
                _opened(two, t0, ["billing"]),
                # Retagged before its opening arrives: the change is later than the opening, so it stays.
                _retagged(three, t0 + timedelta(seconds=5), ["vip"]),
                _opened(three, t0, ["spam"]),
                keyed(three, ConversationResolved(conversation_id=three, agent_id=None, resolved_at=t0)),
                latest,
                earlier,  # happened before the latest, arrives after it
                latest,  # redelivered
            ],
        )
        await report_once_counted(client, {"conversation.tags_changed": 3, "conversation.opened": 3})
        # Opened 3 (resolved 1): one now billing + refund, two billing, three vip (resolved).
        assert await _by_tag(client) == {"billing": (2, 0), "refund": (1, 0), "vip": (1, 1)}
        assert await _by_tag(client, tag="refund") == {"refund": (1, 0)}
        body = (await client.get("/v1/kpis", params={"tag": "spam"}, headers=ADMIN)).json()
        assert body["volume"]["conversations_opened"] == 0

        # A change later still, then the same again: the conversation moves once more, counted once.
        again = _retagged(one, t0 + timedelta(seconds=30), [])
        await publish(settings, [again, again])
        await report_once_counted(client, {"conversation.tags_changed": 4})
        assert await _by_tag(client) == {"billing": (1, 0), "vip": (1, 1)}
        body = (await client.get("/v1/kpis", headers=ADMIN)).json()
        assert body["volume"]["conversations_opened"] == 3  # untagged, still counted in total
