"""The agent API: an agent sees the conversations assigned to them; an admin credential sees all."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.auth import CurrentPrincipal, Principal
from switchboard_common.http.app import runtime_of
from switchboard_common.http.errors import ApiError
from switchboard_common.runtime import ServiceRuntime
from switchboard_conversation.conversations import repository, service
from switchboard_conversation.conversations.schemas import (
    ConversationList,
    ConversationPublic,
    ConversationSummary,
    CustomerPublic,
    IdentityPublic,
    MessagePublic,
)
from switchboard_conversation.models import Conversation, ConversationStatus

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
RuntimeDep = Annotated[ServiceRuntime, Depends(runtime_of)]
MESSAGE_PAGE = 200


async def _visible(
    session: AsyncSession, principal: Principal, conversation_id: uuid.UUID, lock: bool = False
) -> Conversation:
    conversation = await repository.get(session, conversation_id, for_update=lock)
    # Someone else's conversation answers 404 like a missing one: ids are not confirmed to outsiders.
    if conversation is None or not (
        principal.is_admin
        or (
            conversation.assigned_agent_id is not None
            and principal.can_act_for(conversation.assigned_agent_id)
        )
    ):
        raise ApiError(404, "conversation not found")
    return conversation


@router.get("", summary="Conversations assigned to the calling agent (all of them for an admin)")
async def list_conversations(
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    status: ConversationStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    before: Annotated[datetime | None, Query(description="last_message_at cursor from next_before")] = None,
) -> ConversationList:
    async with runtime.db.unit_of_work() as session:
        rows = await repository.list_conversations(
            session,
            agent_id=None if principal.is_admin else principal.agent_id,
            status=status,
            limit=limit,
            before=before,
        )
    items = [ConversationSummary.model_validate(r) for r in rows]
    return ConversationList(
        items=items, next_before=items[-1].last_message_at if len(items) == limit else None
    )


@router.get("/{conversation_id}", summary="A conversation with its customer and latest messages")
async def get_conversation(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep
) -> ConversationPublic:
    async with runtime.db.unit_of_work() as session:
        conversation = await _visible(session, principal, conversation_id)
        customer = await repository.get_customer(session, conversation.customer_id)
        identities = await repository.identities_of(session, conversation.customer_id)
        messages = await repository.messages_of(session, conversation_id, MESSAGE_PAGE)
    assert customer is not None
    return ConversationPublic(
        **ConversationSummary.model_validate(conversation).model_dump(),
        customer=CustomerPublic(
            id=customer.id,
            display_name=customer.display_name,
            identities=[IdentityPublic.model_validate(i) for i in identities],
        ),
        messages=[MessagePublic.model_validate(m) for m in messages],
    )


@router.post("/{conversation_id}/resolve", summary="Resolve the conversation (frees the agent's capacity)")
async def resolve_conversation(
    conversation_id: uuid.UUID,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
) -> ConversationSummary:
    async with runtime.db.unit_of_work() as session:
        conversation = await _visible(session, principal, conversation_id, lock=True)
        conversation = await service.resolve(session, runtime.outbox, conversation)
        return ConversationSummary.model_validate(conversation)
