"""The metrics statements. Every write is one statement of constant shape whatever the batch (``unnest``
over typed arrays), so PostgreSQL and asyncpg prepare each once; every input is deduplicated by the
caller (an upsert may touch a row only once) and sorted here (concurrent transactions lock rows in one
order, so they wait for each other instead of deadlocking)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import BIGINTS, BOOLS, INTS, TEXTS, TIMES, UUIDS, statement
from switchboard_common.events import AgentCapacityChanged, AgentStatusChanged
from switchboard_metrics.kpis.facts import (
    CONVERSATION_COLUMNS,
    DELIVERY_COLUMNS,
    FOLLOWS,
    MERGE,
    MESSAGE_COLUMNS,
    ConversationFacts,
    DeliveryFacts,
    DeliveryKey,
    Handoff,
    HandoffKind,
    Merge,
    MessageFacts,
    Occurrence,
    Reopen,
    Retag,
    stored,
)
from switchboard_metrics.kpis.observe import BY_CHANNEL_ONLY, Cell, Tally
from switchboard_metrics.models import EventCount

FLOATS = postgresql.ARRAY(sa.Float)
# Array columns travel as one text per row joined by this (unnest would flatten an array of arrays).
_SEP = "\x1f"
_LISTS = frozenset({"tags", "channels"})

# Per fact column: its SQL type and the array type its values bind as.
_COLUMN_TYPES: dict[str, tuple[str, sa.types.TypeEngine[Any]]] = {
    "channel": ("text", TEXTS),
    "direction": ("text", TEXTS),
    "conversation_id": ("uuid", UUIDS),
    "agent_id": ("uuid", UUIDS),
    "sent_at": ("timestamptz", TIMES),
    "received_at": ("timestamptz", TIMES),
    "automated": ("boolean", BOOLS),
    "opened_at": ("timestamptz", TIMES),
    "queued": ("boolean", BOOLS),
    "queued_at": ("timestamptz", TIMES),
    "assigned_at": ("timestamptz", TIMES),
    "resolved_at": ("timestamptz", TIMES),
    "customer_id": ("uuid", UUIDS),
    "queue": ("text", TEXTS),
    "tags": ("text[]", TEXTS),
    "tags_at": ("timestamptz", TIMES),
    "channels": ("text[]", TEXTS),
    "first_reply_at": ("timestamptz", TIMES),
    "resolved_by": ("uuid", UUIDS),
    "first_reopened_at": ("timestamptz", TIMES),
    "last_resolved_at": ("timestamptz", TIMES),
    "last_reopened_at": ("timestamptz", TIMES),
    "message_id": ("uuid", UUIDS),
    "accepted_at": ("timestamptz", TIMES),
    "delivered_at": ("timestamptz", TIMES),
    "read_at": ("timestamptz", TIMES),
    "failed_at": ("timestamptz", TIMES),
}
assert set(_COLUMN_TYPES) == {*MESSAGE_COLUMNS, *CONVERSATION_COLUMNS, *DELIVERY_COLUMNS}


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


def _merged(column: str) -> str:
    """The SQL of ``facts.combine``: whatever the caller passes, a stored value changes only by its rule."""
    old, new = f"f.{column}", f"excluded.{column}"
    clock = FOLLOWS.get(column)
    if clock is not None:
        # facts.merged: the value told with the later clock, ties to the greater text (as Python compares
        # the joined texts: by code point, which is byte order in UTF-8 under the "C" collation).
        def rank(row: str) -> str:
            return (
                f"ROW(coalesce({row}.{clock}, '-infinity'::timestamptz), "
                f'array_to_string({row}.{column}, chr(31)) COLLATE "C")'
            )

        return (
            f"CASE WHEN {new} IS NULL THEN {old} WHEN {old} IS NULL THEN {new} "
            f"WHEN {rank('excluded')} > {rank('f')} THEN {new} ELSE {old} END"
        )
    rule = MERGE.get(column, Merge.FIRST)
    if rule is Merge.EARLIEST:
        return f"least({old}, {new})"  # least and greatest ignore NULLs
    if rule is Merge.LATEST:
        return f"greatest({old}, {new})"
    if rule is Merge.UNION:
        union = f"ARRAY(SELECT DISTINCT x FROM unnest({old} || {new}) AS x ORDER BY x)"  # noqa: S608 - ours
        return f"CASE WHEN {old} IS NULL THEN {new} WHEN {new} IS NULL THEN {old} ELSE {union} END"
    return f"coalesce({old}, {new})"


def _fill(table: str, key: str, columns: tuple[str, ...], prefix: str) -> str:
    """An upsert of fact rows, each column by its rule, from arrays named ``prefix`` + column (and
    ``prefix`` + ``keys``)."""
    values = [f"string_to_array(u.{c}, chr(31))" if c in _LISTS else f"u.{c}" for c in columns]
    arrays = ", ".join(f":{prefix}{c}" for c in columns)
    return f"""
        INSERT INTO metrics.{table} AS f ({key}, {", ".join(columns)})
        SELECT u.k, {", ".join(values)}
        FROM unnest(:{prefix}keys, {arrays}) AS u(k, {", ".join(columns)})
        ON CONFLICT ({key}) DO UPDATE
        SET {", ".join(f"{c} = {_merged(c)}" for c in columns)}
        """  # noqa: S608 - the names are ours, not input


def _fill_types(columns: tuple[str, ...], prefix: str) -> dict[str, sa.types.TypeEngine[Any]]:
    return {f"{prefix}keys": UUIDS, **{f"{prefix}{c}": _COLUMN_TYPES[c][1] for c in columns}}


# The news of a call's messages and conversations, in one statement (two tables, each row once).
_FILL_FACTS = statement(
    f"""
    WITH m AS ({_fill("message_facts", "message_id", MESSAGE_COLUMNS, "m_")})
    {_fill("conversation_facts", "conversation_id", CONVERSATION_COLUMNS, "c_")}
    """,
    **_fill_types(MESSAGE_COLUMNS, "m_"),
    **_fill_types(CONVERSATION_COLUMNS, "c_"),
)

# Deliveries are keyed by two texts, not a uuid: their claim and fill are statements of their own (made
# only by a call with delivery reports), of the same two kinds as the facts' above.
_CLAIM_DELIVERIES = statement(
    f"""
    INSERT INTO metrics.delivery_facts AS f (channel, subject)
    SELECT * FROM unnest(:channels, :subjects)
    ON CONFLICT (channel, subject) DO UPDATE SET subject = excluded.subject
    RETURNING f.channel, f.subject, {", ".join(f"f.{c}" for c in DELIVERY_COLUMNS)}
    """,  # noqa: S608 - the names are ours, not input
    channels=TEXTS,
    subjects=TEXTS,
)
_FILL_DELIVERIES = statement(
    f"""
    INSERT INTO metrics.delivery_facts AS f (channel, subject, {", ".join(DELIVERY_COLUMNS)})
    SELECT * FROM unnest(:channels, :subjects, {", ".join(f":{c}" for c in DELIVERY_COLUMNS)})
    ON CONFLICT (channel, subject) DO UPDATE
    SET {", ".join(f"{c} = {_merged(c)}" for c in DELIVERY_COLUMNS)}
    """,  # noqa: S608 - the names are ours, not input
    channels=TEXTS,
    subjects=TEXTS,
    **{c: _COLUMN_TYPES[c][1] for c in DELIVERY_COLUMNS},
)

# Insert-if-absent, three tables in one round trip; RETURNING gives the rows this call added, which are
# the changes it counts (and, for assignments, the rollup cells they add).
_INSERT_CHANGES = statement(
    """
    WITH told AS (
        SELECT * FROM unnest(:agent_ids, :changed_ats, :statuses, :capacities, :status_events)
            AS t(agent_id, changed_at, status, capacity, event_type)
    ), statuses AS (
        INSERT INTO metrics.agent_status_changes (agent_id, changed_at, status, capacity)
        SELECT agent_id, changed_at, status, capacity FROM told
        ON CONFLICT (agent_id, changed_at) DO NOTHING
        RETURNING agent_id, changed_at
    ), reopens AS (
        INSERT INTO metrics.conversation_reopens (conversation_id, reopened_at)
        SELECT * FROM unnest(:conversation_ids, :reopened_ats)
        ON CONFLICT (conversation_id, reopened_at) DO NOTHING
        RETURNING 1
    ), retags AS (
        INSERT INTO metrics.conversation_retags (conversation_id, changed_at)
        SELECT * FROM unnest(:retag_ids, :retagged_ats)
        ON CONFLICT (conversation_id, changed_at) DO NOTHING
        RETURNING 1
    ), occurrences AS (
        INSERT INTO metrics.routing_occurrences (kind, conversation_id, at, agent_id, queue)
        SELECT * FROM unnest(:occurrence_kinds, :occurrence_ids, :occurrence_ats, :occurrence_agents,
            :occurrence_queues)
        ON CONFLICT (kind, conversation_id, at) DO NOTHING
        RETURNING kind
    ), handoffs AS (
        INSERT INTO metrics.conversation_handoffs (conversation_id, at, kind, agent_id)
        SELECT * FROM unnest(:handoff_ids, :handoff_ats, :handoff_kinds, :handoff_agents)
        ON CONFLICT (conversation_id, at, kind) DO NOTHING
        RETURNING kind, agent_id, at
    )
    SELECT told.event_type AS what, NULL::uuid AS agent_id, NULL::timestamptz AS at
    FROM statuses JOIN told USING (agent_id, changed_at)
    UNION ALL SELECT 'reopen', NULL, NULL FROM reopens
    UNION ALL SELECT 'retag', NULL, NULL FROM retags
    UNION ALL SELECT 'routing:' || kind, NULL, NULL FROM occurrences
    UNION ALL SELECT kind, agent_id, at FROM handoffs
    """,
    agent_ids=UUIDS,
    changed_ats=TIMES,
    statuses=TEXTS,
    capacities=INTS,
    status_events=TEXTS,
    conversation_ids=UUIDS,
    reopened_ats=TIMES,
    retag_ids=UUIDS,
    retagged_ats=TIMES,
    occurrence_kinds=TEXTS,
    occurrence_ids=UUIDS,
    occurrence_ats=TIMES,
    occurrence_agents=UUIDS,
    occurrence_queues=TEXTS,
    handoff_ids=UUIDS,
    handoff_ats=TIMES,
    handoff_kinds=TEXTS,
    handoff_agents=UUIDS,
)

# Rollup cells change by deltas (see ``observe``): added to what is stored, in one statement.
_CELL_ARRAYS: dict[str, sa.types.TypeEngine[Any]] = {
    "minutes": TIMES,
    "metrics": TEXTS,
    "channels": TEXTS,
    "queues": TEXTS,
    "agents": TEXTS,
    "tags": TEXTS,
    "bins": INTS,
    "counts": BIGINTS,
    "seconds": FLOATS,
}
_ADD_CELLS = statement(
    """
    INSERT INTO metrics.kpi_cells AS c (minute, metric, channel, queue, agent, tag, bin, count, seconds)
    SELECT * FROM unnest(:minutes, :metrics, :channels, :queues, :agents, :tags, :bins, :counts, :seconds)
    ON CONFLICT (minute, metric, channel, queue, agent, tag, bin) DO UPDATE
    SET count = c.count + excluded.count, seconds = c.seconds + excluded.seconds
    """,
    **_CELL_ARRAYS,
)

# A call's cells and event counts, in one statement: the counts' upsert runs after the cells' (an
# unreferenced data-modifying CTE runs at the end of the statement), so concurrent calls lock in one order.
_ADD_CELLS_AND_COUNTS = statement(
    """
    WITH counted AS (
        INSERT INTO metrics.event_counts AS e (event_type, count)
        SELECT t, n FROM unnest(:types, :type_counts) AS u(t, n)
        ON CONFLICT (event_type) DO UPDATE SET count = e.count + excluded.count
    )
    INSERT INTO metrics.kpi_cells AS c (minute, metric, channel, queue, agent, tag, bin, count, seconds)
    SELECT * FROM unnest(:minutes, :metrics, :channels, :queues, :agents, :tags, :bins, :counts, :seconds)
    ON CONFLICT (minute, metric, channel, queue, agent, tag, bin) DO UPDATE
    SET count = c.count + excluded.count, seconds = c.seconds + excluded.seconds
    """,
    types=TEXTS,
    type_counts=BIGINTS,
    **_CELL_ARRAYS,
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
            messages[row[1]] = stored(MessageFacts, row[2:split])
        else:
            conversations[row[1]] = _conversation(row[split:])
    return messages, conversations


def _conversation(values: Sequence[Any]) -> ConversationFacts:
    named = dict(zip(CONVERSATION_COLUMNS, values, strict=True))
    for c in _LISTS:
        if named[c] is not None:
            named[c] = tuple(named[c])
    return stored(ConversationFacts, named.values())


async def claim_deliveries(
    session: AsyncSession, keys: Collection[DeliveryKey]
) -> dict[DeliveryKey, DeliveryFacts]:
    """The stored facts of these deliveries (a missing row is created empty), locked until the transaction
    ends, as ``claim_facts`` does for messages and conversations."""
    if not keys:
        return {}
    ordered = sorted(keys)
    rows = await session.execute(
        _CLAIM_DELIVERIES, {"channels": [c for c, _ in ordered], "subjects": [s for _, s in ordered]}
    )
    return {(row[0], row[1]): stored(DeliveryFacts, row[2:]) for row in rows}


async def fill_deliveries(session: AsyncSession, facts: Mapping[DeliveryKey, DeliveryFacts]) -> None:
    if not facts:
        return
    ordered = sorted(facts.items())
    params: dict[str, list[Any]] = {
        "channels": [c for (c, _), _ in ordered],
        "subjects": [s for (_, s), _ in ordered],
    }
    for column in DELIVERY_COLUMNS:
        params[column] = [getattr(f, column) for _, f in ordered]
    await session.execute(_FILL_DELIVERIES, params)


# --- rebuilding the rollups from the facts --------------------------------------------------------------

_PAGE_CONVERSATIONS = statement(
    f"""
    SELECT conversation_id, {", ".join(CONVERSATION_COLUMNS)} FROM metrics.conversation_facts
    WHERE conversation_id > :after ORDER BY conversation_id LIMIT :limit
    """,  # noqa: S608 - the names are ours, not input
    after=sa.Uuid(),
    limit=sa.Integer(),
)
_PAGE_MESSAGES = statement(
    f"""
    SELECT message_id, {", ".join(MESSAGE_COLUMNS)} FROM metrics.message_facts
    WHERE message_id > :after ORDER BY message_id LIMIT :limit
    """,  # noqa: S608 - the names are ours, not input
    after=sa.Uuid(),
    limit=sa.Integer(),
)
_PAGE_DELIVERIES = statement(
    f"""
    SELECT channel, subject, {", ".join(DELIVERY_COLUMNS)} FROM metrics.delivery_facts
    WHERE (channel, subject) > (:channel, :subject) ORDER BY channel, subject LIMIT :limit
    """,  # noqa: S608 - the names are ours, not input
    channel=sa.Text(),
    subject=sa.Text(),
    limit=sa.Integer(),
)
_ASSIGNMENTS = sa.text("SELECT agent_id, at FROM metrics.conversation_handoffs WHERE kind = 'assigned'")


async def start_rebuild(session: AsyncSession) -> None:
    """Empty the rollups for a rebuild, holding off every other writer of them until the transaction
    ends (a consumer's call then adds its delta to the rebuilt cells, after this commits)."""
    await session.execute(sa.text("LOCK TABLE metrics.kpi_cells IN SHARE ROW EXCLUSIVE MODE"))
    await session.execute(sa.text("DELETE FROM metrics.kpi_cells"))


async def page_conversations(
    session: AsyncSession, after: uuid.UUID, limit: int
) -> list[tuple[uuid.UUID, ConversationFacts]]:
    rows = await session.execute(_PAGE_CONVERSATIONS, {"after": after, "limit": limit})
    return [(row[0], _conversation(row[1:])) for row in rows]


async def page_messages(
    session: AsyncSession, after: uuid.UUID, limit: int
) -> list[tuple[uuid.UUID, MessageFacts]]:
    rows = await session.execute(_PAGE_MESSAGES, {"after": after, "limit": limit})
    return [(row[0], stored(MessageFacts, row[1:])) for row in rows]


async def page_deliveries(
    session: AsyncSession, after: DeliveryKey, limit: int
) -> list[tuple[DeliveryKey, DeliveryFacts]]:
    rows = await session.execute(_PAGE_DELIVERIES, {"channel": after[0], "subject": after[1], "limit": limit})
    return [((row[0], row[1]), stored(DeliveryFacts, row[2:])) for row in rows]


async def assignments(session: AsyncSession) -> list[tuple[uuid.UUID, datetime]]:
    return [(agent_id, at) for agent_id, at in await session.execute(_ASSIGNMENTS)]


_CONVERSATION_MESSAGES = statement(
    f"""
    SELECT message_id, {", ".join(MESSAGE_COLUMNS)} FROM metrics.message_facts
    WHERE conversation_id = ANY(:ids)
    """,  # noqa: S608 - the names are ours, not input
    ids=UUIDS,
)


async def conversation_messages(
    session: AsyncSession, conversation_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, dict[uuid.UUID, MessageFacts]]:
    """The stored messages of these conversations, per conversation. Call it after ``claim_facts`` has
    locked the conversations: a transaction adding a message to one claims it too, so the set is stable
    until commit."""
    out: dict[uuid.UUID, dict[uuid.UUID, MessageFacts]] = {c: {} for c in conversation_ids}
    if not conversation_ids:
        return out
    for row in await session.execute(_CONVERSATION_MESSAGES, {"ids": sorted(conversation_ids)}):
        facts = stored(MessageFacts, row[1:])
        assert facts.conversation_id is not None
        out[facts.conversation_id][row[0]] = facts
    return out


def _columns(
    ordered: Sequence[tuple[uuid.UUID, Any]], columns: tuple[str, ...], prefix: str
) -> dict[str, list[Any]]:
    params: dict[str, list[Any]] = {f"{prefix}keys": [key for key, _ in ordered]}
    for column in columns:
        values = [getattr(facts, column) for _, facts in ordered]
        if column in _LISTS:
            values = [None if v is None else _SEP.join(v) for v in values]
        params[f"{prefix}{column}"] = values
    return params


async def fill_facts(
    session: AsyncSession,
    messages: Mapping[uuid.UUID, MessageFacts],
    conversations: Mapping[uuid.UUID, ConversationFacts],
) -> None:
    """Write the news of messages and conversations (only the columns that change), in one statement."""
    if messages or conversations:
        params = {
            **_columns(sorted(messages.items()), MESSAGE_COLUMNS, "m_"),
            **_columns(sorted(conversations.items()), CONVERSATION_COLUMNS, "c_"),
        }
        await session.execute(_FILL_FACTS, params)


@dataclass(frozen=True, slots=True)
class Changes:
    """What ``insert_changes`` added: how many status changes, reopens, requeues, tag changes and capacity
    changes, and the new assignments."""

    statuses: int
    reopens: int
    assignments: list[tuple[uuid.UUID, datetime]]
    requeues: int = 0
    retags: int = 0
    resizes: int = 0
    occurrences: Counter[str] = field(default_factory=Counter)  # new routing occurrences, by kind


async def insert_changes(
    session: AsyncSession,
    statuses: Mapping[tuple[uuid.UUID, datetime], tuple[str, int | None, str]],
    reopens: Collection[Reopen],
    handoffs: Collection[Handoff],
    retags: Collection[Retag] = (),
    occurrences: Collection[Occurrence] = (),
) -> Changes:
    """Store the agent status changes, conversation reopens, handoffs, tag changes and routing occurrences
    not stored yet; returns what was new."""
    if not (statuses or reopens or handoffs or retags or occurrences):
        return Changes(0, 0, [])
    retagged = sorted(retags)
    occurred = sorted(occurrences)
    ordered = sorted(statuses.items())
    reopened = sorted((r.conversation_id, r.reopened_at) for r in reopens)
    handed = sorted(handoffs)
    rows = await session.execute(
        _INSERT_CHANGES,
        {
            "agent_ids": [a for (a, _), _ in ordered],
            "changed_ats": [t for (_, t), _ in ordered],
            "statuses": [s for _, (s, _, _) in ordered],
            "capacities": [c for _, (_, c, _) in ordered],
            "status_events": [e for _, (_, _, e) in ordered],
            "conversation_ids": [c for c, _ in reopened],
            "reopened_ats": [t for _, t in reopened],
            "retag_ids": [r.conversation_id for r in retagged],
            "retagged_ats": [r.changed_at for r in retagged],
            "occurrence_kinds": [o.kind.value for o in occurred],
            "occurrence_ids": [o.conversation_id for o in occurred],
            "occurrence_ats": [o.at for o in occurred],
            "occurrence_agents": [o.agent_id for o in occurred],
            "occurrence_queues": [o.queue for o in occurred],
            "handoff_ids": [h.conversation_id for h in handed],
            "handoff_ats": [h.at for h in handed],
            "handoff_kinds": [h.kind.value for h in handed],
            "handoff_agents": [h.agent_id for h in handed],
        },
    )
    kinds: list[str] = []
    assignments: list[tuple[uuid.UUID, datetime]] = []
    for what, agent_id, at in rows:
        kinds.append(what)
        if what == HandoffKind.ASSIGNED.value:
            assignments.append((agent_id, at))
    return Changes(
        kinds.count(AgentStatusChanged.event_type),
        kinds.count("reopen"),
        assignments,
        kinds.count(HandoffKind.REQUEUED.value),
        kinds.count("retag"),
        kinds.count(AgentCapacityChanged.event_type),
        Counter(k.removeprefix("routing:") for k in kinds if k.startswith("routing:")),
    )


def _cell_arrays(cells: Mapping[Cell, Tally]) -> dict[str, list[Any]]:
    # Sorted: concurrent calls lock cells in one order.
    ordered = sorted(cells.items())
    return {
        "minutes": [c.minute for c, _ in ordered],
        "metrics": [c.metric for c, _ in ordered],
        "channels": [c.channel for c, _ in ordered],
        "queues": [c.queue for c, _ in ordered],
        "agents": [c.agent for c, _ in ordered],
        "tags": [c.tag for c, _ in ordered],
        "bins": [c.bin for c, _ in ordered],
        "counts": [t.count for _, t in ordered],
        "seconds": [t.seconds for _, t in ordered],
    }


async def add_cells(session: AsyncSession, cells: Mapping[Cell, Tally]) -> None:
    """Add these deltas to the rollup cells."""
    if cells:
        await session.execute(_ADD_CELLS, _cell_arrays(cells))


async def add_cells_and_counts(
    session: AsyncSession, cells: Mapping[Cell, Tally], counts: Mapping[str, int]
) -> None:
    """Add these deltas to the rollup cells and these counts to the event counts, in one statement."""
    counted = sorted((t, n) for t, n in counts.items() if n)
    if cells or counted:
        params = {
            **_cell_arrays(cells),
            "types": [t for t, _ in counted],
            "type_counts": [n for _, n in counted],
        }
        await session.execute(_ADD_CELLS_AND_COUNTS, params)


# --- reading ---------------------------------------------------------------------------------------------


async def counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(sa.select(EventCount.event_type, EventCount.count))
    return {event_type: int(count) for event_type, count in rows}


# --- reading the rollups -------------------------------------------------------------------------------
# Every read is one statement of constant shape: the window is [start, end) over cell minutes, each filter
# an optional parameter. Messages have no queue, agent or tag and assignments no channel, queue or tag
# (see ``observe``): a filter on a dimension a metric lacks does not exclude it.

# The metrics counted by channel only (messages, deliveries), as an SQL list.
_CHANNEL_ONLY = "(" + ", ".join(f"'{m}'" for m in sorted(BY_CHANNEL_ONLY)) + ")"
_FILTERS = f"""
    minute >= :start AND minute < :end
    AND (CAST(:channel AS text) IS NULL OR channel = :channel OR metric = 'assignment')
    AND (CAST(:queue AS text) IS NULL OR queue = :queue OR metric IN {_CHANNEL_ONLY} OR metric = 'assignment')
    AND (CAST(:agent AS text) IS NULL OR agent = :agent OR metric IN {_CHANNEL_ONLY})
"""
_CELL_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "start": sa.DateTime(timezone=True),
    "end": sa.DateTime(timezone=True),
    "channel": sa.Text(),
    "queue": sa.Text(),
    "agent": sa.Text(),
    "tag": sa.Text(),
}

