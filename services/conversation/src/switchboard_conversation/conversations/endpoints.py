"""The agent API: an agent sees the conversations assigned to them; an admin credential sees all."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from switchboard_common.auth import CurrentPrincipal, Principal
from switchboard_common.errors import Forbidden, NotFound
from switchboard_common.events import Channel
from switchboard_common.http.deps import RuntimeDep, SessionDep
from switchboard_common.http.openapi import errors
from switchboard_common.validation import StorableDatetime
from switchboard_conversation.conversations import repository, service
from switchboard_conversation.conversations.schemas import (
    AgentWorked,
    ConversationList,
    ConversationPage,
    ConversationPublic,
    ConversationSummary,
    Cursor,
    CustomerProfile,
    CustomerPublic,
    HandoffCard,
    IdentityPublic,
    MessagePage,
    MessagePublic,
    NoteIn,
    ReplyIn,
    SnoozeIn,
    TagName,
    TagPublic,
    TagsChange,
    TagUpsert,
    TransferIn,
)
from switchboard_conversation.models import ConversationStatus, Customer, CustomerIdentity
from switchboard_conversation.settings import ConversationSettings
from switchboard_conversation.surveys import service as surveys

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
MESSAGE_PAGE = 200


# A cursor is "<microseconds since 0001-01-01 UTC>-<id as 32 hex digits>": every string its pattern admits
# is a position (one past the last instant is clamped to it), so no well-formed cursor is refused.
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


def _encode_cursor(at: datetime, last: uuid.UUID) -> str:
    return f"{(at - _EPOCH) // timedelta(microseconds=1)}-{last.hex}"


def _decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if cursor is None:
        return None
    micros, _, last = cursor.partition("-")
    at = (
        _LAST
        if int(micros) > (_LAST - _EPOCH) // timedelta(microseconds=1)
        else _EPOCH + timedelta(microseconds=int(micros))
    )
    return at, uuid.UUID(hex=last)


CursorQuery = Annotated[
    Cursor | None, Query(description="The `next_cursor` of the previous page; none for the first page.")
]


@router.get(
    "",
    summary="Conversations the caller may see: assigned to them, waiting in their teams' queues (all of "
    "them for supervisors), latest activity first",
    responses=errors(401, 422, 503),
)
async def list_conversations(
    principal: CurrentPrincipal,
    session: SessionDep,
    view: Annotated[
        repository.View,
        Query(description="`mine`: assigned to me; `queue`: waiting for an agent; `all`: everything I see."),
    ] = repository.View.ALL,
    status: Annotated[list[ConversationStatus] | None, Query(description="Any of these states.")] = None,
    channel: Annotated[Channel | None, Query(description="With a message on this channel.")] = None,
    tag: TagName | None = None,
    priority: Annotated[int | None, Query(ge=0, le=100, description="At least this priority.")] = None,
    follow_up: Annotated[
        bool | None, Query(description="Flagged for a follow-up (a low satisfaction score), or not.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: CursorQuery = None,
    before: Annotated[
        StorableDatetime | None,
        Query(description="Deprecated (use `cursor`): the `next_before` of the previous page."),
    ] = None,
) -> ConversationList:
    after = _decode_cursor(cursor)
    filters = repository.ListFilter(
        view=view,
        statuses=status or (),
        channel=channel.value if channel is not None else None,
        tag=tag,
        priority=priority,
        follow_up=follow_up,
    )
    rows = await repository.list_readable(
        session,
        principal,
        filters,
        limit=limit,
        after=repository.Cursor(*after) if after is not None else None,
        before=before,
    )
    items = [ConversationSummary.model_validate(r) for r in rows]
    full = len(items) == limit
    return ConversationList(
        items=items,
        next_cursor=_encode_cursor(items[-1].last_message_at, items[-1].id) if full else None,
        next_before=items[-1].last_message_at if full else None,
    )


@router.get(
    "/{conversation_id}",
    summary="A conversation with its customer and latest messages",
    responses=errors(401, 404, 422, 503),
)
async def get_conversation(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> ConversationPublic:
    conversation = await repository.get_readable(session, principal, conversation_id)
    if conversation is None:
        # Someone else's conversation answers 404 like a missing one: ids are not confirmed to outsiders.
        raise NotFound("conversation not found")
    customer = await repository.get_customer(session, conversation.customer_id)
    identities = await repository.identities_of(session, conversation.customer_id)
    messages = await repository.messages_of(session, conversation_id, MESSAGE_PAGE)
    assert customer is not None  # a foreign key
    return ConversationPublic(
        **ConversationSummary.model_validate(conversation).model_dump(),
        customer=CustomerPublic(
            id=customer.id,
            display_name=customer.display_name,
            identities=[IdentityPublic.model_validate(i) for i in identities],
        ),
        messages=[MessagePublic.model_validate(m) for m in messages],
    )


@router.post(
    "/{conversation_id}/resolve",
    summary="Resolve the conversation (frees the agent's capacity); the customer is asked the satisfaction "
    "survey on their channel",
    responses=errors(
        401,
        403,
        404,
        409,
        422,
        503,
        described={
            403: "The conversation waits in your team's queue and is not assigned to you (`not_assigned`).",
            409: "Already resolved (`already_resolved`).",
        },
    ),
)
async def resolve_conversation(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep, runtime: RuntimeDep
) -> ConversationSummary:
    conversation = await service.resolve(session, runtime.outbox, principal, conversation_id)
    settings = runtime.settings
    assert isinstance(settings, ConversationSettings)
    if settings.survey is not None:
        await surveys.ask(session, runtime.outbox, conversation, settings.survey)
    return ConversationSummary.model_validate(conversation)


@router.post(
    "/{conversation_id}/replies",
    summary="Reply to the customer (sent through the channel they last wrote on, or the one given)",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": MessagePublic, "description": "The idempotency key was used: the reply stored then."},
        201: {"description": "The reply, stored and queued for delivery."},
        **errors(
            400,
            401,
            403,
            404,
            409,
            413,
            422,
            503,
            described={
                403: "The admin credential cannot write replies: an agent does (`forbidden`); or the "
                "conversation waits in your team's queue and is not assigned to you (`not_assigned`).",
                409: "The conversation is resolved (`conversation_resolved`), the idempotency key was "
                "used for another reply (`idempotency_key_reused`), or the customer has no address on the "
                "channel (`customer_unreachable`: say, a reply by SMS to someone who only emailed).",
            },
        ),
    },
)
async def reply(
    conversation_id: uuid.UUID,
    body: ReplyIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> MessagePublic:
    message, new = await service.reply(
        session, runtime.outbox, principal, conversation_id, body.text, body.idempotency_key, body.channel
    )
    if not new:
        response.status_code = status.HTTP_200_OK
    return MessagePublic.model_validate(message)


@router.post(
    "/{conversation_id}/notes",
    summary="Add an internal note to the thread (never sent to the customer)",
    status_code=status.HTTP_201_CREATED,
    responses=errors(
        400,
        401,
        403,
        404,
        413,
        422,
        503,
        described={403: "The admin credential cannot write notes: an agent does (`forbidden`)."},
    ),
)
async def add_note(
    conversation_id: uuid.UUID, body: NoteIn, principal: CurrentPrincipal, session: SessionDep
) -> MessagePublic:
    note = await service.add_note(session, principal, conversation_id, body.text)
    return MessagePublic.model_validate(note)


@router.get(
    "/{conversation_id}/messages",
    summary="Page through the thread, from the latest back",
    responses=errors(401, 404, 422, 503),
)
async def thread_page(
    conversation_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: CursorQuery = None,
) -> MessagePage:
    before = _decode_cursor(cursor)
    if await repository.get_readable(session, principal, conversation_id) is None:
        raise NotFound("conversation not found")
    items = await repository.messages_page(session, [conversation_id], limit=limit, before=before)
    return MessagePage(
        items=[MessagePublic.model_validate(m) for m in items],
        next_cursor=_encode_cursor(items[0].sent_at, items[0].id) if len(items) == limit else None,
    )


@router.get(
    "/{conversation_id}/handoff",
    summary="The handoff card: who the customer is, their channels, conversations, agents, notes and "
    "latest messages",
    responses=errors(401, 404, 422, 503),
)
async def handoff_card(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> HandoffCard:
    card = await service.handoff(session, principal, conversation_id)
    return HandoffCard(
        conversation=ConversationSummary.model_validate(card.conversation),
        customer=_profile(card.customer, card.identities, card.channels),
        conversations=[ConversationSummary.model_validate(c) for c in card.conversations],
        previous_agents=[AgentWorked(agent_id=a, last_at=at) for a, at in card.agents],
        notes=[MessagePublic.model_validate(m) for m in card.notes],
        last_messages=[MessagePublic.model_validate(m) for m in card.last_messages],
    )


def _profile(
    customer: Customer, identities: Sequence[CustomerIdentity], channels: list[str]
) -> CustomerProfile:
    return CustomerProfile(
        id=customer.id,
        display_name=customer.display_name,
        created_at=customer.created_at,
        identities=[IdentityPublic.model_validate(i) for i in identities],
        channels=[Channel(c) for c in channels],
    )


_WITH_AGENT_409 = "The conversation is not with an agent (`not_with_agent`): it waits or is resolved."


@router.post(
    "/{conversation_id}/snooze",
    summary="Put the conversation aside until a time; the customer's next message wakes it sooner",
    responses=errors(
        400,
        401,
        404,
        409,
        413,
        422,
        503,
        described={409: _WITH_AGENT_409, 422: "A time in the past (`snooze_in_past`), or a bad body."},
    ),
)
async def snooze(
    conversation_id: uuid.UUID,
    body: SnoozeIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ConversationSummary:
    conversation = await service.snooze(session, runtime.outbox, principal, conversation_id, body.until)
    return ConversationSummary.model_validate(conversation)


@router.post(
    "/{conversation_id}/unsnooze",
    summary="Wake a snoozed conversation now",
    responses=errors(
        401,
        404,
        409,
        422,
        503,
        described={409: _WITH_AGENT_409 + " Or it is not snoozed (`not_snoozed`)."},
    ),
)
async def unsnooze(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep, runtime: RuntimeDep
) -> ConversationSummary:
    conversation = await service.unsnooze(session, runtime.outbox, principal, conversation_id)
    return ConversationSummary.model_validate(conversation)


@router.post(
    "/{conversation_id}/reopen",
    summary="Reopen a resolved conversation: it waits for an agent again, preferring the one who had it",
    responses=errors(
        401,
        404,
        409,
        422,
        503,
        described={
            409: "Not resolved (`not_resolved`), or the customer has another conversation open "
            "(`customer_has_open_conversation`)."
        },
    ),
)
async def reopen(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep, runtime: RuntimeDep
) -> ConversationSummary:
    conversation = await service.reopen(session, runtime.outbox, principal, conversation_id)
    return ConversationSummary.model_validate(conversation)


@router.post(
    "/{conversation_id}/tags",
    summary="Add and remove tags (names from the tags catalogue)",
    responses=errors(
        400,
        401,
        404,
        413,
        422,
        503,
        described={422: "A tag not in the catalogue (`unknown_tag`), or a bad body."},
    ),
)
async def change_tags(
    conversation_id: uuid.UUID,
    body: TagsChange,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ConversationSummary:
    conversation = await service.change_tags(
        session, runtime.outbox, principal, conversation_id, body.add, body.remove
    )
    return ConversationSummary.model_validate(conversation)


@router.post(
    "/{conversation_id}/transfer",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Hand the conversation to another agent, or back to the queue with other skills or another queue",
    openapi_extra={"x-constraints": "either agent_id, or skills and/or queue"},
    responses={
        202: {"description": "Accepted: the router moves it; its requeue and assignment follow."},
        **errors(
            400,
            401,
            403,
            404,
            409,
            413,
            422,
            503,
            described={
                403: "The conversation is not assigned to you (`not_assigned`), or the admin credential "
                "wrote a note (`forbidden`: notes have an agent as author).",
                409: _WITH_AGENT_409 + " Or it is already with that agent (`same_agent`).",
            },
        ),
    },
)
async def transfer(
    conversation_id: uuid.UUID,
    body: TransferIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ConversationSummary:
    to = service.Transfer(to_agent_id=body.agent_id, skills=body.skills, queue=body.queue, note=body.note)
    conversation = await service.transfer(session, runtime.outbox, principal, conversation_id, to)
    return ConversationSummary.model_validate(conversation)


# --- customers --------------------------------------------------------------------------------------------

customers_router = APIRouter(prefix="/v1/customers", tags=["customers"])


@customers_router.get(
    "/{customer_id}",
    summary="A customer's profile: identities and the channels they use",
    responses=errors(401, 404, 422, 503),
)
async def customer_profile(
    customer_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> CustomerProfile:
    customer = await service.readable_customer(session, principal, customer_id)
    return _profile(
        customer,
        await repository.identities_of(session, customer.id),
        await repository.channels_of(session, customer.id),
    )


@customers_router.get(
    "/{customer_id}/conversations",
    summary="A customer's history: every conversation, newest first",
    responses=errors(401, 404, 422, 503),
)
async def customer_conversations(
    customer_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: CursorQuery = None,
) -> ConversationPage:
    after = _decode_cursor(cursor)
    customer = await service.readable_customer(session, principal, customer_id)
    rows = await repository.conversations_of(session, customer.id, limit=limit, after=after)
    items = [ConversationSummary.model_validate(r) for r in rows]
    return ConversationPage(
        items=items,
        next_cursor=_encode_cursor(items[-1].opened_at, items[-1].id) if len(items) == limit else None,
    )


# --- the tags catalogue -----------------------------------------------------------------------------------

tags_router = APIRouter(prefix="/v1/tags", tags=["tags"])


@tags_router.get(
    "", summary="The tags catalogue: what conversations are about, and why", responses=errors(401, 503)
)
async def list_tags(_: CurrentPrincipal, session: SessionDep) -> list[TagPublic]:
    return [TagPublic.model_validate(t) for t in await repository.tags(session)]


@tags_router.put(
    "/{name}",
    summary="Add a tag to the catalogue, or change its description (supervisors)",
    responses=errors(400, 401, 403, 413, 422, 503),
)
async def put_tag(
    name: TagName, body: TagUpsert, principal: CurrentPrincipal, session: SessionDep
) -> TagPublic:
    _require_supervisor(principal)
    return TagPublic.model_validate(await repository.upsert_tag(session, name, body.description))


@tags_router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a tag from the catalogue (conversations keep it) (supervisors)",
    responses=errors(401, 403, 404, 422, 503),
)
async def delete_tag(name: TagName, principal: CurrentPrincipal, session: SessionDep) -> None:
    _require_supervisor(principal)
    if not await repository.delete_tag(session, name):
        raise NotFound("tag not found")


def _require_supervisor(principal: Principal) -> None:
    if not principal.sees_all:
        raise Forbidden("supervisors manage the tags catalogue", code="forbidden")
