"""``GET /v1/stream``: an agent's realtime stream of Server-Sent Events (``docs/agent-stream.md``)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sse_starlette import EventSourceResponse

from switchboard_common.auth import CurrentPrincipal
from switchboard_common.http.errors import ApiError
from switchboard_common.http.openapi import errors
from switchboard_conversation.settings import ConversationSettings
from switchboard_conversation.stream.hub import FeedHub
from switchboard_conversation.stream.schemas import FeedKind

router = APIRouter(prefix="/v1", tags=["stream"])

_EVENT_ID = re.compile(r"[0-9]{1,19}")
_MAX_EVENT_ID = 2**63 - 1


async def _hub(request: Request) -> FeedHub:
    hub: FeedHub = request.app.state.feed_hub
    return hub


async def _settings(request: Request) -> ConversationSettings:
    settings: ConversationSettings = request.app.state.settings
    return settings


def _resume_after(header: str | None, query: int | None) -> int | None:
    """The client's own ``Last-Event-ID`` on its reconnects wins over the ``after`` it first connected
    with: it is the newer of the two."""
    if header is None or not header.strip():
        return query
    value = header.strip()
    # ASCII digits only (str.isdigit takes "²"), and within the ids' BIGINT.
    if not _EVENT_ID.fullmatch(value) or int(value) > _MAX_EVENT_ID:
        raise ApiError(400, "Last-Event-ID must be an event id this stream sent")
    return int(value)


@router.get(
    "/stream",
    response_class=Response,
    responses={
        200: {
            "description": "Server-Sent Events, `event` the item's kind ("
            + ", ".join(f"`{k.value}`" for k in FeedKind)
            + "), `id` its position, `data` a JSON object with `agent_id`, `conversation_id`, `at` and the "
            "kind's fields; keep-alive comments between.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **errors(400, 401, 422),
    },
    summary="The calling agent's realtime stream (every agent's for the admin credential)",
)
async def stream(
    principal: CurrentPrincipal,
    hub: Annotated[FeedHub, Depends(_hub)],
    settings: Annotated[ConversationSettings, Depends(_settings)],
    after: Annotated[
        int | None,
        Query(ge=0, le=_MAX_EVENT_ID, description="Resume after this event id (the last one received)."),
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> EventSourceResponse:
    """Offers, messages of my conversations, delivery reports of their replies and assignment changes, as
    they commit. Every item after `Last-Event-ID` (the header an EventSource sends when it reconnects) or
    `after`, in order, none twice; without either, from now; `after=0`, everything kept
    (`SWITCHBOARD_STREAM_RETENTION_S`). The admin credential streams every agent's items."""
    position = _resume_after(last_event_id, after)
    agent_id = None if principal.is_admin else principal.agent_id
    return EventSourceResponse(hub.events(agent_id, position), ping=settings.stream_heartbeat_s)