# Per metric, queue, channel and bin (the main figures, per queue and per channel), in the tag's series.
_BY_QUEUE_CHANNEL = statement(
    f"""
    SELECT metric, queue, channel, bin, sum(count)::bigint AS count, sum(seconds) AS seconds
    FROM metrics.kpi_cells
    WHERE {_FILTERS} AND metric <> 'assignment'
      AND tag = CASE WHEN metric IN {_CHANNEL_ONLY} THEN '' ELSE :tag END
    GROUP BY metric, queue, channel, bin HAVING sum(count) <> 0
    """,  # noqa: S608 - ours
    **_CELL_TYPES,
)
_BY_TAG = statement(
    f"""
    SELECT tag, metric, bin, sum(count)::bigint AS count, sum(seconds) AS seconds
    FROM metrics.kpi_cells
    WHERE {_FILTERS} AND tag <> '' AND metric IN ('opened', 'resolved', 'wait')
      AND (CAST(:tag AS text) = '' OR tag = :tag)
    GROUP BY tag, metric, bin HAVING sum(count) <> 0
    """,  # noqa: S608 - ours
    **_CELL_TYPES,
)
_BY_AGENT = statement(
    f"""
    SELECT agent, metric, bin, sum(count)::bigint AS count, sum(seconds) AS seconds
    FROM metrics.kpi_cells
    WHERE {_FILTERS} AND agent <> '' AND metric IN ('assignment', 'resolved', 'handle')
      AND tag = CASE WHEN metric = 'assignment' THEN '' ELSE :tag END
    GROUP BY agent, metric, bin HAVING sum(count) <> 0
    """,  # noqa: S608 - ours
    **_CELL_TYPES,
)
_SERIES = statement(
    f"""
    SELECT date_trunc(:step, minute) AS at, metric, bin, sum(count)::bigint AS count
    FROM metrics.kpi_cells
    WHERE {_FILTERS} AND metric IN ('messages_in', 'opened', 'wait')
      AND tag = CASE WHEN metric IN {_CHANNEL_ONLY} THEN '' ELSE :tag END
    GROUP BY 1, metric, bin HAVING sum(count) <> 0
    ORDER BY 1
    """,  # noqa: S608 - ours
    step=sa.Text(),
    **_CELL_TYPES,
)

