"""Providers' webhooks. Each verifies its provider's signature on the raw bytes before parsing anything,
then takes the messages and delivery statuses through the same group commit as the API channel: the
answer is 2xx only once every item is durable, and a provider's retry is recognised by the provider's ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse

from switchboard_common.errors import Conflict
from switchboard_common.http.errors import ApiError
from switchboard_common.http.openapi import errors
from switchboard_ingest.channels import email, ses
from switchboard_ingest.channels.base import (
    InboundAdapter,
    Parsed,
    PayloadInvalid,
    SignatureInvalid,
    WebhookRequest,
)
from switchboard_ingest.channels.messenger import MessengerChannel
from switchboard_ingest.channels.registry import TWILIO_SMS_STATUS_PATH, Channels
from switchboard_ingest.channels.twilio import public_url
from switchboard_ingest.channels.twilio_voice import (
    CALL_STATUS_PATH,
    GOODBYE_PATH,
    RECORDING_PATH,
    TRANSCRIPTION_PATH,
    VOICE_PATH,
    CallerUnidentified,
    TwilioVoiceChannel,
)
from switchboard_ingest.channels.whatsapp import WhatsAppChannel
from switchboard_ingest.messages import service
from switchboard_ingest.messages.committer import GroupCommitter
from switchboard_ingest.messages.endpoints import CommitterDep
from switchboard_ingest.settings import IngestSettings
from switchboard_ingest.waits import QueueWaits

log = logging.getLogger(__name__)
T = TypeVar("T")

router = APIRouter(prefix="/webhooks", tags=["provider webhooks"])

_WEBHOOK_ERRORS = errors(
    400,
    401,
    403,
    404,
    413,
    503,
    described={
        403: "SES through SNS: the topic is not one of `SWITCHBOARD_EMAIL_SNS_TOPIC_ARNS`.",
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


@contextmanager
def _answered() -> Iterator[None]:
    """An adapter's refusals as HTTP: a bad or missing signature is 401, a malformed payload 400."""
    try:
        yield
    except SignatureInvalid as exc:
        raise ApiError(401, str(exc) or "invalid signature", code="invalid_signature") from exc
    except PayloadInvalid as exc:
        raise ApiError(400, f"malformed payload: {exc}") from exc


def _parse(adapter: InboundAdapter, raw: WebhookRequest) -> Parsed:
    with _answered():
        adapter.verify(raw)  # before anything of the body is parsed
        return adapter.parse(raw)


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


def _twilio_url(request: Request) -> str:
    """The URL Twilio called, which it signed: the path and query exactly as sent, on the public base URL
    when ingest runs behind a proxy."""
    settings: IngestSettings = request.app.state.settings
    path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return public_url(settings.public_base_url, path, query, str(request.url))


async def _twilio(request: Request, channels: Channels, committer: GroupCommitter) -> None:
    adapter = _configured(channels.twilio_sms, "twilio sms")
    await accept(committer, _parse(adapter, await _raw(request, _twilio_url(request))))


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


# --- email ------------------------------------------------------------------------------------------------


@router.post("/email/mailgun", status_code=200, responses=_WEBHOOK_ERRORS, summary="Mailgun inbound route")
async def mailgun_webhook(request: Request, channels: ChannelsDep, committer: CommitterDep) -> dict[str, int]:
    """A Mailgun route's forward (multipart or urlencoded), signed with HMAC-SHA256 over timestamp and
    token; a stale timestamp, or a token used before for another message, is refused."""
    parsed = _parse(_configured(channels.mailgun, "mailgun"), await _raw(request))
    await accept(committer, parsed, replay_kind="mailgun")
    return {"messages": len(parsed.messages), "statuses": 0}


@router.post(
    "/email/mime",
    status_code=200,
    responses=_WEBHOOK_ERRORS,
    summary="A raw RFC 5322 email (your MTA, or SES through SNS)",
)
async def mime_webhook(request: Request, channels: ChannelsDep, committer: CommitterDep) -> dict[str, int]:
    """Your MTA posts the raw message with ``Authorization: Bearer <SWITCHBOARD_EMAIL_MIME_TOKEN>``; SES
    posts through SNS (``x-amz-sns-message-type``), verified against the certificate SNS names, fetched
    only from an SNS host, from the configured topics only. A subscription confirmation is confirmed."""
    raw = await _raw(request)
    if "x-amz-sns-message-type" not in raw.headers:
        parsed = _parse(_configured(channels.mime, "email (mime)"), raw)
        await accept(committer, parsed)
        return {"messages": len(parsed.messages), "statuses": 0}
    sns = _configured(channels.sns, "email (ses)")
    with _answered():
        # The envelope is parsed to learn which certificate signed it; nothing inside is used before.
        message = ses.parse_sns(raw.body)
        if message["TopicArn"] not in sns.topic_arns:
            raise ApiError(403, "SNS topic not accepted here", code="forbidden")
        ses.verify_sns(message, await sns.certificates.get(str(message.get("SigningCertURL", ""))))
        if message["Type"] == "SubscriptionConfirmation":
            await sns.confirm(message)
            return {"messages": 0, "statuses": 0}
        if message["Type"] != "Notification":
            return {"messages": 0, "statuses": 0}
        parsed = Parsed(messages=(email.parse_mime(ses.ses_mime(message), received_at=raw.received_at),))
    await accept(committer, parsed)
    return {"messages": 1, "statuses": 0}


