"""The visitor API under ``/webchat``: sessions, messages, read reports, the reply stream and the widget.

Visitors authenticate with their session token (``Authorization: Bearer``; the stream also takes it as
``?token=``, since a browser's EventSource cannot set headers). Messages and read reports go through the
same group commit as every other channel: the answer is 2xx only once they are durable.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from sse_starlette import EventSourceResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from switchboard_common.auth import bearer_credential
from switchboard_common.http.errors import ApiError
from switchboard_common.http.openapi import errors
from switchboard_common.http.sse import MAX_EVENT_ID, resume_after
from switchboard_common.validation import EMAIL, NonBlankText, StorableText, json_integer
from switchboard_ingest.messages import service as messages
from switchboard_ingest.messages.endpoints import CommitterDep
from switchboard_ingest.messages.schemas import AcceptStatus, MessageAccepted
from switchboard_ingest.settings import IngestSettings
from switchboard_ingest.webchat import service, tokens
from switchboard_ingest.webchat.service import IdentityRejected, Limit, RateLimited, SessionRefused
from switchboard_ingest.webchat.stream import WebchatHub
from switchboard_ingest.webchat.tokens import TokenExpired, TokenInvalid, Visitor

router = APIRouter(prefix="/webchat", tags=["web chat"])

# Keep-alive comments on an idle stream: proxies and load balancers drop connections silent for ~60 s.
PING_S = 15

_TOKEN_ERRORS = {
    401: "The session token is missing, forged or expired (`invalid_token`, `session_expired`): start or "
    "refresh a session.",
    404: "Web chat is not configured on this deployment (`channel_not_configured`).",
}
_RATE_LIMITED = (
    "Too many requests from this session or address (`rate_limited`): retry after `Retry-After` seconds."
)


# --- schemas --------------------------------------------------------------------------------------------


class SessionCreate(BaseModel):
    """A visitor's session. Anonymous with no ``user_id``; a site that signs its users in vouches for one
    with ``user_hash = hex(HMAC-SHA256(identity secret, user_id))``, computed on its server."""

    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[NonBlankText, StringConstraints(min_length=1, max_length=200)] | None = None
    user_hash: Annotated[str, StringConstraints(max_length=128)] | None = None
    name: Annotated[StorableText, StringConstraints(max_length=200)] | None = Field(
        default=None, description="Shown to agents as the customer's name."
    )
    email: Annotated[str, StringConstraints(pattern=EMAIL, max_length=320)] | None = Field(
        default=None, description="Only with a verified user: links the visitor to their email thread."
    )


class SessionOut(BaseModel):
    session_id: uuid.UUID
    token: str = Field(description="Send as `Authorization: Bearer <token>` (or `?token=` on the stream).")
    expires_at: datetime = Field(description="Refresh before then (`POST /webchat/sessions/refresh`).")
    verified: bool = Field(description="Whether the visitor speaks as a verified site user.")


class VisitorMessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_message_id: Annotated[
        str, StringConstraints(min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$")
    ] = Field(description="The widget's id for this message: posting it again is a no-op (idempotency key).")
    text: Annotated[NonBlankText, StringConstraints(min_length=1, max_length=4096)]


class ReadReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: Annotated[int, Field(ge=1, le=2**63 - 1), BeforeValidator(json_integer)] = Field(
        description="The stream event id of the reply the visitor saw."
    )


# --- dependencies ---------------------------------------------------------------------------------------


def _settings(request: Request) -> IngestSettings:
    settings: IngestSettings = request.app.state.settings
    return settings


def _token_secret(settings: IngestSettings) -> str:
    if settings.webchat_token_secret is None:
        raise ApiError(404, "the webchat channel is not configured", code="channel_not_configured")
    return settings.webchat_token_secret.get_secret_value()


def _visitor(settings: IngestSettings, token: str) -> Visitor:
    try:
        return tokens.read(_token_secret(settings), token)
    except TokenExpired as exc:
        raise ApiError(401, "the session expired: start a new one", code="session_expired") from exc
    except TokenInvalid as exc:
        raise ApiError(401, "invalid session token", code="invalid_token") from exc


async def current_visitor(request: Request) -> Visitor:
    return _visitor(_settings(request), bearer_credential(request))


async def streaming_visitor(
    request: Request, token: Annotated[str | None, Query(max_length=4096)] = None
) -> Visitor:
    if token is not None:
        return _visitor(_settings(request), token)
    return await current_visitor(request)


async def _hub(request: Request) -> WebchatHub:
    hub: WebchatHub = request.app.state.webchat_hub
    return hub


def _address(request: Request) -> str:
    # uvicorn has already put X-Forwarded-For's client here when the peer is a trusted proxy.
    return request.client.host if request.client else "unknown"


async def _admit(hub: WebchatHub, limits: list[Limit]) -> None:
    try:
        await service.admit(hub, limits)
    except RateLimited as exc:
        raise ApiError(
            429, str(exc), code="rate_limited", headers={"Retry-After": str(exc.retry_after_s)}
        ) from exc


VisitorDep = Annotated[Visitor, Depends(current_visitor)]
HubDep = Annotated[WebchatHub, Depends(_hub)]


# --- sessions -------------------------------------------------------------------------------------------


async def _issue(hub: WebchatHub, settings: IngestSettings, visitor: Visitor) -> SessionOut:
    await service.record_session(hub, visitor)
    return SessionOut(
        session_id=visitor.session_id,
        token=tokens.issue(_token_secret(settings), visitor),
        expires_at=visitor.expires_at,
        verified=visitor.verified,
    )


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    responses=errors(
        400,
        401,
        403,
        404,
        413,
        422,
        429,
        503,
        described={
            401: "`user_hash` does not match `user_id`, or comes without one (`invalid_identity`), or this "
            "deployment verifies no site users (`identity_verification_not_configured`).",
            403: "An email without a verified user (`email_requires_verified_user`).",
            404: _TOKEN_ERRORS[404],
            429: _RATE_LIMITED,
        },
    ),
    summary="Start a visitor's session",
)
async def create_session(body: SessionCreate, request: Request, hub: HubDep) -> SessionOut:
    settings = _settings(request)
    _token_secret(settings)  # 404 before anything is checked or stored
    # Counted before the identity proof is checked: guessing user_hash is rate limited too.
    await _admit(
        hub,
        [
            Limit(
                f"address-sessions:{_address(request)}",
                settings.webchat_address_sessions_per_window,
                settings.webchat_session_rate_window_s,
            )
        ],
    )
    identity_secret = settings.webchat_identity_secret
    try:
        visitor = service.new_visitor(
            identity_secret=identity_secret.get_secret_value() if identity_secret else None,
            ttl_s=settings.webchat_session_ttl_s,
            user_id=body.user_id,
            user_hash=body.user_hash,
            name=body.name,
            email=body.email,
        )
    except IdentityRejected as exc:
        raise ApiError(401, str(exc), code=exc.code) from exc
    except SessionRefused as exc:
        raise ApiError(403, str(exc), code=exc.code) from exc
    return await _issue(hub, settings, visitor)


@router.post(
    "/sessions/refresh",
    responses=errors(401, 404, 503, described=_TOKEN_ERRORS),
    summary="Extend a visitor's session",
)
async def refresh_session(visitor: VisitorDep, request: Request, hub: HubDep) -> SessionOut:
    """A new token for the same session and identity, valid for another session lifetime: the widget
    refreshes while its token is valid, so an anonymous visitor keeps their thread."""
    settings = _settings(request)
    return await _issue(hub, settings, service.renewed(visitor, settings.webchat_session_ttl_s))


# --- messages and read reports --------------------------------------------------------------------------


@router.post(
    "/messages",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": MessageAccepted, "description": "Already accepted (a retry)"},
        **errors(
            400,
            401,
            404,
            409,
            413,
            422,
            429,
            503,
            described={
                **_TOKEN_ERRORS,
                409: "This client_message_id was already used for a different text (`id_reused`).",
                429: _RATE_LIMITED,
            },
        ),
    },
    summary="Post a visitor's message",
)
async def post_message(
    body: VisitorMessageCreate,
    visitor: VisitorDep,
    request: Request,
    response: Response,
    hub: HubDep,
    committer: CommitterDep,
) -> MessageAccepted:
    """Answers once the message is durable; posting the same ``client_message_id`` again answers 200
    with the same message (a retry counts against the rate limits like any post)."""
    settings = _settings(request)
    await _admit(
        hub,
        [
            Limit(
                f"session-messages:{visitor.session_id}",
                settings.webchat_session_messages_per_window,
                settings.webchat_rate_window_s,
            ),
            Limit(
                f"address-messages:{_address(request)}",
                settings.webchat_address_messages_per_window,
                settings.webchat_rate_window_s,
            ),
        ],
    )
    parsed = service.message(visitor, body.client_message_id, body.text)
    result = await committer.submit(messages.submission_for(messages.from_parsed(parsed)))
    if result.status is AcceptStatus.DUPLICATE:
        response.status_code = status.HTTP_200_OK
    return result


@router.post(
    "/read",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(400, 401, 404, 413, 422, 503, described={401: _TOKEN_ERRORS[401]}),
    summary="Report that the visitor saw a reply",
)
async def mark_read(body: ReadReport, visitor: VisitorDep, hub: HubDep, committer: CommitterDep) -> Response:
    """The reply shows as read in the agent's thread. Reporting it again is harmless."""
    if not await service.owns_reply(hub, visitor, body.event_id):
        raise ApiError(404, "no such reply for this visitor")
    await committer.submit(messages.status_submission(service.read_report(body.event_id)))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- the stream -----------------------------------------------------------------------------------------