# Seconds each agent spent in each status within [start, end): each change lasts until the agent's next;
# and each agent's latest status and capacity as of ``end``.
_STATUS_SECONDS = statement(
    """
    WITH s AS (
        SELECT agent_id, status, changed_at,
               lead(changed_at) OVER (PARTITION BY agent_id ORDER BY changed_at) AS until
        FROM metrics.agent_status_changes
        WHERE changed_at < :end AND (CAST(:agent AS uuid) IS NULL OR agent_id = CAST(:agent AS uuid))
    )
    SELECT agent_id, status, until IS NULL AS latest,
           extract(epoch FROM least(coalesce(until, :end), :end) - greatest(changed_at, :start)) AS seconds,
           -- With the latest status, the latest capacity told (a change may not tell one: going silent).
           CASE WHEN until IS NULL THEN (
               SELECT c.capacity FROM metrics.agent_status_changes c
               WHERE c.agent_id = s.agent_id AND c.capacity IS NOT NULL AND c.changed_at < :end
               ORDER BY c.changed_at DESC LIMIT 1
           ) END AS capacity
    FROM s WHERE coalesce(until, :end) > :start
    """,
    start=sa.DateTime(timezone=True),
    end=sa.DateTime(timezone=True),
    agent=sa.Text(),
)

