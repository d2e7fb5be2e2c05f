"""Routing rules: create, change, remove, and try them on a sample message (the dry run)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.errors import Conflict, NotFound
from switchboard_router.rules import language, repository
from switchboard_router.rules.evaluate import Decision, RuleInputs, default_outcome, evaluate
from switchboard_router.rules.models import RoutingRule
from switchboard_router.rules.schemas import RuleCreate, RuleOutcome, RuleUpdate
from switchboard_router.skills import service as skills_service

# Every rule is tried for every newly opened conversation until one matches: a bound keeps that cost
# (and a runaway script creating rules) in check.
MAX_RULES = 500


async def create(session: AsyncSession, body: RuleCreate) -> RoutingRule:
    await _require_known_skills(session, body.outcome)
    if await repository.count(session) >= MAX_RULES:
        raise Conflict(f"there are already {MAX_RULES} routing rules", code="rule_limit_reached")
    rule = await repository.insert_rule(
        session,
        body.name,
        body.position,
        body.enabled,
        body.conditions.model_dump(mode="json"),
        body.outcome.model_dump(mode="json"),
    )
    if rule is None:
        raise _name_taken(body.name)
    return rule


async def get(session: AsyncSession, rule_id: uuid.UUID) -> RoutingRule:
    rule = await repository.get(session, rule_id)
    if rule is None:
        raise NotFound("routing rule not found")
    return rule


async def list_rules(session: AsyncSession, limit: int, offset: int) -> Sequence[RoutingRule]:
    return await repository.list_rules(session, limit, offset)


async def update(session: AsyncSession, rule_id: uuid.UUID, body: RuleUpdate) -> RoutingRule:
    values: dict[str, Any] = {}
    for field in ("name", "position", "enabled"):
        if (value := getattr(body, field)) is not None:
            values[field] = value
    if body.conditions is not None:
        values["conditions"] = body.conditions.model_dump(mode="json")
    if body.outcome is not None:
        await _require_known_skills(session, body.outcome)
        values["outcome"] = body.outcome.model_dump(mode="json")
    if not values:
        return await get(session, rule_id)
    try:
        rule = await repository.update_rule(session, rule_id, values)
    except repository.NameTaken:
        raise _name_taken(values["name"]) from None
    if rule is None:
        raise NotFound("routing rule not found")
    return rule


async def delete(session: AsyncSession, rule_id: uuid.UUID) -> None:
    if not await repository.delete_rule(session, rule_id):
        raise NotFound("routing rule not found")


async def dry_run(
    session: AsyncSession,
    languages: str,
    low_accuracy: bool,
    channel: str,
    text: str,
    customer: Mapping[str, str],
    tags: Iterable[str],
) -> Decision:
    """Which rule and outcome a conversation opened with this message would get now. The language is
    always detected here, to be reported; routing detects it only when a rule needs it, which gives the
    same decision (no rule reads it otherwise)."""
    rules = await repository.load_enabled(session)
    # In a worker thread: the first detection builds the detector, which takes about a second.
    detected = await asyncio.to_thread(language.detect, text, languages, low_accuracy=low_accuracy)
    inputs = RuleInputs(channel, text, detected, dict(customer), frozenset(tags))
    return evaluate(rules, inputs, default_outcome())


async def _require_known_skills(session: AsyncSession, outcome: RuleOutcome) -> None:
    """A rule's required and optional skills must be catalogued (422 ``unknown_skill`` otherwise)."""
    await skills_service.require_known(session, [*outcome.required_skills, *outcome.optional_skills])


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a routing rule named {name!r} exists", code="rule_name_taken")
