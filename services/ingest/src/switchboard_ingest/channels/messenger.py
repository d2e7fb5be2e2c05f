"""Messenger and Instagram messaging: one Graph webhook format in (``object`` "page" or "instagram", events
in ``entry[].messaging[]``), one Send API out (``POST /me/messages`` with the page access token).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from switchboard_common.events import (
    Attachment,
    AttachmentKind,
    Channel,
    CustomerIdentity,
    DeliveryState,
    IdentityKind,
)
from switchboard_ingest.channels import meta
from switchboard_ingest.channels.base import (
    OutboundMessage,
    Parsed,
    ParsedMessage,
    ParsedStatus,
    PayloadInvalid,
    SendOutcome,
    WebhookRequest,
)

_OBJECTS = {
    "page": (Channel.MESSENGER, IdentityKind.MESSENGER),
    "instagram": (Channel.INSTAGRAM, IdentityKind.INSTAGRAM),
}

# Other types (``fallback`` link shares, ``template``, reels and posts shared) are no file of the customer's:
# they are left out of the attachments.
_ATTACHMENT_KINDS = {
    "image": AttachmentKind.IMAGE,
    "audio": AttachmentKind.AUDIO,
    "video": AttachmentKind.VIDEO,
    "file": AttachmentKind.FILE,
    "sticker": AttachmentKind.STICKER,
}


class MessengerChannel:
    """Both Messenger and Instagram: the payload's ``object`` says which channel a message came on."""

    channels = (Channel.MESSENGER, Channel.INSTAGRAM)  # the channels whose replies ``build`` sends

    def __init__(self, *, app_secret: str, verify_token: str, page_access_token: str, api_base: str) -> None:
        self._app_secret = app_secret
        self._verify_token = verify_token
        self._page_access_token = page_access_token
        self._api_base = api_base.rstrip("/")

    # --- inbound ---------------------------------------------------------------------------------------

    def handshake(self, query: Mapping[str, str]) -> str:
        return meta.handshake(self._verify_token, query)

    def verify(self, request: WebhookRequest) -> None:
        meta.verify_signature(self._app_secret, request)

    def parse(self, request: WebhookRequest) -> Parsed:
        payload = meta.load_object(request.body)
        target = _OBJECTS.get(str(payload.get("object")))
        if target is None:
            raise PayloadInvalid("object must be 'page' or 'instagram'")
        channel, identity_kind = target
        messages: list[ParsedMessage] = []
        statuses: list[ParsedStatus] = []
        for entry in meta.object_list(payload.get("entry"), "entry", required=True):
            # Only ``messaging`` is ours: ``standby`` holds events of threads another app controls, and
            # ``changes`` the page's feed and comments.
            for event in meta.object_list(entry.get("messaging"), "entry[].messaging"):
                if "message" in event or "postback" in event:
                    message = _message(event, channel, identity_kind)
                    if message is not None:
                        messages.append(message)
                elif "delivery" in event:
                    statuses.extend(_deliveries(event, channel))
                # ``read`` only carries a watermark ("everything sent before this time was read"), no
                # message ids: matching it would need our send times, which a pure adapter does not
                # have, so it is skipped. Reactions, referrals, opt-ins and edits are skipped too.
        return Parsed(messages=tuple(messages), statuses=tuple(statuses))

    # --- outbound --------------------------------------------------------------------------------------

    def build(self, message: OutboundMessage) -> httpx.Request:
        # The same call for Messenger and Instagram: the recipient's scoped id says which it is.
        return httpx.Request(
            "POST",
            f"{self._api_base}/me/messages",
            headers={"Authorization": f"Bearer {self._page_access_token}"},
            json={
                "recipient": {"id": message.recipient},
                "messaging_type": "RESPONSE",
                "message": {"text": message.text},
            },
        )

    def outcome(self, response: httpx.Response) -> SendOutcome:
        # Success: {"recipient_id": "<PSID>", "message_id": "<MID>"}
        body = meta.response_object(response)
        external_id = meta.optional_str(body.get("message_id")) if body is not None else None
        return meta.graph_outcome(response, body, external_id)


def _message(event: meta.JSONObject, channel: Channel, identity_kind: IdentityKind) -> ParsedMessage | None:
    sender = meta.require_str(
        meta.require_object(event.get("sender"), "messaging[].sender").get("id"), "sender.id"
    )
    timestamp = event.get("timestamp")
    sent_at = meta.unix_time(timestamp, "messaging[].timestamp", millis=True)
    identity = CustomerIdentity(kind=identity_kind, value=sender)
    if "postback" in event:
        postback = meta.require_object(event.get("postback"), "messaging[].postback")
        # Older postbacks carry no mid; the sender and the time then name the click, the same on a retry.
        external_id = meta.optional_str(postback.get("mid")) or f"postback:{sender}:{timestamp}"
        text = meta.optional_str(postback.get("title")) or meta.optional_str(postback.get("payload")) or ""
        return ParsedMessage(
            channel=channel,
            external_id=external_id,
            sender=identity,
            text=text,
            sent_at=sent_at,
            content_kind="postback",
        )
    message = meta.require_object(event.get("message"), "messaging[].message")
    if message.get("is_echo") is True:
        return None  # our own send (or a page admin's), reported back: not the customer writing
    text = meta.optional_str(message.get("text")) or ""
    attachments = _attachments(meta.object_list(message.get("attachments"), "message.attachments"))
    if not text and not attachments:
        return None  # an unsent (``is_deleted``) or ``is_unsupported`` message, or only a link share
    return ParsedMessage(
        channel=channel,
        external_id=meta.require_str(message.get("mid"), "message.mid"),
        sender=identity,
        text=text,
        sent_at=sent_at,
        attachments=attachments,
    )


def _attachments(raw: list[meta.JSONObject]) -> tuple[Attachment, ...]:
    # Until Meta's sticker transition ends, a sticker comes twice: as a "sticker" attachment and as an
    # "image" one carrying ``sticker_id``. Such an image is the sticker: kept once, as a sticker.
    has_sticker = any(item.get("type") == "sticker" for item in raw)
    attachments: list[Attachment] = []
    for item in raw:
        kind = _ATTACHMENT_KINDS.get(str(item.get("type")))
        payload = item.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        if kind is AttachmentKind.IMAGE and "sticker_id" in payload:
            if has_sticker:
                continue
            kind = AttachmentKind.STICKER
        if kind is not None:
            attachments.append(Attachment(kind=kind, url=meta.optional_str(payload.get("url"))))
    return tuple(attachments)


def _deliveries(event: meta.JSONObject, channel: Channel) -> list[ParsedStatus]:
    delivery = meta.require_object(event.get("delivery"), "messaging[].delivery")
    at = meta.unix_time(delivery.get("watermark"), "delivery.watermark", millis=True)
    mids = delivery.get("mids")
    if mids is None:
        return []  # older clients confirm by watermark only: nothing names the messages (see ``read``)
    if not isinstance(mids, list):
        raise PayloadInvalid("delivery.mids must be a list")
    return [
        ParsedStatus(
            channel=channel,
            external_id=meta.require_str(mid, "delivery.mids[]"),
            status=DeliveryState.DELIVERED,
            at=at,
        )
        for mid in mids
    ]