# --- voice (Twilio) -----------------------------------------------------------------------------------------


def _twiml(document: str) -> Response:
    return Response(document, media_type="text/xml")


async def _voice(request: Request, channels: Channels) -> tuple[TwilioVoiceChannel, WebhookRequest]:
    """The voice adapter and the request, verified."""
    adapter = _configured(channels.twilio_voice, "twilio voice")
    raw = await _raw(request, _twilio_url(request))
    with _answered():
        adapter.verify(raw)
    return adapter, raw


def _voice_parsed(parse: Callable[[WebhookRequest], Parsed], raw: WebhookRequest) -> Parsed:
    with _answered():
        return parse(raw)


_TWIML_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "TwiML", "content": {"text/xml": {}}},
    **_WEBHOOK_ERRORS,
}


@router.post(
    VOICE_PATH.removeprefix("/webhooks"),
    response_class=Response,
    responses=_TWIML_RESPONSES,
    summary="Twilio Voice: an incoming call",
)
async def voice_call(request: Request, channels: ChannelsDep, committer: CommitterDep) -> Response:
    """An incoming call becomes a routable item of the caller's thread (channel ``voice``); the caller
    hears a greeting and leaves a voicemail, whose recording and transcription join the thread when Twilio
    reports them. A caller without a usable number hears why and is hung up on."""
    adapter, raw = await _voice(request, channels)
    with _answered():
        try:
            call = adapter.parse_call(raw)
        except CallerUnidentified:
            return _twiml(adapter.unidentified())
    waits: QueueWaits | None = request.app.state.queue_waits
    settings: IngestSettings = request.app.state.settings
    # The router is asked while the call is recorded: the caller waits for the slower of the two, not both.
    estimate = asyncio.ensure_future(waits.expected_wait_s(settings.voice_queue)) if waits else None
    try:
        await accept(committer, Parsed(messages=(call,)))
    except BaseException:
        if estimate is not None:
            estimate.cancel()
        raise
    # Without a figure (not configured, or the router did not say in time) the greeting says an agent will
    # call back as soon as possible.
    wait_s = await estimate if estimate is not None else None
    return _twiml(adapter.answer(call.sender.value, wait_s))


@router.post(
    RECORDING_PATH.removeprefix("/webhooks"),
    status_code=204,
    response_class=Response,
    responses=_WEBHOOK_ERRORS,
    summary="Twilio Voice: a voicemail recording is ready",
)
async def voice_recording(request: Request, channels: ChannelsDep, committer: CommitterDep) -> Response:
    adapter, raw = await _voice(request, channels)
    await accept(committer, _voice_parsed(adapter.parse_recording, raw))
    return Response(status_code=204)


@router.post(
    TRANSCRIPTION_PATH.removeprefix("/webhooks"),
    status_code=204,
    response_class=Response,
    responses=_WEBHOOK_ERRORS,
    summary="Twilio Voice: a voicemail's transcription is ready",
)
async def voice_transcription(request: Request, channels: ChannelsDep, committer: CommitterDep) -> Response:
    adapter, raw = await _voice(request, channels)
    await accept(committer, _voice_parsed(adapter.parse_transcription, raw))
    return Response(status_code=204)


@router.post(
    GOODBYE_PATH.removeprefix("/webhooks"),
    response_class=Response,
    responses=_TWIML_RESPONSES,
    summary="Twilio Voice: after the voicemail",
)
async def voice_goodbye(request: Request, channels: ChannelsDep) -> Response:
    adapter, _ = await _voice(request, channels)
    return _twiml(adapter.goodbye())


@router.post(
    CALL_STATUS_PATH.removeprefix("/webhooks"),
    status_code=204,
    response_class=Response,
    responses=_WEBHOOK_ERRORS,
    summary="Twilio Voice: status of a call an agent started",
)
async def voice_call_status(request: Request, channels: ChannelsDep, committer: CommitterDep) -> Response:
    """How a callback call an agent started went (answered and completed: delivered; busy, no answer,
    failed: failed), into the thread as the reply's delivery status."""
    adapter, raw = await _voice(request, channels)
    await accept(committer, _voice_parsed(adapter.parse_call_status, raw))
    return Response(status_code=204)
