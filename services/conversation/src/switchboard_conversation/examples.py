"""The OpenAPI examples of the agent API: one customer's story, told once and reused by every schema
that shows part of it, so the examples agree with each other. Maria wrote on WhatsApp about a double
charge, then emailed the invoice; Ada took the conversation and replied.

``tests/contract`` validates each example against the schema it illustrates.
"""

from __future__ import annotations

from typing import Any

from switchboard_common.http.openapi import examples as examples

CUSTOMER_ID = "0b7e2c2a-8f4e-4c1d-9a53-6f1e2d3c4b5a"
CONVERSATION_ID = "5c9d1e7a-2b3f-4a6c-8d0e-1f2a3b4c5d6e"
EARLIER_CONVERSATION_ID = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
AGENT_ID = "3f2b8c1e-5d4a-4e1b-9c7d-2a6f0e8b1c3d"
CANNED_ID = "7d6c5b4a-3e2f-4a1b-9c8d-7e6f5a4b3c2d"

IDENTITIES: list[dict[str, Any]] = [
    {"kind": "phone", "value": "+34612345678"},
    {"kind": "email", "value": "maria.garcia@example.com"},
]

INBOUND: dict[str, Any] = {
    "id": "6e5d4c3b-2a1f-4e0d-9c8b-7a6f5e4d3c2b",
    "channel": "whatsapp",
    "direction": "inbound",
    "body": "Hi, I was charged twice for my order 1234",
    "sent_at": "2026-12-07T09:14:02Z",
    "received_at": "2026-12-07T09:14:03Z",
    "author_agent_id": None,
    "delivery_status": None,
    "delivery_error": None,
    "attachments": [],
    "content_kind": None,
    "subject": None,
    "original_text": None,
    "automated": False,
}
EMAIL: dict[str, Any] = {
    **INBOUND,
    "id": "8b7a6f5e-4d3c-4b2a-9f1e-0d9c8b7a6f5e",
    "channel": "email",
    "body": "Here is the invoice.",
    "sent_at": "2026-12-07T09:20:41Z",
    "received_at": "2026-12-07T09:20:44Z",
    "attachments": [
        {
            "kind": "document",
            "url": "https://mail.example.net/attachments/a1b2",
            "media_id": None,
            "content_type": "application/pdf",
            "filename": "invoice-1234.pdf",
            "caption": None,
        }
    ],
    "subject": "Re: Your order 1234",
    "original_text": "Here is the invoice.\n\nOn Mon, 7 Dec 2026 Support wrote:\n> Could you send it?",
}
REPLY: dict[str, Any] = {
    **INBOUND,
    "id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    "direction": "outbound",
    "body": "I have refunded the double charge.",
    "sent_at": "2026-12-07T09:23:10Z",
    "received_at": "2026-12-07T09:23:10Z",
    "author_agent_id": AGENT_ID,
    "delivery_status": "delivered",
}
NOTE: dict[str, Any] = {
    **INBOUND,
    "id": "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
    "channel": None,
    "direction": "note",
    "body": "Invoice 1234 charged twice; refund issued.",
    "sent_at": "2026-12-07T09:22:30Z",
    "received_at": "2026-12-07T09:22:30Z",
    "author_agent_id": AGENT_ID,
}

