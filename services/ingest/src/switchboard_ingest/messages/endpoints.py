from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from switchboard_common.auth import bearer_credential, matches_secret
from switchboard_common.http.errors import ApiError
from switchboard_common.http.openapi import errors
from switchboard_ingest.messages import service
from switchboard_ingest.messages.committer import GroupCommitter
from switchboard_ingest.messages.schemas import AcceptStatus, MessageAccepted, MessageCreate
from switchboard_ingest.settings import IngestSettings

router = APIRouter(prefix="/v1", tags=["api channel"])


async def require_api_key(request: Request) -> None:
    credential = bearer_credential(request)
    settings: IngestSettings = request.app.state.settings
    # Compare against every key so the time taken does not reveal which prefix matched.
    if not any([matches_secret(credential, k.get_secret_value()) for k in settings.ingest_api_keys]):  # noqa: C419
        raise ApiError(401, "invalid API key")


async def get_committer(request: Request) -> GroupCommitter:
    committer: GroupCommitter = request.app.state.committer
    return committer


CommitterDep = Annotated[GroupCommitter, Depends(get_committer)]


@router.post(
    "/messages",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(require_api_key)],
    responses={
        200: {"model": MessageAccepted, "description": "Already accepted (a retry)"},
        **errors(
            400,
            401,
            409,
            413,
            422,
            503,
            described={
                409: "This message_id was already used for a different message (`id_reused`).",
                503: "The database is unavailable: nothing was accepted; retry after `Retry-After` seconds.",
            },
        ),
    },
    summary="Send a customer's message through the generic API channel",
)
async def post_message(body: MessageCreate, response: Response, committer: CommitterDep) -> MessageAccepted:
    """Answers once the message is durable (its receipt and its event committed); the event reaches
    ``messages.inbound`` right after, and later if the event log is unavailable."""
    submission = service.submission_for(service.from_api(body))
    result = await committer.submit(submission)
    if result.status is AcceptStatus.DUPLICATE:
        response.status_code = status.HTTP_200_OK
    return result
