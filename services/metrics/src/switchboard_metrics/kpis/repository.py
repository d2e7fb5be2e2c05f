"""The metrics statements. Every write is one statement of constant shape whatever the batch (``unnest``
over typed arrays), so PostgreSQL and asyncpg prepare each once; every input is deduplicated by the
caller (an upsert may touch a row only once) and sorted here (concurrent transactions lock rows in one
order, so they wait for each other instead of deadlocking)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import BIGINTS, TEXTS, TIMES, UUIDS, statement
from switchboard_metrics.kpis.facts import (
    CONVERSATION_COLUMNS,
    MESSAGE_COLUMNS,
    ConversationFacts,
    MessageFacts,
    Reopen,
)
from switchboard_metrics.models import EventCount

BOOLS = postgresql.ARRAY(sa.Boolean)

# Per fact column: its SQL type and the array type its values bind as.
_COLUMN_TYPES: dict[str, tuple[str, sa.types.TypeEngine[Any]]] = {
    "channel": ("text", TEXTS),
    "direction": ("text", TEXTS),
    "conversation_id": ("uuid", UUIDS),
    "agent_id": ("uuid", UUIDS),
    "sent_at": ("timestamptz", TIMES),
    "received_at": ("timestamptz", TIMES),
    "opened_at": ("timestamptz", TIMES),
    "queued": ("boolean", BOOLS),
    "queued_at": ("timestamptz", TIMES),
    "assigned_at": ("timestamptz", TIMES),
    "resolved_at": ("timestamptz", TIMES),
}
assert set(_COLUMN_TYPES) == {*MESSAGE_COLUMNS, *CONVERSATION_COLUMNS}


def _claim_arm(table: str, key: str, alias: str, columns: tuple[str, ...]) -> str:
    """One side of the claim's result: the columns of both tables, the other table's as typed NULLs."""
    values = [
        f"{alias}.{c}" if c in columns else f"NULL::{_COLUMN_TYPES[c][0]}"
        for c in (*MESSAGE_COLUMNS, *CONVERSATION_COLUMNS)
    ]
    return f"SELECT '{table}' AS kind, {alias}.{key} AS key, {', '.join(values)} FROM {alias}"  # noqa: S608 - ours


# The before-image of every message and conversation of a call, in one statement. An upsert rather than a
# SELECT ... FOR UPDATE, because it also claims the rows that do not exist yet: a missing row is created
# empty, existing ones are "updated" to themselves, and RETURNING gives the stored values. Under READ
# COMMITTED, ON CONFLICT waits for a concurrent transaction holding the row (or inserting the same key),
# then works on its committed version, so the image is the latest one and stays so until commit: two
# transactions on the same facts take turns, and each counts what the other had not. The inputs are sorted,
# so concurrent claims lock in one order (messages, then conversations). The price is one more row version
# per fact row touched.
_CLAIM = statement(
    f"""
    WITH m AS (
        INSERT INTO metrics.message_facts AS f (message_id)
        SELECT * FROM unnest(:message_ids)
        ON CONFLICT (message_id) DO UPDATE SET message_id = excluded.message_id
        RETURNING f.*
    ), c AS (
        INSERT INTO metrics.conversation_facts AS f (conversation_id)
        SELECT * FROM unnest(:conversation_ids)
        ON CONFLICT (conversation_id) DO UPDATE SET conversation_id = excluded.conversation_id
        RETURNING f.*
    )
    {_claim_arm("m", "message_id", "m", MESSAGE_COLUMNS)}
    UNION ALL
    {_claim_arm("c", "conversation_id", "c", CONVERSATION_COLUMNS)}
    """,  # noqa: S608 - the names are ours, not input
    message_ids=UUIDS,
    conversation_ids=UUIDS,
)


def _fill(table: str, key: str, columns: tuple[str, ...]) -> sa.TextClause:
    # A column once set keeps its value (coalesce), whatever the caller passes.
    return statement(
        f"""
        INSERT INTO metrics.{table} AS f ({key}, {", ".join(columns)})
        SELECT * FROM unnest(:keys, {", ".join(f":{c}" for c in columns)})
        ON CONFLICT ({key}) DO UPDATE
        SET {", ".join(f"{c} = coalesce(f.{c}, excluded.{c})" for c in columns)}
        """,  # noqa: S608 - the names are ours, not input
        keys=UUIDS,
        **{c: _COLUMN_TYPES[c][1] for c in columns},
    )


_FILL_MESSAGES = _fill("message_facts", "message_id", MESSAGE_COLUMNS)
_FILL_CONVERSATIONS = _fill("conversation_facts", "conversation_id", CONVERSATION_COLUMNS)

# Insert-if-absent, both tables in one round trip; RETURNING gives the rows this call added, which are the
# changes it counts.
_INSERT_CHANGES = statement(
    """
    WITH statuses AS (
        INSERT INTO metrics.agent_status_changes (agent_id, changed_at, status)
        SELECT * FROM unnest(:agent_ids, :changed_ats, :statuses)
        ON CONFLICT (agent_id, changed_at) DO NOTHING
        RETURNING 1
    ), reopens AS (
        INSERT INTO metrics.conversation_reopens (conversation_id, reopened_at)
        SELECT * FROM unnest(:conversation_ids, :reopened_ats)
        ON CONFLICT (conversation_id, reopened_at) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM statuses) AS statuses, (SELECT count(*) FROM reopens) AS reopens
    """,
    agent_ids=UUIDS,
    changed_ats=TIMES,
    statuses=TEXTS,
    conversation_ids=UUIDS,
    reopened_ats=TIMES,
)

_ADD_COUNTS = statement(
    """
    INSERT INTO metrics.event_counts AS c (event_type, count)
    SELECT t, n FROM unnest(:types, :counts) AS u(t, n)
    ON CONFLICT (event_type) DO UPDATE SET count = c.count + excluded.count
    """,
    types=TEXTS,
    counts=BIGINTS,
)


async def claim_facts(
    session: AsyncSession, message_ids: Collection[uuid.UUID], conversation_ids: Collection[uuid.UUID]
) -> tuple[dict[uuid.UUID, MessageFacts], dict[uuid.UUID, ConversationFacts]]:
    """The stored facts of these messages and conversations (a missing row is created empty), locked until
    the transaction ends."""
    rows = await session.execute(
        _CLAIM, {"message_ids": sorted(message_ids), "conversation_ids": sorted(conversation_ids)}
    )
    split = 2 + len(MESSAGE_COLUMNS)
    messages: dict[uuid.UUID, MessageFacts] = {}
    conversations: dict[uuid.UUID, ConversationFacts] = {}
    for row in rows:
        if row[0] == "m":
            messages[row[1]] = MessageFacts(*row[2:split])
        else:
            conversations[row[1]] = ConversationFacts(*row[split:])
    return messages, conversations


def _columns(ordered: Sequence[tuple[uuid.UUID, Any]], columns: tuple[str, ...]) -> dict[str, list[Any]]:
    params: dict[str, list[Any]] = {"keys": [key for key, _ in ordered]}
    for column in columns:
        params[column] = [getattr(facts, column) for _, facts in ordered]
    return params


async def fill_messages(session: AsyncSession, facts: Mapping[uuid.UUID, MessageFacts]) -> None:
    if facts:
        await session.execute(_FILL_MESSAGES, _columns(sorted(facts.items()), MESSAGE_COLUMNS))


async def fill_conversations(session: AsyncSession, facts: Mapping[uuid.UUID, ConversationFacts]) -> None:
    if facts:
        await session.execute(_FILL_CONVERSATIONS, _columns(sorted(facts.items()), CONVERSATION_COLUMNS))


async def insert_changes(
    session: AsyncSession, statuses: Mapping[tuple[uuid.UUID, datetime], str], reopens: Collection[Reopen]
) -> tuple[int, int]:
    """Store the agent status changes and the conversation reopens not stored yet; returns how many of
    each were new."""
    if not (statuses or reopens):
        return 0, 0
    ordered = sorted(statuses.items())
    reopened = sorted((r.conversation_id, r.reopened_at) for r in reopens)
    row = (
        await session.execute(
            _INSERT_CHANGES,
            {
                "agent_ids": [a for (a, _), _ in ordered],
                "changed_ats": [t for (_, t), _ in ordered],
                "statuses": [s for _, s in ordered],
                "conversation_ids": [c for c, _ in reopened],
                "reopened_ats": [t for _, t in reopened],
            },
        )
    ).one()
    return int(row.statuses), int(row.reopens)


async def add_counts(session: AsyncSession, counts: Mapping[str, int]) -> None:
    ordered = sorted((t, n) for t, n in counts.items() if n)
    if ordered:
        await session.execute(
            _ADD_COUNTS, {"types": [t for t, _ in ordered], "counts": [n for _, n in ordered]}
        )


# --- reading ---------------------------------------------------------------------------------------------


async def counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(sa.select(EventCount.event_type, EventCount.count))
    return {event_type: int(count) for event_type, count in rows}


_WAIT_STATS = sa.text(
    """
    SELECT count(*) AS assigned,
           avg(extract(epoch FROM assigned_at - opened_at)) AS avg,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM assigned_at - opened_at)) AS p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM assigned_at - opened_at)) AS p90,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM assigned_at - opened_at)) AS p99,
           max(extract(epoch FROM assigned_at - opened_at)) AS max
    FROM metrics.conversation_facts
    WHERE assigned_at IS NOT NULL AND opened_at IS NOT NULL
    """
)

_WAITING_NOW = sa.text(
    """
    SELECT count(*) AS waiting, extract(epoch FROM now() - min(coalesce(queued_at, opened_at))) AS longest
    FROM metrics.conversation_facts
    WHERE assigned_at IS NULL AND resolved_at IS NULL AND (opened_at IS NOT NULL OR queued_at IS NOT NULL)
    """
)


async def wait_stats(session: AsyncSession) -> dict[str, Any]:
    row = (await session.execute(_WAIT_STATS)).mappings().one()
    return dict(row)


async def waiting_now(session: AsyncSession) -> dict[str, Any]:
    row = (await session.execute(_WAITING_NOW)).mappings().one()
    return dict(row)
