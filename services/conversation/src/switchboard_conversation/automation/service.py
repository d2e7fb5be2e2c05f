"""Automation: the acknowledgement auto-reply (a consumer batch handler) and canned responses.

Services take the session first, flush but never commit, raise neutral errors and write their events to
the outbox in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.auth import Principal
from switchboard_common.db.outbox import Outbox, OutboxEvent
from switchboard_common.errors import Conflict, Forbidden, NotFound
from switchboard_common.events import (
    Channel,
    ConversationQueued,
    EventEnvelope,
    IdentityKind,
    MessageOutbound,
    outbound_event_id,
    utcnow,
)
from switchboard_conversation.automation import repository, templates
from switchboard_conversation.automation.autoreply import AckTemplates, ack_id, ack_key, compose
from switchboard_conversation.automation.models import CannedResponse
from switchboard_conversation.automation.repository import NewAutomated
from switchboard_conversation.conversations import repository as conversations
from switchboard_conversation.conversations.service import PRODUCER, RECIPIENT_KIND

# --- the acknowledgement -------------------------------------------------------------------------------

# A message "sent" on voice is a callback call: a caller is never phoned back to be told they wait.
SILENT_CHANNELS = frozenset({Channel.VOICE.value})


async def acknowledge(
    session: AsyncSession,
    outbox: Outbox,
    queued: Sequence[tuple[EventEnvelope, ConversationQueued]],
    texts: AckTemplates,
) -> None:
    """Send each conversation the router left waiting one automated reply: its expected wait, or when its
    team opens. Three statements for the batch whatever its size (two when none is still waiting).

    Idempotent: the message id and idempotency key derive from the (re)opening, so a redelivered event
    stores and sends nothing. A conversation no longer waiting (assigned or resolved meanwhile) gets
    nothing, and neither does a customer with no address on the channel they wrote on. The reply is no
    first response (``first_replied_at`` is left alone) and is marked ``automated``.
    """
    first: dict[uuid.UUID, tuple[EventEnvelope, ConversationQueued]] = {}
    for envelope, event in queued:
        first.setdefault(ack_id(event), (envelope, event))
    if not first:
        return
    targets = await repository.ack_targets(
        session,
        list(dict.fromkeys(e.conversation_id for _, e in first.values())),
        {channel.value: kind.value for channel, kind in RECIPIENT_KIND.items()},
    )
    at = utcnow()
    planned: dict[uuid.UUID, tuple[EventEnvelope, NewAutomated, repository.AckTarget]] = {}
    for message_id, (envelope, event) in first.items():
        target = targets.get(event.conversation_id)
        if target is None or target.recipient is None or target.channel in SILENT_CHANNELS:
            continue  # no longer waiting, or unreachable on that channel: no acknowledgement, no error
        body = compose(event, target.display_name, target.channel, texts)
        new = NewAutomated(message_id, event.conversation_id, target.channel, body, at, ack_key(event))
        planned[message_id] = (envelope, new, target)
    stored = await repository.add_automated(session, [new for _, new, _ in planned.values()])
    out: list[OutboxEvent] = []
    for envelope, new, target in planned.values():
        if new.id not in stored:
            continue  # sent before: a redelivery
        outbound = MessageOutbound(
            message_id=new.id,
            conversation_id=new.conversation_id,
            customer_id=target.customer_id,
            channel=Channel(new.channel),
            agent_id=None,
            text=new.body,
            sent_at=new.at,
            recipient=target.recipient,
            automated=True,
            **_threading(target),
        )
        wrapped = EventEnvelope.wrap(
            outbound, producer=PRODUCER, causation=envelope, event_id=outbound_event_id(new.id)
        )
        out.append((topics.MESSAGES_OUTBOUND, str(new.conversation_id), wrapped))
    await outbox.add_many(session, out)


def _threading(target: repository.AckTarget) -> dict[str, Any]:
    """An email acknowledgement answers the customer's latest email, so it lands in the same thread."""
    if target.channel != Channel.EMAIL.value or target.email_id is None:
        return {}
    earlier = [r for r in reversed(target.email_refs or []) if r != target.email_id]
    return {
        "subject": target.email_subject,
        "in_reply_to": target.email_id,
        "references": [*earlier, target.email_id],
    }


# --- canned responses ----------------------------------------------------------------------------------


def _admin(principal: Principal) -> None:
    if not principal.sees_all:
        raise Forbidden("supervisors and the admin credential manage canned responses")


async def list_canned(session: AsyncSession) -> Sequence[CannedResponse]:
    return await repository.list_canned(session)


async def get_canned(session: AsyncSession, canned_id: uuid.UUID) -> CannedResponse:
    canned = await repository.get_canned(session, canned_id)
    if canned is None:
        raise NotFound("canned response not found")
    return canned


def _taken() -> Conflict:
    return Conflict("another canned response has this shortcut", code="shortcut_taken")


async def create_canned(
    session: AsyncSession, principal: Principal, values: Mapping[str, Any]
) -> CannedResponse:
    """``values`` (shortcut, title, body) were checked by the schema: the body renders in the sandbox."""
    _admin(principal)
    canned = await repository.insert_canned(session, values)
    if canned is None:
        raise _taken()
    return canned


async def update_canned(
    session: AsyncSession, principal: Principal, canned_id: uuid.UUID, values: Mapping[str, Any]
) -> CannedResponse:
    _admin(principal)
    try:
        canned = await repository.update_canned(session, canned_id, values)
    except sa_exc.IntegrityError as exc:
        raise _taken() from exc
    if canned is None:
        raise NotFound("canned response not found")
    return canned


async def delete_canned(session: AsyncSession, principal: Principal, canned_id: uuid.UUID) -> None:
    _admin(principal)
    if not await repository.delete_canned(session, canned_id):
        raise NotFound("canned response not found")


async def render_canned(
    session: AsyncSession, principal: Principal, conversation_id: uuid.UUID, canned_id: uuid.UUID
) -> tuple[CannedResponse, str]:
    """The canned response filled for a conversation the principal may see (someone else's is NotFound,
    as a missing one): the customer's name, email and phone, the conversation's channel, the agent."""
    conversation = await conversations.get_readable(session, principal, conversation_id)
    if conversation is None:
        raise NotFound("conversation not found")
    canned = await get_canned(session, canned_id)
    customer = await conversations.get_customer(session, conversation.customer_id)
    identities = await conversations.identities_of(session, conversation.customer_id)

    def first_of(kind: IdentityKind) -> str | None:
        return next((i.value for i in identities if i.kind == kind.value), None)

    display_name = customer.display_name if customer is not None else None
    variables = {
        "customer": {
            "first_name": templates.first_name(display_name),
            "display_name": display_name,
            "email": first_of(IdentityKind.EMAIL),
            "phone": first_of(IdentityKind.PHONE),
        },
        "conversation": {"id": str(conversation.id), "channel": conversation.last_channel},
        "channel": conversation.last_channel,
        "agent": {"id": str(principal.agent_id) if principal.agent_id is not None else None},
    }
    try:
        return canned, templates.render(canned.body, variables)
    except templates.TemplateRefused as exc:
        raise Conflict(str(exc), code="template_failed") from exc