# The open conversations now, by queue, whether they wait, and (when not) their holder: the latest handoff
# by time says who holds one, unless it was taken back (requeued) or reopened since.
_OPEN_NOW = statement(
    """
    WITH open AS (
        SELECT f.queue, coalesce(f.queued_at, f.opened_at) AS since, f.last_reopened_at, h.kind, h.at,
               h.agent_id
        FROM metrics.conversation_facts f
        LEFT JOIN LATERAL (
            SELECT kind, at, agent_id FROM metrics.conversation_handoffs h
            WHERE h.conversation_id = f.conversation_id ORDER BY at DESC LIMIT 1
        ) h ON true
        WHERE f.is_open AND coalesce(f.queued_at, f.opened_at) IS NOT NULL
          AND (CAST(:channel AS text) IS NULL OR f.channel = :channel)
          AND (CAST(:queue AS text) IS NULL OR coalesce(f.queue, '') = :queue)
          AND (CAST(:tag AS text) = '' OR :tag = ANY(f.tags))
    ), judged AS (
        SELECT coalesce(queue, '') AS queue,
               (kind IS NULL OR kind = 'requeued' OR at < last_reopened_at) AS waiting,
               agent_id,
               greatest(since, CASE WHEN kind = 'requeued' THEN at END, last_reopened_at) AS waiting_since
        FROM open
    )
    SELECT queue, waiting, CASE WHEN waiting THEN NULL ELSE agent_id END AS agent_id, count(*) AS n,
           extract(epoch FROM :now - min(waiting_since)) AS longest
    FROM judged GROUP BY 1, 2, 3
    """,
    now=sa.DateTime(timezone=True),
    channel=sa.Text(),
    queue=sa.Text(),
    tag=sa.Text(),
)

