"""The router's SQL, set-based and of constant shape.

Reservation is atomic in PostgreSQL: candidate agents and queued tasks are locked ``FOR UPDATE SKIP
LOCKED`` and capacity is taken by a conditional UPDATE, so replicas never over-assign an agent and never
assign one conversation twice. Routing skips locked rows, so it never waits on another transaction (a
conversation that misses an agent another transaction holds at that instant is picked up by the sweeper);
resolution and requeue wait for the rows they change.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import INTS, TEXTS, TIMES, UUIDS, statement
from switchboard_router.models import Task, TaskState
from switchboard_router.routing.estimate import HandleTimes, Sample, Server
from switchboard_router.routing.policy import Candidate, Match, Waiting


def _skillset(skills: frozenset[str] | Sequence[str]) -> str:
    # Skills match ^[a-z0-9][a-z0-9_.-]*$: no commas, so a comma-joined text round-trips exactly (arrays
    # of arrays cannot be ragged).
    return ",".join(sorted(skills))


_INSERT_TASKS = statement(
    """
    INSERT INTO router.tasks (conversation_id, state, required_skills, priority, channel, enqueued_at)
    SELECT u.id, 'queued', string_to_array(u.skills, ','), u.priority, u.channel, u.at
    FROM unnest(:ids, :skills, :priorities, :channels, :ats) AS u(id, skills, priority, channel, at)
    ON CONFLICT (conversation_id) DO NOTHING
    RETURNING conversation_id
    """,
    ids=UUIDS,
    skills=TEXTS,
    priorities=INTS,
    channels=TEXTS,
    ats=TIMES,
)


async def _queue(
    session: AsyncSession, stmt: sa.TextClause, tasks: Sequence[Waiting], channels: Sequence[str]
) -> set[uuid.UUID]:
    """Run a statement that queues ``tasks`` (insert or requeue); returns the conversation ids it queued."""
    if not tasks:
        return set()
    rows = await session.scalars(
        stmt,
        {
            "ids": [t.conversation_id for t in tasks],
            "skills": [_skillset(t.required_skills) for t in tasks],
            "priorities": [t.priority for t in tasks],
            "channels": list(channels),
            "ats": [t.enqueued_at for t in tasks],
        },
    )
    return set(rows.all())


async def insert_tasks(
    session: AsyncSession, tasks: Sequence[Waiting], channels: Sequence[str]
) -> set[uuid.UUID]:
    """Queue conversations; returns the ids inserted (one already known is a redelivered event)."""
    return await _queue(session, _INSERT_TASKS, tasks, channels)


# A reopened conversation's task waits again, if the reopen is the current one: a reopen replayed after a
# later resolution (its task closed after it) or after the requeue (not closed) changes nothing. The
# reopen's time is later than the resolution it follows (the conversation service makes it so).
_REQUEUE = statement(
    """
    UPDATE router.tasks t
    SET state = 'queued', agent_id = NULL, enqueued_at = u.at, assigned_at = NULL, closed_at = NULL,
        required_skills = string_to_array(u.skills, ','), priority = u.priority, channel = u.channel
    FROM unnest(:ids, :skills, :priorities, :channels, :ats) AS u(id, skills, priority, channel, at)
    WHERE t.conversation_id = u.id AND t.state = 'closed' AND t.closed_at <= u.at
    RETURNING t.conversation_id
    """,
    ids=UUIDS,
    skills=TEXTS,
    priorities=INTS,
    channels=TEXTS,
    ats=TIMES,
)


async def requeue(session: AsyncSession, tasks: Sequence[Waiting], channels: Sequence[str]) -> set[uuid.UUID]:
    """Queue the closed tasks of reopened conversations again, from ``enqueued_at`` (the reopen); returns
    the ids requeued (the others are stale or redelivered reopens). The rows stay locked, and look closed
    to other transactions, until commit."""
    return await _queue(session, _REQUEUE, tasks, channels)


_LOCK_BEST_CANDIDATES = statement(
    """
    SELECT c.id, c.skills, c.capacity, c.active_count, c.last_assigned_at
    FROM unnest(:skillsets) AS s(skills),
    LATERAL (
        SELECT id, skills, capacity, active_count, last_assigned_at FROM router.agents a
        WHERE a.status = 'online' AND a.active_count < a.capacity
          AND a.skills @> string_to_array(s.skills, ',')
        ORDER BY a.active_count::float8 / a.capacity, a.last_assigned_at NULLS FIRST, a.id
        LIMIT :per_skillset
        FOR UPDATE SKIP LOCKED
    ) AS c
    """,
    skillsets=TEXTS,
    per_skillset=sa.Integer(),
)


def _candidates(rows: sa.Result[Any]) -> list[Candidate]:
    return [
        Candidate(r.id, frozenset(r.skills), r.capacity, r.active_count, r.last_assigned_at) for r in rows
    ]


async def lock_best_candidates(
    session: AsyncSession, skillsets: Sequence[frozenset[str]], tasks: int
) -> list[Candidate]:
    """For each skill set, the ``tasks`` best-ranked online agents with capacity left who have it, locked
    for this transaction (agents another transaction holds are skipped).

    ``tasks`` per skill set is enough for an exact match: each assignment takes one agent, so the best of
    the remaining ``tasks`` candidates always beats any agent ranked below them (the order is the
    policy's ``rank``). An agent may come back for several skill sets; the policy dedupes.
    """
    if not skillsets or tasks <= 0:
        return []
    rows = await session.execute(
        _LOCK_BEST_CANDIDATES,
        {"skillsets": sorted({_skillset(s) for s in skillsets}), "per_skillset": tasks},
    )
    return _candidates(rows)


_LOCK_AGENTS = statement(
    """
    SELECT id, skills, capacity, active_count, last_assigned_at FROM router.agents a
    WHERE status = 'online' AND active_count < capacity
      AND (CAST(:agents AS uuid[]) IS NULL OR a.id = ANY(:agents))
    ORDER BY id
    FOR UPDATE SKIP LOCKED
    """,
    agents=UUIDS,
)


async def lock_agents_with_capacity(
    session: AsyncSession, agent_ids: Sequence[uuid.UUID] | None = None
) -> list[Candidate]:
    """Online agents with capacity left (among ``agent_ids`` when given), locked for this transaction;
    agents another transaction holds are skipped."""
    rows = await session.execute(_LOCK_AGENTS, {"agents": None if agent_ids is None else list(agent_ids)})
    return _candidates(rows)


_LOCK_QUEUED = statement(
    """
    SELECT conversation_id, required_skills, priority, enqueued_at FROM router.tasks t
    WHERE state = 'queued'
      AND EXISTS (SELECT 1 FROM unnest(:skillsets) s WHERE t.required_skills <@ string_to_array(s, ','))
    ORDER BY priority DESC, enqueued_at, conversation_id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """,
    skillsets=TEXTS,
    limit=sa.Integer(),
)


async def lock_queued(session: AsyncSession, candidates: Sequence[Candidate], limit: int) -> list[Waiting]:
    """The head of the queue that ``candidates`` could serve, locked; tasks another transaction is
    routing right now are skipped."""
    if not candidates or limit <= 0:
        return []
    rows = await session.execute(
        _LOCK_QUEUED, {"skillsets": sorted({_skillset(c.skills) for c in candidates}), "limit": limit}
    )
    return [Waiting(r.conversation_id, frozenset(r.required_skills), r.priority, r.enqueued_at) for r in rows]


_RESERVE = statement(
    """
    UPDATE router.agents a SET active_count = a.active_count + u.n, last_assigned_at = u.at
    FROM unnest(:ids, :ns, :ats) AS u(id, n, at)
    WHERE a.id = u.id AND a.status = 'online' AND a.active_count + u.n <= a.capacity
    RETURNING a.id
    """,
    ids=UUIDS,
    ns=INTS,
    ats=TIMES,
)


async def reserve(session: AsyncSession, units: Mapping[uuid.UUID, int], at: datetime) -> set[uuid.UUID]:
    """Take ``units`` of each agent's capacity if they are online and have it; returns the agents whose
    reservation held. The single source of truth for capacity."""
    if not units:
        return set()
    rows = await session.scalars(
        _RESERVE, {"ids": list(units), "ns": list(units.values()), "ats": [at] * len(units)}
    )
    return set(rows.all())


_MARK_ASSIGNED = statement(
    """
    UPDATE router.tasks t SET state = 'assigned', agent_id = u.agent_id, assigned_at = :at
    FROM unnest(:ids, :agents) AS u(id, agent_id)
    WHERE t.conversation_id = u.id AND t.state = 'queued'
    RETURNING t.conversation_id
    """,
    ids=UUIDS,
    agents=UUIDS,
    at=sa.DateTime(timezone=True),
)


async def mark_assigned(session: AsyncSession, matches: Sequence[Match], at: datetime) -> set[uuid.UUID]:
    if not matches:
        return set()
    rows = await session.scalars(
        _MARK_ASSIGNED,
        {"ids": [m.conversation_id for m in matches], "agents": [m.agent_id for m in matches], "at": at},
    )
    return set(rows.all())


# A resolution closes a task queued before it: one replayed after the conversation reopened (the task
# re-queued at the reopen, which is later than that resolution) leaves the reopened task alone.
_LOCK_OPEN_TASKS = statement(
    """
    SELECT t.state, t.agent_id FROM router.tasks t
    JOIN unnest(:ids, :ats) AS u(id, at) ON t.conversation_id = u.id
    WHERE t.state <> 'closed' AND t.enqueued_at <= u.at
    FOR UPDATE OF t
    """,
    ids=UUIDS,
    ats=TIMES,
)
_CLOSE = statement(
    """
    UPDATE router.tasks t SET state = 'closed', closed_at = u.at
    FROM unnest(:ids, :ats) AS u(id, at)
    WHERE t.conversation_id = u.id AND t.state <> 'closed' AND t.enqueued_at <= u.at
    """,
    ids=UUIDS,
    ats=TIMES,
)


async def close_tasks(session: AsyncSession, closing: Mapping[uuid.UUID, datetime]) -> dict[uuid.UUID, int]:
    """Close tasks not closed yet and queued before their resolution; returns, per agent, how many
    assigned ones closed (capacity to free).

    The tasks are locked first (waiting for a transaction routing them right now), so the state read is
    the one the update replaces.
    """
    if not closing:
        return {}
    params = {"ids": list(closing), "ats": list(closing.values())}
    rows = (await session.execute(_LOCK_OPEN_TASKS, params)).all()
    if not rows:
        return {}
    await session.execute(_CLOSE, params)
    freed: dict[uuid.UUID, int] = {}
    for state, agent_id in rows:
        if state == TaskState.ASSIGNED.value and agent_id is not None:
            freed[agent_id] = freed.get(agent_id, 0) + 1
    return freed


_RELEASE = statement(
    """
    UPDATE router.agents a SET active_count = greatest(a.active_count - u.n, 0)
    FROM unnest(:ids, :ns) AS u(id, n)
    WHERE a.id = u.id
    """,
    ids=UUIDS,
    ns=INTS,
)


async def release(session: AsyncSession, units: Mapping[uuid.UUID, int]) -> None:
    if units:
        await session.execute(_RELEASE, {"ids": list(units), "ns": list(units.values())})


_ANY_QUEUED = sa.select(sa.literal(1)).where(Task.state == TaskState.QUEUED.value).limit(1)


async def any_queued(session: AsyncSession) -> bool:
    """Whether anything waits (the partial queue index answers it without touching agents)."""
    return (await session.scalar(_ANY_QUEUED)) is not None


async def queue_snapshot(session: AsyncSession, limit: int) -> Sequence[Task]:
    """The head of the queue, in the order it is served (``policy.queue_order``)."""
    stmt = (
        sa.select(Task)
        .where(Task.state == TaskState.QUEUED.value)
        .order_by(Task.priority.desc(), Task.enqueued_at, Task.conversation_id)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def queue_length(session: AsyncSession) -> int:
    stmt = sa.select(sa.func.count()).where(Task.state == TaskState.QUEUED.value)
    return int(await session.scalar(stmt) or 0)


# The queued task and how many tasks of its queue (the same required skills) are served before it, in
# ``policy.queue_order``; counted on the partial queue index.
_QUEUED_WITH_AHEAD = statement(
    """
    SELECT t.conversation_id, t.required_skills, t.priority, t.channel, t.enqueued_at,
           (SELECT count(*) FROM router.tasks o
            WHERE o.state = 'queued' AND o.required_skills = t.required_skills
              AND (o.priority > t.priority
                   OR (o.priority = t.priority
                       AND (o.enqueued_at, o.conversation_id) < (t.enqueued_at, t.conversation_id)))
           ) AS ahead
    FROM router.tasks t
    WHERE t.conversation_id = :id AND t.state = 'queued'
    """,
    id=sa.Uuid(),
)


@dataclass(frozen=True, slots=True)
class QueuedTask:
    conversation_id: uuid.UUID
    required_skills: list[str]
    priority: int
    channel: str
    enqueued_at: datetime
    ahead: int  # tasks of the same queue served before this one


async def queued_with_position(session: AsyncSession, conversation_id: uuid.UUID) -> QueuedTask | None:
    """The conversation's task if it is waiting, with how many of its queue are ahead of it."""
    row = (await session.execute(_QUEUED_WITH_AHEAD, {"id": conversation_id})).one_or_none()
    if row is None:
        return None
    return QueuedTask(
        row.conversation_id, row.required_skills, row.priority, row.channel, row.enqueued_at, row.ahead
    )


# Online agents grouped by their (sorted, deduplicated) skills: the estimate only adds capacities up, so
# a group is exact, and there are far fewer groups than agents.
_ONLINE_SERVERS = statement(
    """
    SELECT skills, sum(capacity) AS capacity, sum(greatest(capacity - active_count, 0)) AS free
    FROM router.agents
    WHERE status = 'online'
    GROUP BY skills
    """
)


async def online_servers(session: AsyncSession) -> list[Server]:
    rows = await session.execute(_ONLINE_SERVERS)
    return [Server(frozenset(r.skills), int(r.capacity), int(r.free)) for r in rows]


# The most recently closed assignments (tasks closed without one, resolved while waiting, are not handle
# times), newest first on the partial index ``tasks_closed``; their mean duration per required skill set
# and overall (the empty grouping set). A clock difference between services never makes one negative.
_HANDLE_TIMES = statement(
    """
    WITH recent AS (
        SELECT required_skills,
               extract(epoch FROM greatest(closed_at - assigned_at, interval '0')) AS seconds
        FROM router.tasks
        WHERE state = 'closed' AND assigned_at IS NOT NULL
        ORDER BY closed_at DESC
        LIMIT :sample
    )
    SELECT grouping(required_skills) = 1 AS overall, required_skills, count(*) AS n,
           avg(seconds)::float8 AS mean_seconds
    FROM recent
    GROUP BY GROUPING SETS ((required_skills), ())
    """,
    sample=sa.Integer(),
)


async def handle_times(session: AsyncSession, sample: int) -> HandleTimes:
    """Mean handle times over the ``sample`` most recently closed assignments."""
    by_skills: dict[frozenset[str], Sample] = {}
    overall: Sample | None = None
    for r in await session.execute(_HANDLE_TIMES, {"sample": sample}):
        if r.n == 0:
            continue  # the overall row of an empty history
        measured = Sample(int(r.n), float(r.mean_seconds))
        if r.overall:
            overall = measured
        else:
            by_skills[frozenset(r.required_skills)] = measured
    return HandleTimes(by_skills, overall)
