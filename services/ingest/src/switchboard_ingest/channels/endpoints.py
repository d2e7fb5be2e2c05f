"""Providers' webhooks. Each verifies its provider's signature on the raw bytes before parsing anything,
then takes the messages and delivery statuses through the same group commit as the API channel: the
answer is 2xx only once every item is durable, and a provider's retry is recognised by the provider's ids.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse

from switchboard_common.errors import Conflict
from switchboard_common.http.errors import ApiError
from switchboard_common.http.openapi import errors
from switchboard_ingest.channels.base import Parsed, PayloadInvalid, SignatureInvalid, WebhookRequest
from switchboard_ingest.channels.messenger import MessengerChannel
from switchboard_ingest.channels.registry import TWILIO_SMS_STATUS_PATH, Channels
from switchboard_ingest.channels.twilio import TwilioSmsChannel, public_url
from switchboard_ingest.channels.whatsapp import WhatsAppChannel
from switchboard_ingest.messages import service
from switchboard_ingest.messages.committer import GroupCommitter
from switchboard_ingest.messages.endpoints import CommitterDep
from switchboard_ingest.settings import IngestSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

router = APIRouter(prefix="/webhooks", tags=["provider webhooks"])

_WEBHOOK_ERRORS = errors(
    400,
    401,
    404,
    413,
    503,
    described={
        400: "The payload is not what the provider sends (`bad_request`, with the reason).",
        401: "The provider's signature is missing or does not match the raw body (`invalid_signature`).",
        404: "This channel is not configured on this deployment (`channel_not_configured`).",
        503: "Not every item could be made durable: nothing is lost, the provider's retry is answered as "
        "duplicates for what was.",
    },
)
# ``response_class=Response``, not PlainTextResponse: the latter would document the JSON errors as text.
_HANDSHAKE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`hub.challenge`, echoed",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    **errors(403, 404, described={403: "Wrong `hub.mode` or `hub.verify_token`."}),
}
_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _channels(request: Request) -> Channels:
    channels: Channels = request.app.state.channels
    return channels


ChannelsDep = Annotated[Channels, Depends(_channels)]


def _configured(adapter: T | None, name: str) -> T:
    if adapter is None:
        raise ApiError(404, f"the {name} channel is not configured", code="channel_not_configured")
    return adapter


async def _raw(request: Request, url: str | None = None) -> WebhookRequest:
    return WebhookRequest(
        body=await request.body(),
        headers={k.lower(): v for k, v in request.headers.items()},
        url=url or str(request.url),
        query=dict(request.query_params),
    )


def _parse(adapter: WhatsAppChannel | MessengerChannel | TwilioSmsChannel, raw: WebhookRequest) -> Parsed:
    try:
        adapter.verify(raw)
    except SignatureInvalid as exc:
        raise ApiError(401, str(exc) or "invalid signature", code="invalid_signature") from exc
    try:
        return adapter.parse(raw)
    except PayloadInvalid as exc:
        raise ApiError(400, f"malformed payload: {exc}") from exc


async def accept(committer: GroupCommitter, parsed: Parsed, replay_kind: str = "") -> None:
    """Record every item; returns once all are durable, else raises (``Unavailable``: 503). A replay key
    (a signed single-use value) presented before with other items raises ``ApiError(401)``."""
    submissions = [service.submission_for(service.from_parsed(m)) for m in parsed.messages]
    submissions += [service.status_submission(s) for s in parsed.statuses]
    if not submissions:
        return
    # Replay keys are recorded first, naming the items they came with, and the items only then: a key
    # presented again with other items is refused before any of them is recorded. (Recorded key, items not
    # yet: the provider's retry carries the same key and items, a duplicate, and records the items.)
    for key in parsed.replay_keys:
        try:
            await committer.submit(service.replay_submission(replay_kind, key, submissions))
        except Conflict as exc:
            raise ApiError(
                401, "this signed request was already used for other content", code="replayed"
            ) from exc
    outcomes = await asyncio.gather(*(committer.submit(s) for s in submissions), return_exceptions=True)
    for submission, outcome in zip(submissions, outcomes, strict=True):
        if isinstance(outcome, Conflict):
            # The provider reused one of its ids for other content. Refusing would make it retry for
            # days to no avail; the first content stands and this is logged for a human.
            log.warning("provider id reused for other content", extra={"key": list(submission.key)})
        elif isinstance(outcome, BaseException):
            raise outcome


def _handshake(adapter: WhatsAppChannel | MessengerChannel, query: dict[str, str]) -> PlainTextResponse:
    try:
        return PlainTextResponse(adapter.handshake(query))
    except SignatureInvalid as exc:
        raise ApiError(403, "verification failed: wrong hub.mode or hub.verify_token") from exc


@router.get(
    "/whatsapp", response_class=Response, responses=_HANDSHAKE_RESPONSES, summary="Meta's verification"
)
async def whatsapp_handshake(request: Request, channels: ChannelsDep) -> PlainTextResponse:
    """Meta's subscription handshake: echoes ``hub.challenge`` when ``hub.verify_token`` is ours."""
    return _handshake(_configured(channels.whatsapp, "whatsapp"), dict(request.query_params))