_CUSTOMERS = statement(
    """
    SELECT count(DISTINCT customer_id) FROM metrics.conversation_facts
    WHERE opened_at >= :start AND opened_at < :end
      AND (CAST(:channel AS text) IS NULL OR channel = :channel)
      AND (CAST(:queue AS text) IS NULL OR coalesce(queue, '') = :queue)
      AND (CAST(:agent AS text) IS NULL OR CAST(agent_id AS text) = :agent)
      AND (CAST(:tag AS text) = '' OR :tag = ANY(tags))
    """,
    **_CELL_TYPES,
)


@dataclass(frozen=True, slots=True)
class Query:
    """A KPI read: the window [start, end), measured at ``now``, and the optional filters ('' tag: all)."""

    start: datetime
    end: datetime
    now: datetime
    channel: str | None = None
    queue: str | None = None
    agent: str | None = None
    tag: str = ""

    def params(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "channel": self.channel,
            "queue": self.queue,
            "agent": self.agent,
            "tag": self.tag,
        }


async def cells_by_queue_channel(session: AsyncSession, q: Query) -> list[Any]:
    return list(await session.execute(_BY_QUEUE_CHANNEL, q.params()))


async def cells_by_tag(session: AsyncSession, q: Query) -> list[Any]:
    return list(await session.execute(_BY_TAG, q.params()))