SUMMARY: dict[str, Any] = {
    "id": CONVERSATION_ID,
    "customer_id": CUSTOMER_ID,
    "status": "waiting_on_customer",
    "first_channel": "whatsapp",
    "last_channel": "email",
    "required_skills": ["billing"],
    "priority": 0,
    "assigned_agent_id": AGENT_ID,
    "opened_at": "2026-12-07T09:14:03Z",
    "assigned_at": "2026-12-07T09:14:05Z",
    "resolved_at": None,
    "last_message_at": "2026-12-07T09:23:10Z",
    "first_replied_at": "2026-12-07T09:23:10Z",
    "snoozed_until": None,
    "tags": ["what:billing", "why:double-charge"],
    "queue": "default",
    "team": "support",
    "follow_up": False,
    "merged_into": None,
}
EARLIER: dict[str, Any] = {
    **SUMMARY,
    "id": EARLIER_CONVERSATION_ID,
    "status": "resolved",
    "first_channel": "sms",
    "last_channel": "sms",
    "opened_at": "2026-10-02T16:40:00Z",
    "assigned_at": "2026-10-02T16:40:09Z",
    "resolved_at": "2026-10-02T17:05:00Z",
    "last_message_at": "2026-10-02T17:01:12Z",
    "first_replied_at": "2026-10-02T16:44:51Z",
    "tags": ["what:delivery"],
}
CONVERSATION: dict[str, Any] = {
    **SUMMARY,
    "customer": {"id": CUSTOMER_ID, "display_name": "María García", "identities": IDENTITIES},
    "messages": [INBOUND, EMAIL, NOTE, REPLY],
}
PROFILE: dict[str, Any] = {
    "id": CUSTOMER_ID,
    "display_name": "María García",
    "created_at": "2026-10-02T16:40:00Z",
    "identities": IDENTITIES,
    "channels": ["sms", "whatsapp", "email"],
}
# Page cursors as the lists hand them out: microseconds since year 1, then the last item's id.
NEXT_CURSOR = "63906837243000000-5c9d1e7a2b3f4a6c8d0e1f2a3b4c5d6e"
CONVERSATION_LIST: dict[str, Any] = {
    "items": [SUMMARY],
    "next_cursor": NEXT_CURSOR,
    "next_before": "2026-12-07T09:23:10Z",
}
CONVERSATION_PAGE: dict[str, Any] = {"items": [SUMMARY, EARLIER], "next_cursor": None}
MESSAGE_PAGE: dict[str, Any] = {"items": [INBOUND, EMAIL, NOTE, REPLY], "next_cursor": None}
HANDOFF: dict[str, Any] = {
    "conversation": SUMMARY,
    "customer": PROFILE,
    "conversations": [SUMMARY, EARLIER],
    "previous_agents": [{"agent_id": AGENT_ID, "last_at": "2026-12-07T09:23:10Z"}],
    "notes": [NOTE],
    "last_messages": [INBOUND, EMAIL, REPLY],
}
TAG: dict[str, Any] = {"name": "what:billing", "description": "Invoices, charges and refunds"}
CANNED_IN: dict[str, Any] = {
    "shortcut": "/refund",
    "title": "Refund issued",
    "body": "Hi {{ customer.first_name }}, I have refunded the charge; it shows within 5 days.",
}
CANNED: dict[str, Any] = {
    "id": CANNED_ID,
    **CANNED_IN,
    "created_at": "2026-11-30T12:00:00Z",
    "updated_at": "2026-11-30T12:00:00Z",
}
RENDERED: dict[str, Any] = {
    "canned_response_id": CANNED_ID,
    "conversation_id": CONVERSATION_ID,
    "text": "Hi María, I have refunded the charge; it shows within 5 days.",
}
IDENTITY_LINK: dict[str, Any] = {"kind": "email", "value": "maria.garcia@example.com"}
IDENTITY_LINKED: dict[str, Any] = {"customer_id": CUSTOMER_ID, **IDENTITY_LINK}
MERGE_IN: dict[str, Any] = {"source_customer_id": "4d3c2b1a-0f9e-4d8c-8b7a-6f5e4d3c2b1a"}
MERGE: dict[str, Any] = {
    "id": "e1d2c3b4-a5f6-4e7d-8c9b-0a1f2e3d4c5b",
    **MERGE_IN,
    "target_customer_id": CUSTOMER_ID,
    "merged_by_agent_id": AGENT_ID,
    "merged_at": "2026-12-07T09:30:00Z",
    "identities": [{"kind": "email", "value": "m.garcia@example.org"}],
    "conversation_ids": ["f0e1d2c3-b4a5-4f6e-8d7c-9b0a1f2e3d4c"],
    "closed_conversation_id": "f0e1d2c3-b4a5-4f6e-8d7c-9b0a1f2e3d4c",
    "kept_conversation_id": CONVERSATION_ID,
}