@router.post("/whatsapp", status_code=200, responses=_WEBHOOK_ERRORS, summary="WhatsApp Cloud API webhook")
async def whatsapp_webhook(
    request: Request, channels: ChannelsDep, committer: CommitterDep
) -> dict[str, int]:
    """Customers' messages and the statuses of our replies, signed with ``X-Hub-Signature-256``."""
    parsed = _parse(_configured(channels.whatsapp, "whatsapp"), await _raw(request))
    await accept(committer, parsed)
    return {"messages": len(parsed.messages), "statuses": len(parsed.statuses)}


@router.get(
    "/messenger", response_class=Response, responses=_HANDSHAKE_RESPONSES, summary="Meta's verification"
)
async def messenger_handshake(request: Request, channels: ChannelsDep) -> PlainTextResponse:
    return _handshake(_configured(channels.messenger, "messenger"), dict(request.query_params))


@router.post(
    "/messenger", status_code=200, responses=_WEBHOOK_ERRORS, summary="Messenger and Instagram webhook"
)
async def messenger_webhook(
    request: Request, channels: ChannelsDep, committer: CommitterDep
) -> dict[str, int]:
    """Messages, postbacks and delivery receipts of a Facebook page or an Instagram account; echoes of our
    own sends are recognised and dropped."""
    parsed = _parse(_configured(channels.messenger, "messenger"), await _raw(request))
    await accept(committer, parsed)
    return {"messages": len(parsed.messages), "statuses": len(parsed.statuses)}


async def _twilio(request: Request, channels: Channels, committer: GroupCommitter) -> None:
    adapter = _configured(channels.twilio_sms, "twilio sms")
    settings: IngestSettings = request.app.state.settings
    # Twilio signed the path and query exactly as it sent them, so they are taken undecoded.
    path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    url = public_url(settings.public_base_url, path, query, str(request.url))
    await accept(committer, _parse(adapter, await _raw(request, url)))


@router.post(
    "/twilio/sms",
    response_class=Response,
    responses={200: {"content": {"text/xml": {}}}, **_WEBHOOK_ERRORS},
    summary="Twilio SMS/MMS webhook",
)
async def twilio_sms_webhook(request: Request, channels: ChannelsDep, committer: CommitterDep) -> Response:
    """An incoming SMS or MMS, signed with ``X-Twilio-Signature``; answers empty TwiML (no auto-reply)."""
    await _twilio(request, channels, committer)
    return Response(_TWIML, media_type="text/xml")


@router.post(
    TWILIO_SMS_STATUS_PATH.removeprefix("/webhooks"),
    status_code=204,
    response_class=Response,
    responses=_WEBHOOK_ERRORS,
    summary="Twilio message status callback",
)
async def twilio_sms_status(request: Request, channels: ChannelsDep, committer: CommitterDep) -> Response:
    """Twilio's report on a reply we sent (sent, delivered, read, undelivered, failed)."""
    await _twilio(request, channels, committer)
    return Response(status_code=204)
