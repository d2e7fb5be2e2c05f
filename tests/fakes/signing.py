"""Provider signatures and callback payloads, built independently of the code under test.

Never import switchboard_ingest here: these are the oracle the ingest verifiers and parsers are checked against.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

# The twilio package ships no type information; loading it through importlib keeps mypy strict happy whether
# or not the project later adds an override for it. Its RequestValidator is Twilio's reference implementation.
_RequestValidator: Any = importlib.import_module("twilio.request_validator").RequestValidator

WABA_ID = "102290129340398"
DISPLAY_PHONE_NUMBER = "15550783881"
TWILIO_API_VERSION = "2010-04-01"


def meta_signature(app_secret: str, body: bytes) -> str:
    """X-Hub-Signature-256 as Meta sends it: sha256=<hex HMAC-SHA256 of the raw body keyed by the app secret>."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature for a form POST to ``url``, computed by Twilio's own RequestValidator."""
    signature: str = _RequestValidator(auth_token).compute_signature(url, dict(params))
    return signature


def _whatsapp_envelope(phone_number_id: str, value: dict[str, Any]) -> dict[str, Any]:
    # https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/payload-examples
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA_ID,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": DISPLAY_PHONE_NUMBER,
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


_WHATSAPP_ERROR_TITLES = {
    131026: "Message undeliverable",
    131047: "Re-engagement message",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "User has stopped marketing messages",
    131051: "Unsupported message type",
    130472: "User's number is part of an experiment",
    131000: "Something went wrong",
}


def whatsapp_status_payload(
    phone_number_id: str,
    wamid: str,
    status: str,
    recipient: str,
    timestamp: int | str,
    error_code: int | None = None,
) -> dict[str, Any]:
    """A Cloud API status webhook (sent / delivered / read / failed).

    Shape: https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status
    sent and delivered carry conversation and pricing; read carries neither; failed carries errors[].
    """
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": recipient.lstrip("+"),
    }
    if status in ("sent", "delivered"):
        item["conversation"] = {
            "id": "b1ab0b4e8b3a5d1b3c9f2a4e6d8c0b1a",
            "expiration_timestamp": str(int(timestamp) + 86400),
            "origin": {"type": "service"},
        }
        item["pricing"] = {"billable": False, "pricing_model": "PMP", "category": "service"}
    if status == "failed" or error_code is not None:
        code = error_code if error_code is not None else 131000
        title = _WHATSAPP_ERROR_TITLES.get(code, "Message failed to send")
        item["errors"] = [
            {
                "code": code,
                "title": title,
                "message": title,
                "error_data": {"details": title},
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
            }
        ]
    return _whatsapp_envelope(phone_number_id, {"statuses": [item]})


def whatsapp_text_payload(
    phone_number_id: str, from_digits: str, name: str, wamid: str, text: str, timestamp: int | str
) -> dict[str, Any]:
    """A Cloud API inbound text message webhook.

    Shape: https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/text
    """
    return _whatsapp_envelope(
        phone_number_id,
        {
            "contacts": [{"profile": {"name": name}, "wa_id": from_digits}],
            "messages": [
                {
                    "from": from_digits,
                    "id": wamid,
                    "timestamp": str(timestamp),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        },
    )


def messenger_text_payload(page_id: str, psid: str, mid: str, text: str, timestamp_ms: int) -> dict[str, Any]:
    """A Messenger Platform ``messages`` webhook event for a text from a person (PSID) to the page.

    Shape: https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/messages
    """
    return {
        "object": "page",
        "entry": [
            {
                "id": page_id,
                "time": timestamp_ms,
                "messaging": [
                    {
                        "sender": {"id": psid},
                        "recipient": {"id": page_id},
                        "timestamp": timestamp_ms,
                        "message": {"mid": mid, "text": text},
                    }
                ],
            }
        ],
    }


def twilio_sms_params(
    account_sid: str,
    message_sid: str,
    from_: str,
    to: str,
    body: str,
    media: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    """Form parameters of Twilio's incoming-message webhook (SMS, or MMS when ``media`` is given).

    Parameters: https://www.twilio.com/docs/messaging/guides/webhook-request
    """
    params = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": message_sid,
        "NumMedia": str(len(media)),
        "ToCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "SmsSid": message_sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": body,
        "FromCountry": "US",
        "To": to,
        "ToZip": "94105",
        "NumSegments": "1",
        "MessageSid": message_sid,
        "AccountSid": account_sid,
        "From": from_,
        "ApiVersion": TWILIO_API_VERSION,
    }
    for index, (url, content_type) in enumerate(media):
        params[f"MediaUrl{index}"] = url
        params[f"MediaContentType{index}"] = content_type
    return params


def twilio_status_params(
    account_sid: str,
    message_sid: str,
    status: str,
    error_code: int | None = None,
    *,
    from_: str | None = None,
    to: str | None = None,
) -> dict[str, str]:
    """Form parameters of Twilio's outbound message status callback.

    Parameters: https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
    ErrorCode comes with failed and undelivered.
    """
    params = {
        "AccountSid": account_sid,
        "ApiVersion": TWILIO_API_VERSION,
        "MessageSid": message_sid,
        "MessageStatus": status,
        "SmsSid": message_sid,
        "SmsStatus": status,
    }
    if from_ is not None:
        params["From"] = from_
    if to is not None:
        params["To"] = to
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
    return params
