"""Routing rules in SQL, and their stored JSON read into the evaluator's types."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_router.rules.evaluate import Conditions, Outcome, Rule
from switchboard_router.rules.models import RoutingRule

NAME_UNIQUE = "routing_rules_name_key"


class NameTaken(Exception):
    """Another rule has this name."""


def conditions_from_json(data: Mapping[str, Any]) -> Conditions:
    return Conditions(
        channels=frozenset(data.get("channels", ())),
        languages=frozenset(data.get("languages", ())),
        keywords=frozenset(data.get("keywords", ())),
        pattern=data.get("pattern"),
        customer=dict(data.get("customer", {})),
        tags_any=frozenset(data.get("tags_any", ())),
    )


def outcome_from_json(data: Mapping[str, Any]) -> Outcome:
    return Outcome(
        queue=data["queue"],
        required_skills=dict(data.get("required_skills", {})),
        optional_skills=frozenset(data.get("optional_skills", ())),
        priority=data.get("priority", 0),
        sla_target_seconds=data.get("sla_target_seconds"),
    )


_ORDER = (RoutingRule.position, RoutingRule.id)
_ENABLED = (
    sa.select(
        RoutingRule.id, RoutingRule.name, RoutingRule.position, RoutingRule.conditions, RoutingRule.outcome
    )
    .where(RoutingRule.enabled)
    .order_by(*_ORDER)
)


async def load_enabled(session: AsyncSession) -> list[Rule]:
    """The enabled rules in evaluation order, ready to evaluate (one statement)."""
    rows = await session.execute(_ENABLED)
    return [
        Rule(
            id=r.id,
            name=r.name,
            position=r.position,
            enabled=True,
            conditions=conditions_from_json(r.conditions),
            outcome=outcome_from_json(r.outcome),
        )
        for r in rows
    ]


async def insert_rule(
    session: AsyncSession,
    name: str,
    position: int | None,
    enabled: bool,
    conditions: dict[str, Any],
    outcome: dict[str, Any],
) -> RoutingRule | None:
    """None when the name is taken. No position: after every existing rule."""
    after_last = sa.select(sa.func.coalesce(sa.func.max(RoutingRule.position) + 1, 0)).scalar_subquery()
    stmt = (
        insert(RoutingRule)
        .values(
            id=uuid.uuid4(),
            name=name,
            position=after_last if position is None else position,
            enabled=enabled,
            conditions=conditions,
            outcome=outcome,
        )
        .on_conflict_do_nothing(index_elements=[RoutingRule.name])
        .returning(RoutingRule)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def count(session: AsyncSession) -> int:
    return (await session.execute(sa.select(sa.func.count()).select_from(RoutingRule))).scalar_one()


async def get(session: AsyncSession, rule_id: uuid.UUID) -> RoutingRule | None:
    return await session.get(RoutingRule, rule_id)


async def list_rules(session: AsyncSession, limit: int, offset: int) -> Sequence[RoutingRule]:
    stmt = sa.select(RoutingRule).order_by(*_ORDER).limit(limit).offset(offset)
    return (await session.execute(stmt)).scalars().all()


async def update_rule(
    session: AsyncSession, rule_id: uuid.UUID, values: dict[str, Any]
) -> RoutingRule | None:
    """None when there is no such rule; ``NameTaken`` when renaming onto another rule's name."""
    stmt = (
        sa.update(RoutingRule)
        .where(RoutingRule.id == rule_id)
        .values(**values, updated_at=sa.func.now())
        .returning(RoutingRule)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    try:
        # A savepoint: the unit of work stays usable after the unique violation, to answer 409.
        async with session.begin_nested():
            return (await session.execute(stmt)).scalar_one_or_none()
    except sa_exc.IntegrityError as exc:
        if _violated_constraint(exc) == NAME_UNIQUE:
            raise NameTaken(values.get("name", "")) from exc
        raise


async def delete_rule(session: AsyncSession, rule_id: uuid.UUID) -> bool:
    stmt = sa.delete(RoutingRule).where(RoutingRule.id == rule_id).returning(RoutingRule.id)
    return (await session.execute(stmt)).scalar_one_or_none() is not None


def _violated_constraint(exc: sa_exc.IntegrityError) -> str | None:
    # The driver's own exception (asyncpg's) carries the constraint; SQLAlchemy's adapter chains it.
    driver_error = exc.orig.__cause__ if exc.orig is not None else None
    name = getattr(driver_error, "constraint_name", None)
    return name if isinstance(name, str) else None