async def cells_by_agent(session: AsyncSession, q: Query) -> list[Any]:
    return list(await session.execute(_BY_AGENT, q.params()))


async def series(session: AsyncSession, q: Query, step: str) -> list[Any]:
    return list(await session.execute(_SERIES, {**q.params(), "step": step}))


async def status_seconds(session: AsyncSession, q: Query) -> list[Any]:
    return list(await session.execute(_STATUS_SECONDS, {"start": q.start, "end": q.end, "agent": q.agent}))


async def open_now(session: AsyncSession, q: Query) -> list[Any]:
    return list(
        await session.execute(_OPEN_NOW, {"now": q.now, "channel": q.channel, "queue": q.queue, "tag": q.tag})
    )


async def customers(session: AsyncSession, q: Query) -> int:
    return int((await session.execute(_CUSTOMERS, q.params())).scalar_one())


# --- routing occurrences ---------------------------------------------------------------------------------
# Offers have an agent and no queue, escalations and breaches a queue and no agent: a filter on the
# dimension a kind lacks does not exclude it. Channel and tag come from the conversation's facts.
_OCCURRENCES = statement(
    """
    SELECT o.kind, o.agent_id, o.queue, count(*) AS n
    FROM metrics.routing_occurrences o
    LEFT JOIN metrics.conversation_facts f ON f.conversation_id = o.conversation_id
    WHERE o.at >= :start AND o.at < :end
      AND (CAST(:agent AS text) IS NULL OR o.agent_id::text = :agent OR o.agent_id IS NULL)
      AND (CAST(:queue AS text) IS NULL OR o.queue = :queue OR o.queue IS NULL)
      AND (CAST(:channel AS text) IS NULL OR f.channel = :channel)
      AND (CAST(:tag AS text) = '' OR :tag = ANY(f.tags))
    GROUP BY o.kind, o.agent_id, o.queue
    """
)


