from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from switchboard_common.auth import bearer_credential, matches_secret
from switchboard_common.http.app import runtime_of
from switchboard_common.http.errors import ApiError
from switchboard_common.runtime import ServiceRuntime
from switchboard_ingest.messages import service
from switchboard_ingest.messages.schemas import AcceptStatus, MessageAccepted, MessageCreate

router = APIRouter(prefix="/v1", tags=["api channel"])


def require_api_key(request: Request) -> None:
    credential = bearer_credential(request)
    keys = request.app.state.settings.ingest_api_keys
    # Compare against every key so the time taken does not reveal which prefix matched.
    if not any([matches_secret(credential, k.get_secret_value()) for k in keys]):  # noqa: C419
        raise ApiError(401, "invalid API key")


@router.post(
    "/messages",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(require_api_key)],
    responses={200: {"model": MessageAccepted, "description": "Already accepted (a retry)"}},
    summary="Send a customer's message through the generic API channel",
)
async def post_message(
    body: MessageCreate, response: Response, runtime: Annotated[ServiceRuntime, Depends(runtime_of)]
) -> MessageAccepted:
    result = await service.accept(runtime, service.from_api(body))
    if result.status is AcceptStatus.DUPLICATE:
        response.status_code = status.HTTP_200_OK
    return result
