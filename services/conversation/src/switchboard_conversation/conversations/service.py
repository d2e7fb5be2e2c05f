"""The conversation domain: one thread per customer across channels.

Services take the session first, flush but never commit (the caller's unit of work does), raise neutral
domain errors, and write their events to the outbox in the same transaction. The consumer handlers take a
whole batch and issue a fixed number of statements whatever its size.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.auth import Principal
from switchboard_common.db.outbox import Outbox, OutboxEvent
from switchboard_common.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from switchboard_common.events import (
    OPENING_TEXT_MAX,
    Channel,
    ConversationAssigned,
    ConversationMessageAdded,
    ConversationOpened,
    ConversationQueued,
    ConversationReopened,
    ConversationRequeued,
    ConversationResolved,
    ConversationStatusChanged,
    ConversationTagsChanged,
    ConversationTransferRequested,
    DeliveryStatusChanged,
    Direction,
    EventEnvelope,
    IdentityKind,
    MessageOutbound,
    MessageReceived,
    SurveyAnswered,
    outbound_event_id,
    utcnow,
)
from switchboard_common.logging import correlation_id
from switchboard_conversation.conversations import repository
from switchboard_conversation.conversations.linking import Sender, key_of, link
from switchboard_conversation.conversations.repository import (
    Assignment,
    DeliveryReportRow,
    NewConversation,
    NewMessage,
    NewReply,
    PendingSurvey,
    Queued,
    ReopenedConversation,
    Requeue,
)
from switchboard_conversation.customers import repository as customers_repository
from switchboard_conversation.models import (
    WITH_AGENT,
    Conversation,
    ConversationStatus,
    Customer,
    CustomerIdentity,
    Message,
    MessageDirection,
)
from switchboard_conversation.settings import DEFAULT_REOPEN_WINDOW_S
from switchboard_conversation.stream import service as stream
from switchboard_conversation.surveys import repository as surveys_repository
from switchboard_conversation.surveys.policy import SurveyKind, needs_follow_up, parse_answer

PRODUCER = "conversation"
DEFAULT_REOPEN_WINDOW = timedelta(seconds=DEFAULT_REOPEN_WINDOW_S)

Received = tuple[EventEnvelope, MessageReceived]

# Where a reply on each channel is addressed: the customer's identity of this kind.
RECIPIENT_KIND: dict[Channel, IdentityKind] = {
    Channel.API: IdentityKind.API,
    Channel.WHATSAPP: IdentityKind.PHONE,
    Channel.SMS: IdentityKind.PHONE,
    Channel.VOICE: IdentityKind.PHONE,
    Channel.EMAIL: IdentityKind.EMAIL,
    Channel.MESSENGER: IdentityKind.MESSENGER,
    Channel.INSTAGRAM: IdentityKind.INSTAGRAM,
    Channel.WEBCHAT: IdentityKind.WEBCHAT,
}


def _attachments_json(event: MessageReceived) -> str | None:
    if not event.attachments:
        return None
    return json.dumps([a.model_dump(mode="json", exclude_none=True) for a in event.attachments])


def _unique_new(received: Sequence[Received]) -> list[Received]:
    """Drop repeats inside the batch (a redelivery in the same poll), keeping the first."""
    seen: set[uuid.UUID] = set()
    out = []
    for envelope, event in received:
        if event.message_id not in seen:
            seen.add(event.message_id)
            out.append((envelope, event))
    return out


async def record_inbound(
    session: AsyncSession,
    outbox: Outbox,
    received: Sequence[Received],
    reopen_window: timedelta = DEFAULT_REOPEN_WINDOW,
) -> None:
    """Store inbound messages, each in its customer's open conversation. A customer without one gets their
    latest conversation back if it was resolved within ``reopen_window`` of their message (a zero window
    never reopens), else a new conversation.

    Idempotent: a message id (or a channel's message id) already stored changes nothing, and reopens
    nothing. Two messages of one customer in the batch share one conversation; a conversation another
    transaction opened or reopened for the customer meanwhile is found and used.
    """
    batch = _unique_new(received)
    keys = list(dict.fromkeys(key_of(i) for _, e in batch for i in (e.sender, *e.identities)))
    refs = list(dict.fromkeys(ref for _, e in batch for ref in e.thread_refs))
    known = await repository.known(session, [e.message_id for _, e in batch], keys, refs)
    batch = [(envelope, e) for envelope, e in batch if e.message_id not in known.stored]
    if not batch:
        return
    senders = [
        Sender(
            e.sender,
            e.identities,
            e.display_name,
            # An email answering one in a customer's thread (ours or theirs) belongs to that customer.
            replied_to=next((known.threads[r] for r in e.thread_refs if r in known.threads), None),
        )
        for _, e in batch
    ]

    # 1. Customers: link every message to its customer (pure policy), then write what is new.
    linking = link(senders, known.owners)
    inserted = await repository.add_customers(
        session, linking.new_customers, linking.new_identities, linking.names_to_fill
    )
    if not linking.claimed <= inserted:
        # Another transaction attached one of a new customer's identities first (the same sender, or the
        # same email or phone from another channel): retry the batch, which will then find that customer.
        raise Unavailable("a new customer's identity was claimed concurrently; retrying")

    # A customer's first score in the batch for the survey they were asked answers it, in the surveyed
    # conversation: it neither reopens that conversation nor opens another.
    answers, superseded = _survey_answers(batch, linking.customer_of, known.surveys)

    # 2. Conversations: reopen a returning customer's recently resolved one, else propose a new one for
    # every customer (opened by their first message here); the one-unresolved-per-customer index keeps
    # the customers who have one, which are then locked.
    proposed: dict[uuid.UUID, NewConversation] = {}
    first: dict[uuid.UUID, Received] = {}
    for (envelope, event), customer in zip(batch, linking.customer_of, strict=True):
        if customer not in proposed and event.message_id not in answers:
            first[customer] = (envelope, event)
            proposed[customer] = NewConversation(
                id=uuid.uuid4(),
                customer_id=customer,
                channel=event.channel.value,
                required_skills=event.required_skills,
                priority=event.priority,
                opened_at=event.received_at,
            )
    # A customer created here has no conversation to reopen.
    reopenable = (
        {c: new.opened_at for c, new in proposed.items() if c not in linking.new_customers}
        if reopen_window > timedelta(0)
        else {}
    )
    opening = await repository.open_conversations(session, list(proposed.values()), reopenable, reopen_window)
    opened = {c: new for c, new in proposed.items() if new.id in opening.opened}
    open_of = {c: new.id for c, new in opened.items()} | {c: r.id for c, r in opening.reopened.items()}
    existing = [c for c in proposed if c not in open_of]
    if existing:
        open_of.update({c: o.id for c, o in (await repository.lock_unresolved(session, existing)).items()})
        if len(open_of) < len(proposed):
            # Its conversation was resolved between the two statements: retry and open a new one.
            raise Unavailable("a conversation was resolved concurrently; retrying")

    # 3. Messages with each conversation's latest activity, then the events: one statement each. An opened
    # or reopened conversation is announced before its first message here.
    messages = [
        NewMessage(
            id=e.message_id,
            conversation_id=answers[e.message_id][0].conversation_id
            if e.message_id in answers
            else open_of[customer],
            channel=e.channel.value,
            external_id=e.external_id,
            direction=Direction.INBOUND.value,
            body=e.text,
            sent_at=e.sent_at,
            received_at=e.received_at,
            attachments=_attachments_json(e),
            content_kind=e.content_kind,
            subject=e.subject,
            original_body=e.original_text,
            thread_refs=json.dumps(e.thread_refs) if e.thread_refs else None,
        )
        for (_, e), customer in zip(batch, linking.customer_of, strict=True)
    ]
    stored_now = await repository.insert_messages(session, messages)
    out: list[OutboxEvent] = []
    for customer, new in opened.items():
        envelope, event = first[customer]
        out.append(_event(_opened(new, event), envelope))
    for customer, reopened in opening.reopened.items():
        envelope, event = first[customer]
        out.append(_event(_reopened(reopened, event), envelope))
    for (envelope, event), message in zip(batch, messages, strict=True):
        if message.id not in stored_now:
            continue  # the channel's id was stored under another message id: a duplicate
        added = ConversationMessageAdded(
            conversation_id=message.conversation_id,
            message_id=message.id,
            channel=event.channel,
            direction=Direction.INBOUND,
            sent_at=event.sent_at,
        )
        out.append(_event(added, envelope))
    out += await _record_answers(session, answers, superseded, stored_now)
    await outbox.add_many(session, out)


def _survey_answers(
    batch: Sequence[Received], customers: Sequence[uuid.UUID], pending: Mapping[uuid.UUID, PendingSurvey]
) -> tuple[dict[uuid.UUID, tuple[PendingSurvey, int, MessageReceived]], list[uuid.UUID]]:
    """Message id -> (the survey it answers, the score, the message) when a customer's first message in the
    batch is a score on their pending survey's scale; and the surveys whose customer wrote something else
    first (no longer open to an answer)."""
    out: dict[uuid.UUID, tuple[PendingSurvey, int, MessageReceived]] = {}
    decided: set[uuid.UUID] = set()
    superseded: list[uuid.UUID] = []
    for (_, event), customer in zip(batch, customers, strict=True):
        survey = pending.get(customer)
        if survey is None or survey.id in decided:
            continue
        decided.add(survey.id)
        score = parse_answer(SurveyKind(survey.kind), event.text)
        if score is None:
            superseded.append(survey.id)
        else:
            out[event.message_id] = (survey, score, event)
    return out, superseded


async def _record_answers(
    session: AsyncSession,
    answers: Mapping[uuid.UUID, tuple[PendingSurvey, int, MessageReceived]],
    superseded: Sequence[uuid.UUID],
    stored_now: set[uuid.UUID],
) -> list[OutboxEvent]:
    """Record the answers whose messages were stored now and close the superseded surveys (one statement,
    only when a customer of the batch had a survey open), flag the low scores' conversations, and announce
    each answer once."""
    recorded = await surveys_repository.record_answers(
        session,
        [
            surveys_repository.Answer(
                survey.id,
                score,
                event.received_at,
                message_id,
                needs_follow_up(SurveyKind(survey.kind), score),
            )
            for message_id, (survey, score, event) in answers.items()
            if message_id in stored_now
        ],
        superseded,
        utcnow(),
    )
    return [
        _event(
            SurveyAnswered(
                survey_id=a.survey_id,
                conversation_id=a.conversation_id,
                customer_id=a.customer_id,
                kind=a.kind,
                score=a.score,
                follow_up=a.follow_up,
                channel=Channel(a.channel),
                agent_id=a.agent_id,
                asked_at=a.asked_at,
                answered_at=a.answered_at,
            ),
            None,
        )
        for a in recorded
    ]


def _opened(new: NewConversation, first: MessageReceived) -> ConversationOpened:
    return ConversationOpened(
        conversation_id=new.id,
        customer_id=new.customer_id,
        channel=first.channel,
        required_skills=list(new.required_skills),
        priority=new.priority,
        opened_at=new.opened_at,
        text=first.text[:OPENING_TEXT_MAX],
        customer_attributes=first.customer_attributes,
    )


def _reopened(conversation: ReopenedConversation, first: MessageReceived) -> ConversationReopened:
    return ConversationReopened(
        conversation_id=conversation.id,
        customer_id=conversation.customer_id,
        channel=first.channel,
        required_skills=list(conversation.required_skills),
        priority=conversation.priority,
        reopened_at=conversation.reopened_at,
        previous_agent_id=conversation.previous_agent_id,
    )


def _event(
    payload: ConversationOpened
    | ConversationReopened
    | ConversationMessageAdded
    | ConversationResolved
    | ConversationStatusChanged
    | ConversationTagsChanged
    | ConversationTransferRequested
    | SurveyAnswered,
    cause: EventEnvelope | None,
) -> OutboxEvent:
    """An event about one conversation: keyed by its id, so everything about it stays in order."""
    envelope = EventEnvelope.wrap(payload, producer=PRODUCER, causation=cause)
    return (topics.CONVERSATION_EVENTS, str(payload.conversation_id), envelope)


async def record_requeues(session: AsyncSession, events: Sequence[ConversationRequeued]) -> None:
    """The router took these conversations from their agents (who went offline): they wait again, and
    their former agent no longer sees them."""
    await repository.unassign(
        session, {e.conversation_id: Requeue(e.agent_id, e.reason.value, e.requeued_at) for e in events}
    )


async def record_assignments(session: AsyncSession, events: Sequence[ConversationAssigned]) -> None:
    """Record who each conversation was assigned to (the latest assignment in the batch wins)."""
    await repository.mark_assigned(
        session,
        {e.conversation_id: Assignment(e.agent_id, e.assigned_at, e.queued_at, e.queue) for e in events},
    )


def resolution_time(conversation: Conversation, now: datetime) -> datetime:
    """``now``, but never before the conversation (re)started waiting: the router tells a stale resolution
    or reopen from the current one by comparing these times, which other services' clocks set (ingest's
    for the opening, a message's for a reopen), so a skewed clock must not put a resolution first."""
    floor = conversation.opened_at
    if conversation.reopened_at is not None:
        floor = max(floor, conversation.reopened_at + timedelta(microseconds=1))
    return max(now, floor)


async def resolve(
    session: AsyncSession,
    outbox: Outbox,
    principal: Principal,
    conversation_id: uuid.UUID,
    at: datetime | None = None,
) -> Conversation:
    """Resolve a conversation the principal may see. Someone else's answers NotFound like a missing one,
    so ids are not confirmed to outsiders."""
    conversation = await repository.get_readable(session, principal, conversation_id, for_update=True)
    if conversation is None:
        raise NotFound("conversation not found")
    if conversation.status == ConversationStatus.RESOLVED.value:
        raise Conflict("conversation is already resolved", code="already_resolved")
    _require_holder(principal, conversation)
    conversation.status = ConversationStatus.RESOLVED.value
    conversation.snoozed_until = None
    conversation.resolved_at = resolution_time(conversation, at or utcnow())
    await session.flush()
    resolved = ConversationResolved(
        conversation_id=conversation.id,
        agent_id=conversation.assigned_agent_id,
        resolved_at=conversation.resolved_at,
    )
    await outbox.add_many(session, [_event(resolved, None)])
    await stream.resolved(session, conversation.id, conversation.assigned_agent_id, conversation.resolved_at)
    return conversation


# --- agents' replies and notes --------------------------------------------------------------------------


async def _writable(
    session: AsyncSession, principal: Principal, conversation_id: uuid.UUID, *, resolved_too: bool
) -> tuple[Conversation, uuid.UUID]:
    """The conversation an agent writes to, locked (a resolution waits for the write, and the write for
    it), with the agent's id. Someone else's conversation is NotFound; a resolved one is a Conflict unless
    ``resolved_too``."""
    if principal.agent_id is None:
        # The admin credential is nobody: a reply or note must have an agent as its author.
        raise Forbidden("only an agent can write to a conversation")
    conversation = await repository.get_readable(session, principal, conversation_id, for_update=True)
    if conversation is None:
        raise NotFound("conversation not found")
    if conversation.status == ConversationStatus.RESOLVED.value and not resolved_too:
        raise Conflict("conversation is resolved", code="conversation_resolved")
    if not resolved_too:
        _require_holder(principal, conversation)
    return conversation, principal.agent_id


def _require_holder(principal: Principal, conversation: Conversation) -> None:
    """Replying to or resolving a conversation is for the agent who has it (or a supervisor): a team
    member sees the conversations waiting in the team's queue, but takes one through the router first."""
    if not principal.sees_all and conversation.assigned_agent_id != principal.agent_id:
        raise Forbidden("the conversation is not assigned to you", code="not_assigned")


async def reply(
    session: AsyncSession,
    outbox: Outbox,
    principal: Principal,
    conversation_id: uuid.UUID,
    text: str,
    idempotency_key: str,
    channel: Channel | None = None,
) -> tuple[Message, bool]:
    """An agent's reply: stored in the thread, queued for delivery through ``channel`` (by default the one
    the customer last wrote on), and handed to the dispatcher as ``message.outbound`` through the outbox.
    Returns it and whether it is new.

    Idempotent by ``idempotency_key`` within the conversation: the same request again returns the reply
    stored the first time and emits nothing; the same key with another text or channel is a Conflict.
    """
    conversation, agent_id = await _writable(session, principal, conversation_id, resolved_too=False)
    at = utcnow()
    via = channel or Channel(conversation.last_channel)
    new = NewReply(
        id=uuid.uuid4(),
        conversation_id=conversation.id,
        channel=via.value,
        body=text,
        agent_id=agent_id,
        idempotency_key=idempotency_key,
        at=at,
    )
    message = await repository.add_reply(session, new)
    if message.id != new.id:
        if message.body != text or (channel is not None and message.channel != channel.value):
            raise Conflict("this idempotency key was used for another reply", code="idempotency_key_reused")
        return message, False
    # After the idempotency check, so a retried request is answered as the first was; the caller's unit of
    # work rolls the stored reply back when the customer cannot be reached.
    recipient = await recipient_of(session, conversation.customer_id, via)
    threading = await email_threading(session, conversation.id) if via is Channel.EMAIL else {}
    event = MessageOutbound(
        message_id=message.id,
        conversation_id=conversation.id,
        customer_id=conversation.customer_id,
        channel=Channel(new.channel),
        agent_id=agent_id,
        text=text,
        sent_at=at,
        recipient=recipient,
        **threading,
    )
    envelope = EventEnvelope.wrap(
        event, producer=PRODUCER, correlation_id=correlation_id.get(), event_id=outbound_event_id(message.id)
    )
    await outbox.add_many(session, [(topics.MESSAGES_OUTBOUND, str(conversation.id), envelope)])
    await stream.message_added(session, message.id)
    return message, True


async def recipient_of(session: AsyncSession, customer_id: uuid.UUID, channel: Channel) -> str:
    """The customer's address on ``channel``; a Conflict when they have none there (a reply could not
    reach them)."""
    kind = RECIPIENT_KIND[channel]
    # The customer's own identities in a stable order: the first of the kind is where replies go.
    for identity in await repository.identities_of(session, customer_id):
        if identity.kind == kind.value:
            return identity.value
    raise Conflict(
        f"the customer has no {kind.value} identity, so a reply on {channel.value} cannot reach them",
        code="customer_unreachable",
    )


async def email_threading(session: AsyncSession, conversation_id: uuid.UUID) -> dict[str, Any]:
    """Subject and threading headers for an email reply: it answers the customer's latest email, so it
    lands in the same thread of their mail client."""
    parent = await repository.latest_inbound(session, conversation_id, Channel.EMAIL.value)
    if parent is None or parent.external_id is None:
        return {}
    # thread_refs are newest first; References lists the thread oldest first, ending with the parent.
    earlier = [r for r in reversed(parent.thread_refs or []) if r != parent.external_id]
    return {
        "subject": parent.subject,
        "in_reply_to": parent.external_id,
        "references": [*earlier, parent.external_id],
    }


async def record_delivery(session: AsyncSession, events: Sequence[DeliveryStatusChanged]) -> None:
    """Fold delivery reports (the dispatcher's and providers' callbacks) into the replies' status.
    Idempotent: a report is kept once per (provider id, status), and a status never moves backwards."""
    await repository.record_delivery(
        session,
        [
            DeliveryReportRow(
                channel=e.channel.value,
                message_id=e.message_id,
                external_id=e.external_id,
                status=e.status.value,
                at=e.at,
                error_code=e.error_code,
                error_reason=e.error_reason,
            )
            for e in events
        ],
    )


async def add_note(
    session: AsyncSession, principal: Principal, conversation_id: uuid.UUID, text: str
) -> Message:
    """An internal note in the thread: for agents only, it never reaches the customer. A resolved
    conversation takes notes too (a wrap-up after resolving)."""
    conversation, agent_id = await _writable(session, principal, conversation_id, resolved_too=True)
    note = await repository.add_note(session, conversation.id, agent_id, text, utcnow())
    await stream.message_added(session, note.id)
    return note


# --- lifecycle: queues, snoozes, reopening, tags --------------------------------------------------------


async def record_queued(session: AsyncSession, events: Sequence[ConversationQueued]) -> None:
    """The router left these conversations waiting: record the queue and the team that serves it (its
    agents see them), and a new one becomes queued."""
    await repository.mark_queued(session, {e.conversation_id: Queued(e.queue, e.team) for e in events})


def _status_event(
    conversation: Conversation, previous: str, agent_id: uuid.UUID | None, at: datetime
) -> OutboxEvent:
    changed = ConversationStatusChanged(
        conversation_id=conversation.id,
        status=conversation.status,
        previous_status=previous,
        agent_id=agent_id,
        snoozed_until=conversation.snoozed_until,
        changed_at=at,
    )
    return _event(changed, None)


async def snooze(
    session: AsyncSession,
    outbox: Outbox,
    principal: Principal,
    conversation_id: uuid.UUID,
    until: datetime,
    now: datetime | None = None,
) -> Conversation:
    """Put a conversation the agent works on aside until ``until``; the customer's next message, or the
    time, wakes it (waiting on the agent). Snoozing again moves the time."""
    now = now or utcnow()
    conversation = await _with_agent(session, principal, conversation_id)
    if until <= now:
        raise Invalid("a snooze must end in the future", code="snooze_in_past")
    previous = conversation.status
    conversation.status = ConversationStatus.SNOOZED.value
    conversation.snoozed_until = until
    await session.flush()
    await outbox.add_many(session, [_status_event(conversation, previous, principal.agent_id, now)])
    return conversation


async def unsnooze(
    session: AsyncSession, outbox: Outbox, principal: Principal, conversation_id: uuid.UUID
) -> Conversation:
    """Wake a snoozed conversation now."""
    conversation = await _with_agent(session, principal, conversation_id)
    if conversation.status != ConversationStatus.SNOOZED.value:
        raise Conflict("the conversation is not snoozed", code="not_snoozed")
    conversation.status = ConversationStatus.WAITING_ON_AGENT.value
    conversation.snoozed_until = None
    await session.flush()
    previous = ConversationStatus.SNOOZED.value
    await outbox.add_many(session, [_status_event(conversation, previous, principal.agent_id, utcnow())])
    return conversation


async def _with_agent(
    session: AsyncSession, principal: Principal, conversation_id: uuid.UUID
) -> Conversation:
    """A conversation the principal may see, locked, that an agent holds (not waiting, not resolved)."""
    conversation = await repository.get_readable(session, principal, conversation_id, for_update=True)
    if conversation is None:
        raise NotFound("conversation not found")
    if conversation.status not in WITH_AGENT:
        raise Conflict(
            f"only a conversation with an agent can be snoozed or woken; this one is {conversation.status}",
            code="not_with_agent",
        )
    return conversation


async def wake_due(session: AsyncSession, outbox: Outbox, now: datetime, limit: int = 500) -> int:
    """Wake the snoozed conversations whose time has come (one statement, then their events)."""
    woke = await repository.wake_due(session, now, limit)
    events = [
        _event(
            ConversationStatusChanged(
                conversation_id=conversation_id,
                status=ConversationStatus.WAITING_ON_AGENT.value,
                previous_status=ConversationStatus.SNOOZED.value,
                agent_id=None,
                changed_at=now,
            ),
            None,
        )
        for conversation_id, _ in woke
    ]
    await outbox.add_many(session, events)
    return len(woke)


async def reopen(
    session: AsyncSession,
    outbox: Outbox,
    principal: Principal,
    conversation_id: uuid.UUID,
    at: datetime | None = None,
) -> Conversation:
    """An agent reopens a resolved conversation: it waits for an agent again, and the router prefers the
    one who had it (as when the customer writes back within the reopen window)."""
    conversation = await repository.get_readable(session, principal, conversation_id, for_update=True)
    if conversation is None:
        raise NotFound("conversation not found")
    if conversation.status != ConversationStatus.RESOLVED.value:
        raise Conflict("only a resolved conversation can be reopened", code="not_resolved")
    previous_agent = conversation.assigned_agent_id
    assert conversation.resolved_at is not None  # resolved
    # After its resolution, strictly, so the router orders the reopen after it (see resolution_time).
    reopened_at = max(at or utcnow(), conversation.resolved_at + timedelta(microseconds=1))
    conversation.status = ConversationStatus.REOPENED.value
    conversation.resolved_at = None
    conversation.assigned_agent_id = None
    conversation.assigned_at = None
    conversation.reopened_at = reopened_at
    conversation.reopen_count += 1
    try:
        await session.flush()
    except sa_exc.IntegrityError as exc:
        # The one-unresolved-per-customer index: the customer has a newer conversation going.
        raise Conflict(
            "the customer has another conversation open; work there", code="customer_has_open_conversation"
        ) from exc
    reopened = ConversationReopened(
        conversation_id=conversation.id,
        customer_id=conversation.customer_id,
        channel=Channel(conversation.last_channel),
        required_skills=list(conversation.required_skills),
        priority=conversation.priority,
        reopened_at=reopened_at,
        previous_agent_id=previous_agent,
    )
    await outbox.add_many(session, [_event(reopened, None)])
    return conversation


async def change_tags(
    session: AsyncSession,
    outbox: Outbox,
    principal: Principal,
    conversation_id: uuid.UUID,
    add: Sequence[str],
    remove: Sequence[str],
) -> Conversation:
    """Add and remove tags (names from the catalogue). Adding a tag it has, or removing one it lacks,
    changes nothing; a request that changes nothing emits nothing."""
    conversation = await repository.get_readable(session, principal, conversation_id, for_update=True)
    if conversation is None:
        raise NotFound("conversation not found")
    unknown = await repository.unknown_tags(session, list(dict.fromkeys(add)))
    if unknown:
        # The catalogue's state, not the request's shape, refuses it (the name itself is well formed).
        raise Conflict(f"not in the tags catalogue: {', '.join(unknown)}", code="unknown_tag")
    before = list(conversation.tags)
    after = sorted((set(before) | set(add)) - set(remove))
    if after == sorted(before):
        return conversation
    conversation.tags = after
    await session.flush()
    changed = ConversationTagsChanged(
        conversation_id=conversation.id,
        tags=after,
        added=sorted(set(after) - set(before)),
        removed=sorted(set(before) - set(after)),
        agent_id=principal.agent_id,
        changed_at=utcnow(),
    )
    await outbox.add_many(session, [_event(changed, None)])
    return conversation


@dataclass(frozen=True, slots=True)
class Transfer:
    to_agent_id: uuid.UUID | None = None
    skills: Sequence[str] | None = None
    queue: str | None = None
    note: str | None = None


async def transfer(
    session: AsyncSession, outbox: Outbox, principal: Principal, conversation_id: uuid.UUID, to: Transfer
) -> Conversation:
    """Hand a conversation on, to an agent or to the queue with other skills or another queue. The router
    carries it out (its requeue and assignment events update the conversation); the whole thread and the
    handoff card go with it, and ``note`` is left in the thread for whoever takes it."""
    conversation = await _with_agent(session, principal, conversation_id)
    _require_holder(principal, conversation)
    holder = conversation.assigned_agent_id
    assert holder is not None  # with an agent
    if to.to_agent_id == holder:
        raise Conflict("the conversation is already with that agent", code="same_agent")
    now = utcnow()
    if to.note is not None:
        if principal.agent_id is None:
            raise Forbidden("only an agent can write a note", code="forbidden")
        await repository.add_note(session, conversation.id, principal.agent_id, to.note, now)
    requested = ConversationTransferRequested(
        conversation_id=conversation.id,
        from_agent_id=holder,
        to_agent_id=to.to_agent_id,
        required_skills=sorted(set(to.skills)) if to.skills is not None else None,
        queue=to.queue,
        requested_by=principal.agent_id,
        requested_at=now,
    )
    await outbox.add_many(session, [_event(requested, None)])
    return conversation


# --- the customer, the history and the handoff card -----------------------------------------------------


async def readable_customer(session: AsyncSession, principal: Principal, customer_id: uuid.UUID) -> Customer:
    """The customer, or for one merged into another, the customer they became (the merge keeps old ids
    answering)."""
    live = await customers_repository.live_id(session, customer_id)
    customer = None if live is None else await repository.get_readable_customer(session, principal, live)
    if customer is None:
        raise NotFound("customer not found")
    return customer


HANDOFF_CONVERSATIONS = 10
HANDOFF_MESSAGES = 10
HANDOFF_NOTES = 10


@dataclass(frozen=True, slots=True)
class Handoff:
    """What whoever picks a conversation up needs, so nobody asks the customer again."""

    conversation: Conversation
    customer: Customer
    identities: Sequence[CustomerIdentity]
    channels: list[str]
    conversations: Sequence[Conversation]  # the customer's, newest first, this one included
    agents: list[tuple[uuid.UUID, datetime]]  # who worked with the customer, most recent first
    notes: list[Message]  # internal notes across the customer's conversations, oldest first
    last_messages: list[Message]  # the customer's and agents' latest messages across channels


async def handoff(session: AsyncSession, principal: Principal, conversation_id: uuid.UUID) -> Handoff:
    conversation = await repository.get_readable(session, principal, conversation_id)
    if conversation is None:
        raise NotFound("conversation not found")
    customer = await repository.get_customer(session, conversation.customer_id)
    assert customer is not None  # a foreign key
    history = await repository.conversations_of(session, customer.id, limit=HANDOFF_CONVERSATIONS, after=None)
    ids = (
        [c.id for c in history]
        if conversation.id in {c.id for c in history}
        else [
            conversation.id,
            *(c.id for c in history),
        ]
    )
    return Handoff(
        conversation=conversation,
        customer=customer,
        identities=await repository.identities_of(session, customer.id),
        channels=await repository.channels_of(session, customer.id),
        conversations=history,
        agents=await repository.agents_of(session, customer.id),
        notes=await repository.messages_page(
            session, ids, limit=HANDOFF_NOTES, directions=(MessageDirection.NOTE,)
        ),
        last_messages=await repository.messages_page(
            session,
            ids,
            limit=HANDOFF_MESSAGES,
            directions=(MessageDirection.INBOUND, MessageDirection.OUTBOUND),
        ),
    )
