"""WhatsApp Cloud API: the ``messages`` webhook in, the ``/{phone_number_id}/messages`` endpoint out.

One POST carries ``entry[].changes[].value`` objects, each with ``messages`` from customers (their profile
names in ``contacts``) and ``statuses`` of what we sent, in any number and order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from switchboard_ingest.normalize import normalize_phone

_MEDIA_KINDS = {
    "image": AttachmentKind.IMAGE,
    "audio": AttachmentKind.AUDIO,
    "video": AttachmentKind.VIDEO,
    "document": AttachmentKind.DOCUMENT,
    "sticker": AttachmentKind.STICKER,
}

# The content keys a message type is named after; some of Meta's own samples (location) omit ``type``.
_CONTENT_KEYS = ("text", *_MEDIA_KINDS, "location", "contacts", "interactive", "button")

# "played" (a voice message was listened to) and "deleted" have no delivery state: they are skipped.
_STATUSES = {
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,
    "failed": DeliveryState.FAILED,
}


class WhatsAppChannel:
    channels = (Channel.WHATSAPP,)  # the channels whose replies ``build`` sends

    def __init__(
        self, *, app_secret: str, verify_token: str, access_token: str, phone_number_id: str, api_base: str
    ) -> None:
        self._app_secret = app_secret
        self._verify_token = verify_token
        self._access_token = access_token
        self._phone_number_id = phone_number_id
        self._api_base = api_base.rstrip("/")

    # --- inbound ---------------------------------------------------------------------------------------

    def handshake(self, query: Mapping[str, str]) -> str:
        return meta.handshake(self._verify_token, query)

    def verify(self, request: WebhookRequest) -> None:
        meta.verify_signature(self._app_secret, request)

    def parse(self, request: WebhookRequest) -> Parsed:
        payload = meta.load_object(request.body)
        if payload.get("object") != "whatsapp_business_account":
            raise PayloadInvalid("object must be 'whatsapp_business_account'")
        messages: list[ParsedMessage] = []
        statuses: list[ParsedStatus] = []
        for entry in meta.object_list(payload.get("entry"), "entry", required=True):
            for change in meta.object_list(entry.get("changes"), "entry[].changes"):
                if change.get("field") != "messages":
                    continue  # other subscriptions (template reviews, account updates) carry no messages
                value = meta.require_object(change.get("value"), "changes[].value")
                names = _profile_names(value)
                for raw in meta.object_list(value.get("messages"), "value.messages"):
                    message = _message(raw, names)
                    if message is not None:
                        messages.append(message)
                for raw in meta.object_list(value.get("statuses"), "value.statuses"):
                    status = _status(raw)
                    if status is not None:
                        statuses.append(status)
        return Parsed(messages=tuple(messages), statuses=tuple(statuses))

    # --- outbound --------------------------------------------------------------------------------------

    def build(self, message: OutboundMessage) -> httpx.Request:
        return httpx.Request(
            "POST",
            f"{self._api_base}/{self._phone_number_id}/messages",
            headers={"Authorization": f"Bearer {self._access_token}"},
            json={
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": message.recipient,
                "type": "text",
                "text": {"body": message.text},
            },
        )

    def outcome(self, response: httpx.Response) -> SendOutcome:
        # Success: {"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}
        body = meta.response_object(response)
        external_id = None
        if body is not None:
            sent = body.get("messages")
            if isinstance(sent, list) and sent and isinstance(sent[0], dict):
                external_id = meta.optional_str(sent[0].get("id"))
        return meta.graph_outcome(response, body, external_id)


def _profile_names(value: meta.JSONObject) -> dict[str, str]:
    names: dict[str, str] = {}
    for contact in meta.object_list(value.get("contacts"), "value.contacts"):
        wa_id = meta.optional_str(contact.get("wa_id"))
        profile = contact.get("profile")
        name = meta.optional_str(profile.get("name")) if isinstance(profile, dict) else None
        if wa_id and name:
            names[wa_id] = name
    return names


def _message(raw: meta.JSONObject, names: Mapping[str, str]) -> ParsedMessage | None:
    kind = raw.get("type") or next((key for key in _CONTENT_KEYS if key in raw), None)
    content = _content(kind, raw)
    if content is None:
        return None
    text, content_kind, attachments = content
    sender = meta.require_str(raw.get("from"), "messages[].from")
    try:
        phone = normalize_phone("+" + sender)
    except ValueError as exc:
        # Meta only sends WhatsApp numbers here: anything else means the payload is not Meta's, so the
        # whole POST is refused (400) rather than one message quietly dropped.
        raise PayloadInvalid(f"messages[].from {exc}") from exc
    return ParsedMessage(
        channel=Channel.WHATSAPP,
        external_id=meta.require_str(raw.get("id"), "messages[].id"),
        sender=CustomerIdentity(kind=IdentityKind.PHONE, value=phone),
        text=text,
        sent_at=meta.unix_time(raw.get("timestamp"), "messages[].timestamp"),
        display_name=names.get(sender),
        attachments=attachments,
        content_kind=content_kind,
    )


def _content(kind: object, raw: meta.JSONObject) -> tuple[str, str | None, tuple[Attachment, ...]] | None:
    """(text, content_kind, attachments) of a message; none for the types that are no customer message we
    route: ``reaction`` (an emoji on an earlier message), ``unsupported``/``unknown`` (WhatsApp could not
    render it and already told the customer so), ``system`` (a number change), ``order`` and the like. They
    are skipped, not refused: refusing would make Meta retry the whole POST, with its real messages, for
    days."""
    if kind == "text":
        body = meta.require_object(raw.get("text"), "messages[].text")
        return meta.require_str(body.get("body"), "messages[].text.body"), None, ()
    if isinstance(kind, str) and kind in _MEDIA_KINDS:
        media = meta.require_object(raw.get(kind), f"messages[].{kind}")
        caption = meta.optional_str(media.get("caption"))
        attachment = Attachment(
            kind=_MEDIA_KINDS[kind],
            media_id=meta.require_str(media.get("id"), f"messages[].{kind}.id"),
            content_type=meta.optional_str(media.get("mime_type")),
            filename=meta.optional_str(media.get("filename")),
            caption=caption,
        )
        return caption or "", None, (attachment,)
    if kind == "location":
        return _location(meta.require_object(raw.get("location"), "messages[].location")), "location", ()
    if kind == "contacts":
        cards = meta.object_list(raw.get("contacts"), "messages[].contacts", required=True)
        return "\n".join(_contact(card) for card in cards), "contacts", ()
    if kind == "interactive":
        interactive = meta.require_object(raw.get("interactive"), "messages[].interactive")
        reply_kind = interactive.get("type")
        if reply_kind not in ("button_reply", "list_reply"):
            return None  # e.g. "nfm_reply", a WhatsApp Flow's form answer: no flows are sent
        reply = meta.require_object(interactive.get(reply_kind), f"messages[].interactive.{reply_kind}")
        return meta.require_str(reply.get("title"), f"{reply_kind}.title"), reply_kind, ()
    if kind == "button":  # a quick-reply button of a template message
        button = meta.require_object(raw.get("button"), "messages[].button")
        return meta.require_str(button.get("text"), "messages[].button.text"), "button", ()
    return None


def _location(location: meta.JSONObject) -> str:
    latitude, longitude = location.get("latitude"), location.get("longitude")
    for value in (latitude, longitude):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PayloadInvalid("messages[].location needs numeric latitude and longitude")
    place = ", ".join(
        part for part in (meta.optional_str(location.get(key)) for key in ("name", "address")) if part
    )
    return f"Location: {place} ({latitude}, {longitude})" if place else f"Location: ({latitude}, {longitude})"


def _contact(card: meta.JSONObject) -> str:
    """One shared contact card as a line: its name, then its phones and emails."""
    name = card.get("name")
    formatted = meta.optional_str(name.get("formatted_name")) if isinstance(name, dict) else None
    details = [
        value
        for key, field in (("phones", "phone"), ("emails", "email"))
        for item in _items(card.get(key))
        if (value := meta.optional_str(item.get(field)))
    ]
    return f"Contact: {', '.join([formatted or 'unnamed', *details])}"


def _items(value: object) -> list[dict[str, Any]]:
    # A card's fields are whatever the customer chose to share: a missing or odd one is just left out.
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _status(raw: meta.JSONObject) -> ParsedStatus | None:
    state = _STATUSES.get(str(raw.get("status")))
    if state is None:
        return None
    error_code = error_reason = None
    if state is DeliveryState.FAILED:
        errors = meta.object_list(raw.get("errors"), "statuses[].errors")
        if errors:
            first = errors[0]
            code = first.get("code")
            error_code = str(code) if isinstance(code, int | str) and not isinstance(code, bool) else None
            details = first.get("error_data")
            error_reason = (
                (meta.optional_str(details.get("details")) if isinstance(details, dict) else None)
                or meta.optional_str(first.get("message"))
                or meta.optional_str(first.get("title"))
            )
    return ParsedStatus(
        channel=Channel.WHATSAPP,
        external_id=meta.require_str(raw.get("id"), "statuses[].id"),
        status=state,
        at=meta.unix_time(raw.get("timestamp"), "statuses[].timestamp"),
        error_code=error_code,
        error_reason=error_reason,
    )