@router.get(
    "/stream",
    response_class=Response,
    responses={
        200: {
            "description": "Server-Sent Events: one per agent's reply, `id` its event id, `data` "
            '`{"message_id", "text", "sent_at"}`; keep-alive comments between.',
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **errors(400, 401, 404, 422, described=_TOKEN_ERRORS),
    },
    summary="The visitor's stream of agents' replies",
)
async def stream(
    visitor: Annotated[Visitor, Depends(streaming_visitor)],
    hub: HubDep,
    last_event_id: Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID)] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> EventSourceResponse:
    """Every reply after ``Last-Event-ID`` (the header, which a browser's EventSource sends when it
    reconnects, or ``last_event_id``), then each new one as it is sent: a reconnect misses none and repeats
    none. The stream ends when the token expires; connect again with a fresh one."""
    after = resume_after(last_event_id_header, last_event_id) or 0
    return EventSourceResponse(hub.events(visitor.identity, after, visitor.expires_at), ping=PING_S)


# --- the widget -----------------------------------------------------------------------------------------


@cache
def _widget_template() -> str:
    return resources.files("switchboard_ingest.webchat").joinpath("widget.html").read_text(encoding="utf-8")


@router.get(
    "/widget",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}, "description": "The chat widget, to embed in an iframe."}},
    summary="The embeddable chat widget",
)
async def widget(request: Request) -> HTMLResponse:
    """One self-contained page (no external assets). Embed it with ``<iframe src=".../webchat/widget">``;
    a site vouching for its user passes ``#user_id=...&user_hash=...&name=...&email=...`` in the fragment,
    which never reaches a server log. Only ``webchat_allowed_origins`` may frame it."""
    settings = _settings(request)
    nonce = secrets.token_urlsafe(16)
    ancestors = " ".join(["'self'", *settings.webchat_allowed_origins])
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        f"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    )
    return HTMLResponse(
        _widget_template().replace("{{nonce}}", nonce),
        headers={
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


# --- CORS -----------------------------------------------------------------------------------------------


class WebchatCors:
    """CORS on ``/webchat/*`` only, for the origins in ``webchat_allowed_origins``: a site may call the
    visitor API from its own pages, while ingest's other endpoints (API keys, providers' webhooks) stay
    closed to browsers. Errors carry the headers too, so a page can read why it was refused."""

    def __init__(self, app: ASGIApp, allowed_origins: Sequence[str]) -> None:
        self._app = app
        self._enabled = bool(allowed_origins)
        self._cors = CORSMiddleware(
            app,
            allow_origins=list(allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._enabled and scope["type"] == "http" and scope["path"].startswith(router.prefix + "/"):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)
