"""The agent API: an agent sees the conversations assigned to them; an admin credential sees all."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from switchboard_common.auth import CurrentPrincipal
from switchboard_common.errors import NotFound
from switchboard_common.http.deps import RuntimeDep, SessionDep
from switchboard_common.http.openapi import errors
from switchboard_common.validation import StorableDatetime
from switchboard_conversation.conversations import repository, service
from switchboard_conversation.conversations.schemas import (
    ConversationList,
    ConversationPublic,
    ConversationSummary,
    CustomerPublic,
    IdentityPublic,
    MessagePublic,
    NoteIn,
    ReplyIn,
)
from switchboard_conversation.models import ConversationStatus

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
MESSAGE_PAGE = 200


@router.get(
    "",
    summary="Conversations assigned to the calling agent (all of them for an admin)",
    responses=errors(401, 422, 503),
)
async def list_conversations(
    principal: CurrentPrincipal,
    session: SessionDep,
    status: ConversationStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    before: Annotated[
        StorableDatetime | None,
        Query(description="The `next_before` of the previous page: an ISO 8601 date-time with an offset."),
    ] = None,
) -> ConversationList:
    rows = await repository.list_readable(session, principal, status=status, limit=limit, before=before)
    items = [ConversationSummary.model_validate(r) for r in rows]
    return ConversationList(
        items=items, next_before=items[-1].last_message_at if len(items) == limit else None
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
    summary="Resolve the conversation (frees the agent's capacity)",
    responses=errors(401, 404, 409, 422, 503, described={409: "Already resolved (`already_resolved`)."}),
)
async def resolve_conversation(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep, runtime: RuntimeDep
) -> ConversationSummary:
    conversation = await service.resolve(session, runtime.outbox, principal, conversation_id)
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
                403: "The admin credential cannot write replies: an agent does (`forbidden`).",
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