async def occurrences(session: AsyncSession, q: Query) -> list[Any]:
    return list(await session.execute(_OCCURRENCES, q.params()))


# --- satisfaction ------------------------------------------------------------------------------------------

_ADD_ANSWERS = statement(
    """
    INSERT INTO metrics.survey_answers (survey_id, conversation_id, kind, score, follow_up, channel, agent_id,
        answered_at)
    SELECT * FROM unnest(:ids, :conversations, :kinds, :scores, :follow_ups, :channels, :agents, :ats)
    ON CONFLICT (survey_id) DO NOTHING
    """,
    ids=UUIDS,
    conversations=UUIDS,
    kinds=TEXTS,
    scores=INTS,
    follow_ups=BOOLS,
    channels=TEXTS,
    agents=UUIDS,
    ats=TIMES,
)


async def add_answers(session: AsyncSession, answers: Sequence[Any]) -> None:
    """Keep survey answers (``SurveyAnswered`` payloads) once each, in one statement."""
    if answers:
        await session.execute(
            _ADD_ANSWERS,
            {
                "ids": [a.survey_id for a in answers],
                "conversations": [a.conversation_id for a in answers],
                "kinds": [a.kind for a in answers],
                "scores": [a.score for a in answers],
                "follow_ups": [a.follow_up for a in answers],
                "channels": [a.channel.value for a in answers],
                "agents": [a.agent_id for a in answers],
                "ats": [a.answered_at for a in answers],
            },
        )


