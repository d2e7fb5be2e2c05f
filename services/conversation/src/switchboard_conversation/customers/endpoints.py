"""Agents fix what automatic linking could not: link an identity to a customer, merge two customers."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Response, status
from pydantic import BaseModel

from switchboard_common.auth import CurrentPrincipal
from switchboard_common.http.deps import RuntimeDep, SessionDep
from switchboard_common.http.errors import ApiError
from switchboard_common.http.openapi import Responses, errors
from switchboard_conversation import examples as ex
from switchboard_conversation.customers import service
from switchboard_conversation.customers.schemas import (
    CustomerMergePublic,
    IdentityLink,
    IdentityLinked,
    MergeIn,
)

router = APIRouter(prefix="/v1/customers", tags=["customers"])


def _answers(model: type[BaseModel], existing: str, created: str, described: dict[int, str]) -> Responses:
    """An idempotent creation's answers: 201 when it did something, 200 with the same body when it had
    been done before, and the errors of every operation here."""
    return {
        200: {"model": model, "description": existing},
        201: {"description": created},
        **errors(400, 401, 404, 409, 413, 422, 503, described=described),
    }


@router.post(
    "/{customer_id}/identities",
    summary="Link an identity (phone, email, ...) to the customer",
    status_code=status.HTTP_201_CREATED,
    responses=_answers(
        IdentityLinked,
        "The identity was already this customer's.",
        "The identity now links to this customer.",
        {
            404: "No such customer, or none of its conversations is readable by the caller.",
            409: "Another customer owns the identity (`identity_owned_by_other_customer`; "
            "`details.customer_id` names it, to merge the two), or this customer was merged into "
            "another (`customer_merged`; `details.merged_into`).",
        },
    ),
)
async def link_identity(
    customer_id: uuid.UUID,
    body: Annotated[
        IdentityLink, Body(examples=[ex.IDENTITY_LINK, {"kind": "phone", "value": "+34 612 34 56 78"}])
    ],
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
) -> IdentityLinked:
    linked = await service.link_identity(session, principal, customer_id, body.kind, body.value)
    if not linked.new:
        response.status_code = status.HTTP_200_OK
    return IdentityLinked(customer_id=linked.customer_id, kind=linked.kind, value=linked.value)


@router.post(
    "/{customer_id}/merge",
    summary="Merge another customer into this one (identities, conversations and messages move here)",
    status_code=status.HTTP_201_CREATED,
    # OpenAPI cannot say "the source is not the path's customer": that request is answered 422.
    openapi_extra={"x-constraints": "source_customer_id differs from the path's customer_id"},
    responses=_answers(
        CustomerMergePublic,
        "This merge was done before: nothing changed.",
        "Merged: the audit of what moved.",
        {
            404: "Either customer does not exist or has no conversation readable by the caller.",
            409: "This customer was merged into the source before (`merge_cycle`), or either was merged "
            "into a third customer (`customer_merged`; `details.merged_into`).",
            422: "The request is invalid (`validation_error`), a customer merged into itself included.",
        },
    ),
)
async def merge_customers(
    customer_id: uuid.UUID,
    body: MergeIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> CustomerMergePublic:
    try:
        audit, new = await service.merge(
            session, runtime.outbox, principal, customer_id, body.source_customer_id
        )
    except service.SameCustomer as exc:
        raise ApiError(
            422,
            str(exc),
            details=[{"loc": ["body", "source_customer_id"], "msg": str(exc), "type": "value_error"}],
        ) from exc
    if not new:
        response.status_code = status.HTTP_200_OK
    return CustomerMergePublic.model_validate(audit)
