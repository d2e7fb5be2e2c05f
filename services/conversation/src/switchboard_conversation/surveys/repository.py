"""The SQL of surveys: asking (one customer at a time, on a resolution) and recording answers (set-based,
from the inbound batch)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import BOOLS, INTS, TIMES, UUIDS, statement
from switchboard_conversation.models import Survey

# A customer answers the latest survey: asking anew closes the ones still open.
_SUPERSEDE = statement(
    """
    UPDATE conversation.surveys SET expires_at = least(expires_at, :now)
    WHERE customer_id = :customer AND answered_at IS NULL
    """,
    customer=sa.Uuid(),
    now=sa.DateTime(timezone=True),
)


async def add(session: AsyncSession, survey: Survey) -> None:
    await session.execute(_SUPERSEDE, {"customer": survey.customer_id, "now": survey.asked_at})
    session.add(survey)
    await session.flush()


# A merge gives the source's surveys to the target; of the open ones the customer now has, the latest
# asked stays open, as asking anew closes the others (_SUPERSEDE).
_HAND_OVER = statement(
    "UPDATE conversation.surveys SET customer_id = :target WHERE customer_id = :source",
    source=sa.Uuid(),
    target=sa.Uuid(),
)
_ALL_BUT_LATEST_CLOSED = statement(
    """
    UPDATE conversation.surveys SET expires_at = least(expires_at, now())
    WHERE customer_id = :customer AND answered_at IS NULL AND id <> (
        SELECT id FROM conversation.surveys WHERE customer_id = :customer AND answered_at IS NULL
        ORDER BY asked_at DESC, id DESC LIMIT 1)
    """,
    customer=sa.Uuid(),
)


async def hand_over(session: AsyncSession, source_id: uuid.UUID, target_id: uuid.UUID) -> None:
    await session.execute(_HAND_OVER, {"source": source_id, "target": target_id})
    await session.execute(_ALL_BUT_LATEST_CLOSED, {"customer": target_id})


@dataclass(frozen=True, slots=True)
class Answer:
    survey_id: uuid.UUID
    score: int
    at: datetime
    message_id: uuid.UUID
    follow_up: bool


@dataclass(frozen=True, slots=True)
class Answered:
    survey_id: uuid.UUID
    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    kind: str
    channel: str
    agent_id: uuid.UUID | None
    asked_at: datetime
    score: int
    answered_at: datetime
    follow_up: bool


# Each survey takes its first answer only (a redelivered or concurrent one finds it answered); a low score
# flags its conversation for a follow-up.
_RECORD_ANSWERS = statement(
    """
    WITH answered AS (
        UPDATE conversation.surveys s
        SET score = u.score, answered_at = u.at, answer_message_id = u.message_id
        FROM unnest(:ids, :scores, :ats, :messages, :follow_ups) AS u(id, score, at, message_id, follow_up)
        WHERE s.id = u.id AND s.answered_at IS NULL
        RETURNING s.id, s.conversation_id, s.customer_id, s.kind, s.channel, s.agent_id, s.asked_at,
            s.score, s.answered_at, u.follow_up
    ), flagged AS (
        UPDATE conversation.conversations c SET follow_up = true
        FROM answered a WHERE c.id = a.conversation_id AND a.follow_up
    ), superseded AS (
        UPDATE conversation.surveys s SET expires_at = least(s.expires_at, :now)
        WHERE s.id = ANY(:superseded) AND s.answered_at IS NULL
    )
    SELECT * FROM answered
    """,
    now=sa.DateTime(timezone=True),
    superseded=UUIDS,
    ids=UUIDS,
    scores=INTS,
    ats=TIMES,
    messages=UUIDS,
    follow_ups=BOOLS,
)


async def record_answers(
    session: AsyncSession, answers: Sequence[Answer], superseded: Sequence[uuid.UUID], now: datetime
) -> list[Answered]:
    """Record answers, and close the surveys in ``superseded``: their customer wrote something other than a
    score first, so a number they send later is not taken for a rating."""
    if not (answers or superseded):
        return []
    rows = await session.execute(
        _RECORD_ANSWERS,
        {
            "now": now,
            "superseded": list(superseded),
            "ids": [a.survey_id for a in answers],
            "scores": [a.score for a in answers],
            "ats": [a.at for a in answers],
            "messages": [a.message_id for a in answers],
            "follow_ups": [a.follow_up for a in answers],
        },
    )
    return [Answered(*r) for r in rows]