# Answers within the window, under the report's filters: the channel and agent are the answer's own (where
# the survey was asked, who had resolved it); queue and tag come from the conversation's facts.
_ANSWERS_WHERE = """
    s.answered_at >= :start AND s.answered_at < :end
    AND (CAST(:channel AS text) IS NULL OR s.channel = :channel)
    AND (CAST(:agent AS text) IS NULL OR s.agent_id::text = :agent)
    AND (CAST(:queue AS text) IS NULL OR f.queue = :queue)
    AND (CAST(:tag AS text) = '' OR :tag = ANY(f.tags))
"""
_SCORES = statement(
    f"""
    SELECT s.kind, s.score, count(*) AS n
    FROM metrics.survey_answers s
    LEFT JOIN metrics.conversation_facts f ON f.conversation_id = s.conversation_id
    WHERE {_ANSWERS_WHERE}
    GROUP BY s.kind, s.score
    """  # noqa: S608 - our own fragment
)
_LOW_RATINGS = statement(
    f"""
    SELECT s.survey_id, s.conversation_id, s.kind, s.score, s.channel, s.agent_id, s.answered_at
    FROM metrics.survey_answers s
    LEFT JOIN metrics.conversation_facts f ON f.conversation_id = s.conversation_id
    WHERE s.follow_up AND {_ANSWERS_WHERE}
    ORDER BY s.answered_at DESC, s.survey_id
    LIMIT :limit
    """  # noqa: S608 - our own fragment
)


async def scores(session: AsyncSession, q: Query) -> dict[tuple[str, int], int]:
    rows = await session.execute(_SCORES, q.params())
    return {(r.kind, r.score): r.n for r in rows}


async def low_ratings(session: AsyncSession, q: Query, limit: int) -> list[Any]:
    return list(await session.execute(_LOW_RATINGS, {**q.params(), "limit": limit}))
