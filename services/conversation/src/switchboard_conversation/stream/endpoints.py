"""``GET /v1/stream``: an agent's realtime stream of Server-Sent Events (``docs/agent-stream.md``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import WithJsonSchema
from sse_starlette import EventSourceResponse

from switchboard_common.auth import CurrentPrincipal
from switchboard_common.http.openapi import errors
from switchboard_common.http.sse import MAX_EVENT_ID, resume_after
from switchboard_conversation.settings import ConversationSettings
from switchboard_conversation.stream.hub import FeedHub
from switchboard_conversation.stream.schemas import FeedKind

router = APIRouter(prefix="/v1", tags=["stream"])
_EVENT_ID = r"^[0-9]{1,18}$"


async def _hub(request: Request) -> FeedHub:
    hub: FeedHub = request.app.state.feed_hub
    return hub


async def _settings(request: Request) -> ConversationSettings:
    settings: ConversationSettings = request.app.state.settings
    return settings


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
        **errors(401, 422, 503),
    },
    summary="The calling agent's realtime stream (every agent's for the admin credential)",
)
async def stream(
    principal: CurrentPrincipal,
    hub: Annotated[FeedHub, Depends(_hub)],
    settings: Annotated[ConversationSettings, Depends(_settings)],
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_EVENT_ID, description="Resume after this event id (the last one received)."),
    ] = None,
    # Ids are BIGINT positions: 18 digits cover every one this stream can send. The header is absent or an
    # id (never null), so that is what the document says.
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", pattern=_EVENT_ID),
        WithJsonSchema({"type": "string", "pattern": _EVENT_ID}),
    ] = None,
) -> EventSourceResponse:
    """Offers, messages of my conversations, delivery reports of their replies and assignment changes, as
    they commit. Every item after `Last-Event-ID` (the header an EventSource sends when it reconnects) or
    `after`, in order, none twice; without either, from now; `after=0`, everything kept
    (`SWITCHBOARD_STREAM_RETENTION_S`). The admin credential streams every agent's items."""
    # Where it resumes is decided before the stream opens: an unavailable database is a 503 to retry.
    position = await hub.position_after(resume_after(last_event_id, after))
    agent_id = None if principal.is_admin else principal.agent_id
    return EventSourceResponse(hub.events(agent_id, position), ping=settings.stream_heartbeat_s)
