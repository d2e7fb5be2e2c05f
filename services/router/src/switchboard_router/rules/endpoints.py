"""Routing rules: CRUD and the dry run, admin only. Documented in docs/routing-rules.md."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from switchboard_common.auth import AdminPrincipal
from switchboard_common.http.deps import RuntimeDep, SessionDep
from switchboard_common.http.openapi import errors
from switchboard_common.runtime import ServiceRuntime
from switchboard_router.rules import service
from switchboard_router.rules.evaluate import Outcome
from switchboard_router.rules.schemas import (
    DryRunRequest,
    DryRunResult,
    RuleCreate,
    RuleOutcome,
    RulePublic,
    RuleUpdate,
)
from switchboard_router.settings import RouterSettings
from switchboard_router.skills.service import CATALOGUED

router = APIRouter(prefix="/v1", tags=["routing-rules"])
# Rule ids are matched as UUIDs by the router itself, so `/v1/routing-rules/dry-run` is never taken for
# an id.
RULE = "/routing-rules/{rule_id:uuid}"
_NAME_TAKEN = {409: "Another rule has this name (`rule_name_taken`)."}
_INVALID = {
    422: "The request is invalid (`validation_error`; `details` lists each invalid field), for example a "
    "`pattern` RE2 does not accept; or a required or optional skill is not in the skills catalogue "
    "(`unknown_skill`; `details.skills` names them)."
}


def detection(runtime: ServiceRuntime) -> tuple[str, bool]:
    """The languages the router detects (``router_detect_languages``, comma-separated ISO 639-1), and
    whether with lingua's low-accuracy models."""
    settings = runtime.settings
    assert isinstance(settings, RouterSettings)
    return settings.router_detect_languages, settings.router_language_low_accuracy


@router.post(
    "/routing-rules",
    status_code=status.HTTP_201_CREATED,
    summary="Create a routing rule",
    responses=errors(
        400,
        401,
        403,
        409,
        413,
        422,
        503,
        described={
            409: "Another rule has this name (`rule_name_taken`), or there are too many rules "
            "(`rule_limit_reached`).",
            **_INVALID,
        },
    ),
    openapi_extra=CATALOGUED,
)
async def create_rule(body: RuleCreate, _: AdminPrincipal, session: SessionDep) -> RulePublic:
    return RulePublic.model_validate(await service.create(session, body))


@router.get(
    "/routing-rules",
    summary="List routing rules in evaluation order",
    responses=errors(401, 403, 422, 503),
)
async def list_rules(
    _: AdminPrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_RULES)] = service.MAX_RULES,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[RulePublic]:
    return [RulePublic.model_validate(r) for r in await service.list_rules(session, limit, offset)]


@router.post(
    "/routing-rules/dry-run",
    summary="Which rule, queue and skills a sample message would get, changing nothing",
    responses=errors(400, 401, 403, 413, 422, 503),
)
async def dry_run(
    body: DryRunRequest, _: AdminPrincipal, session: SessionDep, runtime: RuntimeDep
) -> DryRunResult:
    decision = await service.dry_run(
        session, *detection(runtime), body.channel.value, body.text, body.customer, body.tags
    )
    return DryRunResult(
        rule_id=decision.rule_id,
        rule_name=decision.rule_name,
        outcome=_outcome(decision.outcome),
        language=decision.language,
    )


@router.get(RULE, summary="One routing rule", responses=errors(401, 403, 404, 503))
async def get_rule(rule_id: uuid.UUID, _: AdminPrincipal, session: SessionDep) -> RulePublic:
    return RulePublic.model_validate(await service.get(session, rule_id))


@router.patch(
    RULE,
    summary="Change a routing rule (conditions and outcome are replaced whole)",
    responses=errors(400, 401, 403, 404, 409, 413, 422, 503, described={**_NAME_TAKEN, **_INVALID}),
    openapi_extra=CATALOGUED,
)
async def update_rule(
    rule_id: uuid.UUID, body: RuleUpdate, _: AdminPrincipal, session: SessionDep
) -> RulePublic:
    return RulePublic.model_validate(await service.update(session, rule_id, body))


@router.delete(
    RULE,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a routing rule",
    responses=errors(401, 403, 404, 503),
)
async def delete_rule(rule_id: uuid.UUID, _: AdminPrincipal, session: SessionDep) -> Response:
    await service.delete(session, rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _outcome(outcome: Outcome) -> RuleOutcome:
    return RuleOutcome(
        queue=outcome.queue,
        required_skills=dict(outcome.required_skills),
        optional_skills=sorted(outcome.optional_skills),
        priority=outcome.priority,
        sla_target_seconds=outcome.sla_target_seconds,
    )
