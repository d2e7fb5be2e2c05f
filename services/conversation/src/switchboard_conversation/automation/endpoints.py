"""Canned responses: supervisors and the admin credential write them, any agent reads them and renders
one for a conversation it may see, then sends the text through the reply endpoint."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from switchboard_common.auth import CurrentPrincipal
from switchboard_common.http.deps import SessionDep
from switchboard_common.http.openapi import errors
from switchboard_conversation.automation import service
from switchboard_conversation.automation.schemas import (
    CannedResponseIn,
    CannedResponsePublic,
    RenderedCannedResponse,
)

router = APIRouter(prefix="/v1", tags=["canned responses"])
CANNED = "/canned-responses/{canned_id}"
_TAKEN = {409: "Another canned response has this shortcut (`shortcut_taken`)."}
# A JSON schema cannot say "a template the sandboxed engine compiles"; the contract test reads this.
_TEMPLATE = {"x-constraints": "body is a Jinja template that compiles in the sandbox"}


@router.get("/canned-responses", summary="List canned responses", responses=errors(401, 503))
async def list_canned(_: CurrentPrincipal, session: SessionDep) -> list[CannedResponsePublic]:
    return [CannedResponsePublic.model_validate(c) for c in await service.list_canned(session)]


@router.post(
    "/canned-responses",
    status_code=status.HTTP_201_CREATED,
    summary="Create a canned response (supervisors)",
    responses=errors(400, 401, 403, 409, 413, 422, 503, described=_TAKEN),
    openapi_extra=_TEMPLATE,
)
async def create_canned(
    body: CannedResponseIn, principal: CurrentPrincipal, session: SessionDep
) -> CannedResponsePublic:
    return CannedResponsePublic.model_validate(
        await service.create_canned(session, principal, body.model_dump())
    )


@router.get(CANNED, summary="A canned response", responses=errors(401, 404, 422, 503))
async def get_canned(canned_id: uuid.UUID, _: CurrentPrincipal, session: SessionDep) -> CannedResponsePublic:
    return CannedResponsePublic.model_validate(await service.get_canned(session, canned_id))


@router.put(
    CANNED,
    summary="Change a canned response (supervisors)",
    responses=errors(400, 401, 403, 404, 409, 413, 422, 503, described=_TAKEN),
    openapi_extra=_TEMPLATE,
)
async def put_canned(
    canned_id: uuid.UUID, body: CannedResponseIn, principal: CurrentPrincipal, session: SessionDep
) -> CannedResponsePublic:
    return CannedResponsePublic.model_validate(
        await service.update_canned(session, principal, canned_id, body.model_dump())
    )


@router.delete(
    CANNED,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a canned response (supervisors)",
    responses=errors(401, 403, 404, 422, 503),
)
async def delete_canned(canned_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep) -> None:
    await service.delete_canned(session, principal, canned_id)


@router.post(
    "/conversations/{conversation_id}/canned-responses/{canned_id}/render",
    summary="A canned response filled for a conversation the caller may see",
    responses=errors(
        401,
        404,
        409,
        422,
        503,
        described={409: "The template failed for this conversation (`template_failed`)."},
    ),
)
async def render_canned(
    conversation_id: uuid.UUID, canned_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> RenderedCannedResponse:
    _, text = await service.render_canned(session, principal, conversation_id, canned_id)
    return RenderedCannedResponse(canned_response_id=canned_id, conversation_id=conversation_id, text=text)
