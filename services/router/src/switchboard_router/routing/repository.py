"""The router's SQL, set-based and of constant shape.

Reservation is atomic in PostgreSQL, so replicas never over-assign an agent and never assign one
conversation twice: queued tasks are locked ``FOR UPDATE SKIP LOCKED`` (or are this transaction's own,
inserted or updated by it); candidate agents are read without locks, and only the agents chosen are
locked (``SKIP LOCKED``) by the statement that takes their capacity, a conditional UPDATE that checks the
capacity on the row's latest version. Routing skips locked rows, so it never waits on another
transaction; a choice whose agent is held elsewhere or has filled up meanwhile is made again among the
others (``service._place``), and a conversation left without one is picked up by the sweeper. Resolution
and requeue wait for the rows they change.

Eligibility is written twice, here in SQL (so a fetch limited to the best candidates is exact) and in
``policy.qualifies`` / ``policy._Pool.has_room``; the unit and integration tests hold them to each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import INTS, TEXTS, TIMES, UUIDS, statement
from switchboard_router.models import Task, TaskState
from switchboard_router.routing.estimate import HandleTimes, Sample, Slots
from switchboard_router.routing.policy import (
    WORKLOADS,
    Candidate,
    Policy,
    Requirement,
    Waiting,
    workload_index,
)

# Agent ``a`` meets a requirement (skills text[], levels int[], lang text): every skill at its minimum
# level, and the language if one is required. Busy or not: the queue estimates count busy agents too.
_QUALIFIES = """
    a.skills @> {skills}
    AND ({lang} IS NULL OR {lang} = ANY(a.languages))
    AND NOT EXISTS (
        SELECT 1 FROM unnest({skills}, {levels}) AS q(s, m)
        WHERE coalesce((a.proficiency ->> q.s)::int, 0) < q.m
    )
"""
# A requirement as the SQL sees it: r.skills text[], r.levels int[], r.lang text, r.w int (1-based).
_ELIGIBLE = (
    """
    a.status = 'online' AND a.deleted_at IS NULL
    AND a.active_count < a.capacity AND a.loads[{w}] < a.capacities[{w}]
    AND"""
    + _QUALIFIES
)
# policy.rank, in SQL, for the requirement's policy: the skill sum (most skilled), the load share, the
# fuller of the total and the workload's capacity (not for round robin), then idle longest, then id.
_RANK = """
    CASE WHEN {policy} = 'most_skilled' THEN -(
        SELECT coalesce(sum((a.proficiency ->> q.s)::int), 0) FROM unnest({skills}) AS q(s)
    ) ELSE 0 END,
    CASE WHEN {policy} = 'round_robin' THEN 0 ELSE greatest(
        a.active_count::float8 / nullif(a.capacity, 0), a.loads[{w}]::float8 / nullif(a.capacities[{w}], 0)
    ) END,
    a.last_assigned_at NULLS FIRST, a.id
"""
# How the agent takes work: auto-accept unless one of their teams wants offers (then the shortest of those
# teams' answer times).
_AGENT_COLUMNS = """
    a.id, a.proficiency, a.languages, a.capacity, a.active_count, a.capacities, a.loads, a.last_assigned_at,
    (SELECT min(tm.offer_timeout_s) FROM router.teams tm
     WHERE tm.name = ANY(a.teams) AND NOT tm.auto_accept) AS offer_timeout_s
"""


def _text(values: Iterable[object]) -> str:
    # Skills match ^[a-z0-9][a-z0-9_.-]*$: no commas, so a comma-joined text round-trips exactly (arrays
    # of arrays cannot be ragged).
    return ",".join(str(v) for v in values)


@dataclass(frozen=True, slots=True)
class Candidates:
    """Candidate agents as read (unlocked: their capacity is checked again when it is taken), and how
    each takes work."""

    candidates: list[Candidate]
    offer_timeout_s: dict[uuid.UUID, int]  # agents who are offered work (absent: auto-accept)
    sticky: dict[uuid.UUID, uuid.UUID]  # customer → their previous agent, among the candidates

    @staticmethod
    def of(rows: Iterable[Any]) -> Candidates:
        candidates: dict[uuid.UUID, Candidate] = {}
        timeouts: dict[uuid.UUID, int] = {}
        sticky: dict[uuid.UUID, uuid.UUID] = {}
        for r in rows:
            candidates[r.id] = Candidate(
                r.id,
                r.proficiency,
                r.capacity,
                r.active_count,
                r.last_assigned_at,
                tuple(r.capacities),
                tuple(r.loads),
                frozenset(r.languages),
            )
            if r.offer_timeout_s is not None:
                timeouts[r.id] = int(r.offer_timeout_s)
            for customer in getattr(r, "sticky_customers", None) or ():
                sticky[customer] = r.id
        return Candidates(list(candidates.values()), timeouts, sticky)


_TASK_VALUES = (
    "unnest(:ids, :customers, :skills, :levels, :langs, :workloads, :priorities, :channels, :ats, :queues,"
    " :optional, :slas, :rules, :bskills, :blevels)"
)
_TASK_COLUMNS = (
    "u(id, customer_id, skills, levels, lang, workload, priority, channel, at, queue, optional, sla, rule_id,"
    " bskills, blevels)"
)
_TASK_TYPES: dict[str, Any] = {
    "ids": UUIDS,
    "customers": UUIDS,
    "skills": TEXTS,
    "levels": TEXTS,
    "langs": TEXTS,
    "workloads": INTS,
    "priorities": INTS,
    "channels": TEXTS,
    "ats": TIMES,
    "queues": TEXTS,
    "optional": TEXTS,
    "slas": INTS,
    "rules": UUIDS,
    "bskills": TEXTS,
    "blevels": TEXTS,
}

# A queued task as routing needs it (``_waiting``), with its queue's policy; qualified, since an UPDATE's
# FROM has the same names.
_POLICY = "coalesce((SELECT qu.policy FROM router.queues qu WHERE qu.name = t.queue), 'least_loaded')"
# The team serving its queue, else the default queue's (as business hours are chosen).
_TEAM = (
    "coalesce((SELECT qu.team FROM router.queues qu WHERE qu.name = t.queue),"
    " (SELECT qd.team FROM router.queues qd WHERE qd.name = 'default'))"
)
_QUEUED_COLUMNS = (
    "t.conversation_id, t.required_skills, t.min_levels, t.language, t.workload, t.priority, t.enqueued_at,"
    f" t.declined_by, {_POLICY} AS policy, t.queue, {_TEAM} AS team"
)
_INSERT_TASKS_SQL = f"""
    INSERT INTO router.tasks AS t (conversation_id, customer_id, state, required_skills, min_levels, language,
                              workload, priority, channel, enqueued_at, queue, optional_skills,
                              sla_target_s, rule_id, base_skills, base_levels)
    SELECT u.id, u.customer_id, 'queued', string_to_array(u.skills, ','),
           string_to_array(u.levels, ',')::smallint[], u.lang, u.workload, u.priority, u.channel, u.at,
           u.queue, string_to_array(u.optional, ','), u.sla, u.rule_id, string_to_array(u.bskills, ','),
           string_to_array(u.blevels, ',')::smallint[]
    FROM {_TASK_VALUES} AS {_TASK_COLUMNS}
    ON CONFLICT (conversation_id) DO NOTHING
    RETURNING {_QUEUED_COLUMNS}
"""  # noqa: S608 - our own fragments, no input
_INSERT_TASKS = statement(_INSERT_TASKS_SQL, **_TASK_TYPES)
# Statements returning agents and tasks as one result: agent rows (``_AGENT_COLUMNS`` and the sticky
# customers) with the task columns NULL, task rows (``_QUEUED_COLUMNS``) with the agent columns NULL.
_NO_TASK = """NULL::uuid AS conversation_id, NULL::text[] AS required_skills,
           NULL::smallint[] AS min_levels, NULL::text AS language, NULL::int AS workload,
           NULL::int AS priority, NULL::timestamptz AS enqueued_at, NULL::uuid[] AS declined_by,
           NULL::text AS policy, NULL::text AS queue, NULL::text AS team"""
_NO_AGENT = """NULL::uuid, NULL::jsonb, NULL::text[], NULL::int, NULL::int, NULL::int[], NULL::int[],
           NULL::timestamptz, NULL::int"""


@dataclass(frozen=True, slots=True)
class NewTask:
    waiting: Waiting
    customer_id: uuid.UUID
    channel: str
    # What a routing rule decided, beside the requirement and priority already in ``waiting``.
    queue: str = "default"
    optional_skills: tuple[str, ...] = ()
    sla_target_s: int | None = None
    rule_id: uuid.UUID | None = None
    # What was decided before escalation (ring 0 may ask for more: the optional skills); None: as required.
    base: tuple[tuple[str, int], ...] | None = None


async def _queue(session: AsyncSession, stmt: sa.TextClause, tasks: Sequence[NewTask]) -> list[Waiting]:
    """Run a statement that queues ``tasks`` (insert or requeue); returns the tasks it queued, as stored."""
    if not tasks:
        return []
    return [_waiting(r) for r in await session.execute(stmt, _task_params(tasks))]


def _task_params(tasks: Sequence[NewTask]) -> dict[str, list[Any]]:
    reqs = [t.waiting.requirement for t in tasks]
    return {
        "ids": [t.waiting.conversation_id for t in tasks],
        "customers": [t.customer_id for t in tasks],
        "skills": [_text(s for s, _ in r.skills) for r in reqs],
        "levels": [_text(m for _, m in r.skills) for r in reqs],
        "langs": [r.language for r in reqs],
        "workloads": [workload_index(r.workload) for r in reqs],
        "priorities": [t.waiting.priority for t in tasks],
        "channels": [t.channel for t in tasks],
        "ats": [t.waiting.enqueued_at for t in tasks],
        "queues": [t.queue for t in tasks],
        "optional": [_text(sorted(t.optional_skills)) for t in tasks],
        "slas": [t.sla_target_s for t in tasks],
        "rules": [t.rule_id for t in tasks],
        "bskills": [_text(s for s, _ in _base(t)) for t in tasks],
        "blevels": [_text(m for _, m in _base(t)) for t in tasks],
    }


def _base(task: NewTask) -> tuple[tuple[str, int], ...]:
    return task.waiting.requirement.skills if task.base is None else task.base


async def insert_tasks(session: AsyncSession, tasks: Sequence[NewTask]) -> list[Waiting]:
    """Queue conversations; returns those inserted (one already known is a redelivered event)."""
    return await _queue(session, _INSERT_TASKS, tasks)


async def insert_with_candidates(
    session: AsyncSession,
    tasks: Sequence[NewTask],
    *,
    sticky_customers: Sequence[uuid.UUID] = (),
    sticky_since: datetime | None = None,
) -> tuple[list[Waiting], Candidates]:
    """``insert_tasks`` and the ``best_candidates`` of the tasks inserted, in one statement."""
    if not tasks:
        return [], Candidates([], {}, {})
    rows = (
        await session.execute(
            _INSERT_WITH_CANDIDATES,
            {**_task_params(tasks), **_sticky_params(sticky_customers, sticky_since), "preferred": []},
        )
    ).all()
    return (
        [_waiting(r) for r in rows if r.conversation_id is not None],
        Candidates.of(r for r in rows if r.conversation_id is None),
    )


def _sticky_params(customers: Sequence[uuid.UUID], since: datetime | None) -> dict[str, Any]:
    return {"sticky_customers": list(customers) if since is not None else [], "since": since}


# A reopened conversation's task waits again, if the reopen is the current one: a reopen replayed after a
# later resolution (its task closed after it) or after the requeue (not closed) changes nothing. The
# reopen's time is later than the resolution it follows (the conversation service makes it so). It keeps
# what routing decided when it opened (skills and levels, queue, rule), taking the higher priority and the
# reopening message's channel.
_REQUEUE = statement(
    f"""
    UPDATE router.tasks t
    SET state = 'queued', agent_id = NULL, enqueued_at = u.at, assigned_at = NULL, closed_at = NULL,
        answered_at = NULL,
        offered_at = NULL, offer_expires_at = NULL, declined_by = '{{}}', customer_id = u.customer_id,
        sla_breached_at = NULL, workload = u.workload, priority = greatest(t.priority, u.priority),
        channel = u.channel
    FROM {_TASK_VALUES} AS {_TASK_COLUMNS}
    WHERE t.conversation_id = u.id AND t.state = 'closed' AND t.closed_at <= u.at
    RETURNING {_QUEUED_COLUMNS}
    """,  # noqa: S608 - our own fragments, no input
    **_TASK_TYPES,
)


async def requeue(session: AsyncSession, tasks: Sequence[NewTask]) -> list[Waiting]:
    """Queue the closed tasks of reopened conversations again, from ``enqueued_at`` (the reopen); returns
    those requeued, as stored (the others are stale or redelivered reopens). The rows stay locked, and look
    closed to other transactions, until commit."""
    return await _queue(session, _REQUEUE, tasks)


def _candidates_sql(requirements: str, tail: str = "") -> str:
    """The best candidates of each requirement of ``r`` (a CTE made by ``requirements``), and the preferred
    and sticky agents; ``tail`` is appended to both select lists."""
    return f"""
    WITH {requirements}, sticky AS (
        SELECT DISTINCT ON (t.customer_id) t.customer_id, t.agent_id FROM router.tasks t
        WHERE t.customer_id = ANY(:sticky_customers) AND t.agent_id IS NOT NULL AND t.assigned_at >= :since
        ORDER BY t.customer_id, t.assigned_at DESC
    )
    SELECT c.*, NULL::uuid[] AS sticky_customers{tail} FROM r, LATERAL (
        SELECT {_AGENT_COLUMNS} FROM router.agents a
        WHERE {_ELIGIBLE.format(w="r.w", skills="r.skills", levels="r.levels", lang="r.lang")}
        ORDER BY {_RANK.format(w="r.w", skills="r.skills", policy="r.policy")}
        LIMIT r.n
    ) AS c
    UNION ALL
    SELECT p.*, (SELECT array_agg(s.customer_id) FROM sticky s WHERE s.agent_id = p.id){tail} FROM (
        SELECT {_AGENT_COLUMNS} FROM router.agents a
        WHERE a.id = ANY(CAST(:preferred AS uuid[]) || ARRAY(SELECT agent_id FROM sticky))
          AND a.status = 'online' AND a.deleted_at IS NULL AND a.active_count < a.capacity
    ) AS p
    """  # noqa: S608 - our own fragments, no input


_STICKY_TYPES: dict[str, Any] = {
    "sticky_customers": UUIDS,
    "since": sa.DateTime(timezone=True),
    "preferred": UUIDS,
}
_BEST_CANDIDATES = statement(
    _candidates_sql(
        """r AS (
        SELECT string_to_array(u.skills, ',') AS skills, string_to_array(u.levels, ',')::int[] AS levels,
               u.lang, u.w, u.n, u.policy
        FROM unnest(:skills, :levels, :langs, :workloads, :limits, :policies)
             AS u(skills, levels, lang, w, n, policy)
    )"""
    ),
    skills=TEXTS,
    levels=TEXTS,
    langs=TEXTS,
    workloads=INTS,
    limits=INTS,
    policies=TEXTS,
    **_STICKY_TYPES,
)
# Conversations arriving, queued and their candidates read in one round trip: the requirements are those
# of the tasks inserted (a redelivered one is not), each fetched as far as ``best_candidates`` would (as
# many as the tasks inserted: new tasks exclude nobody), and the inserted tasks come back as rows too.
_INSERTED_REQUIREMENTS = f"""ins AS ({_INSERT_TASKS_SQL}), r AS (
        SELECT DISTINCT i.required_skills AS skills, i.min_levels::int[] AS levels, i.language AS lang,
               i.workload AS w, (SELECT count(*) FROM ins) AS n, i.policy
        FROM ins i
    )"""  # noqa: S608 - our own fragments, no input
_INSERTED = f"""
    UNION ALL
    SELECT {_NO_AGENT}, NULL::uuid[], i.* FROM ins i
"""  # noqa: S608 - our own fragments, no input
_INSERT_WITH_CANDIDATES = statement(
    _candidates_sql(_INSERTED_REQUIREMENTS, ", " + _NO_TASK) + _INSERTED,
    **_TASK_TYPES,
    **_STICKY_TYPES,
)


async def best_candidates(
    session: AsyncSession,
    tasks: Sequence[Waiting],
    *,
    sticky_customers: Sequence[uuid.UUID] = (),
    sticky_since: datetime | None = None,
) -> Candidates:
    """For each requirement, the best-ranked eligible agents, enough to serve its tasks; plus the tasks'
    preferred agents and the previous agents (assigned since ``sticky_since``) of ``sticky_customers``.
    Read without locks: ``reserve_and_place`` locks the agents chosen and checks their capacity again.

    As many per requirement as there are tasks (plus the agents the requirement's tasks exclude) is enough
    for an exact match: each assignment, of any requirement, raises the rank of one agent, so an agent
    ranked below that many can never become the best. An agent may come back for several requirements;
    the policy dedupes.
    """
    if not tasks:
        return Candidates([], {}, {})
    need: dict[tuple[Requirement, Policy], int] = {}
    for t in tasks:
        key = (t.requirement, t.policy)
        need[key] = need.get(key, len(tasks)) + len(t.excluded)
    reqs = [r for r, _ in need]
    rows = await session.execute(
        _BEST_CANDIDATES,
        {
            "skills": [_text(s for s, _ in r.skills) for r in reqs],
            "levels": [_text(m for _, m in r.skills) for r in reqs],
            "langs": [r.language for r in reqs],
            "workloads": [workload_index(r.workload) for r in reqs],
            "limits": list(need.values()),
            "policies": [p.value for _, p in need],
            **_sticky_params(sticky_customers, sticky_since),
            "preferred": sorted({t.preferred_agent for t in tasks if t.preferred_agent is not None}),
        },
    )
    return Candidates.of(rows)


_AGENTS_WITH_CAPACITY = statement(
    f"""
    SELECT {_AGENT_COLUMNS} FROM router.agents a
    WHERE status = 'online' AND deleted_at IS NULL AND active_count < capacity
      AND (CAST(:agents AS uuid[]) IS NULL OR a.id = ANY(:agents))
    ORDER BY id
    """,  # noqa: S608 - our own fragments, no input
    agents=UUIDS,
)


async def agents_with_capacity(
    session: AsyncSession, agent_ids: Sequence[uuid.UUID] | None = None
) -> Candidates:
    """Online agents with capacity left (among ``agent_ids`` when given), read without locks (as
    ``best_candidates``)."""
    rows = await session.execute(
        _AGENTS_WITH_CAPACITY, {"agents": None if agent_ids is None else list(agent_ids)}
    )
    return Candidates.of(rows)


# For each agent, the first of the queue it could take, as many as it has room for; the union is locked.
# Not every task so locked gets an agent (two agents may want the same ones), but every round serves the
# head of each agent's own queue, so nothing waits forever behind tasks nobody here can take.
_ELIGIBLE_TASK = _ELIGIBLE.format(
    w="o.workload", skills="o.required_skills", levels="o.min_levels", lang="o.language"
)
_LOCK_QUEUED_SQL = f"""
    SELECT {_QUEUED_COLUMNS}
    FROM router.tasks t
    WHERE t.state = 'queued' AND t.conversation_id IN (
        SELECT q.conversation_id FROM router.agents a, LATERAL (
            SELECT o.conversation_id FROM router.tasks o
            WHERE o.state = 'queued' AND NOT (a.id = ANY(o.declined_by)) AND o.conversation_id <> ALL(:skip)
              AND {_ELIGIBLE_TASK}
            ORDER BY o.priority DESC, o.enqueued_at, o.conversation_id
            LIMIT a.capacity - a.active_count
        ) AS q
        WHERE {{agents}}
    )
    ORDER BY t.priority DESC, t.enqueued_at, t.conversation_id
    FOR UPDATE OF t SKIP LOCKED
"""  # noqa: S608 - our own fragments, no input
_LOCK_QUEUED = statement(_LOCK_QUEUED_SQL.format(agents="a.id = ANY(:agents)"), agents=UUIDS, skip=UUIDS)
# An agent freed (or coming online) in one round trip, not two: the agents with room among ``:agents``
# (``agents_with_capacity``) and the head of the queue they could take (``lock_queued``), as one result of
# agent rows and task rows, each with the other's columns NULL.
_AGENTS_AND_QUEUE = statement(
    f"""
    WITH c AS MATERIALIZED (
        SELECT {_AGENT_COLUMNS} FROM router.agents a
        WHERE a.status = 'online' AND a.deleted_at IS NULL AND a.active_count < a.capacity
          AND a.id = ANY(:agents)
    )
    SELECT c.*, NULL::uuid[] AS sticky_customers, {_NO_TASK} FROM c
    UNION ALL
    SELECT {_NO_AGENT}, NULL::uuid[], q.*
    FROM ({_LOCK_QUEUED_SQL.format(agents="a.id IN (SELECT id FROM c)")}) AS q
    """,  # noqa: S608 - our own fragments, no input
    agents=UUIDS,
    skip=UUIDS,
)


async def agents_and_queue(
    session: AsyncSession, agent_ids: Sequence[uuid.UUID]
) -> tuple[Candidates, list[Waiting]]:
    """``agents_with_capacity(agent_ids)`` and the ``lock_queued`` of those agents, in one statement."""
    rows = (await session.execute(_AGENTS_AND_QUEUE, {"agents": list(agent_ids), "skip": []})).all()
    return (
        Candidates.of(r for r in rows if r.conversation_id is None),
        [_waiting(r) for r in rows if r.conversation_id is not None],
    )


def _waiting(r: Any) -> Waiting:
    skills = dict(zip(r.required_skills, r.min_levels, strict=True))
    return Waiting(
        r.conversation_id,
        Requirement.of(skills, WORKLOADS[r.workload - 1], r.language),
        r.priority,
        r.enqueued_at,
        excluded=frozenset(r.declined_by),
        policy=Policy(r.policy),
        queue=r.queue,
        team=r.team,
    )


async def lock_queued(
    session: AsyncSession, candidates: Sequence[Candidate], skip: Collection[uuid.UUID] = ()
) -> list[Waiting]:
    """The head of the queue that ``candidates`` could serve (past the tasks in ``skip``), locked; tasks
    another transaction is routing right now are skipped."""
    if not candidates:
        return []
    rows = await session.execute(
        _LOCK_QUEUED, {"agents": [c.agent_id for c in candidates], "skip": list(skip)}
    )
    return [_waiting(r) for r in rows]


def per_workload(units: Iterable[tuple[uuid.UUID, int]]) -> dict[uuid.UUID, list[int]]:
    """Count (agent, 1-based workload) units into per-agent arrays in ``WORKLOADS`` order."""
    out: dict[uuid.UUID, list[int]] = {}
    for agent_id, w in units:
        out.setdefault(agent_id, [0] * len(WORKLOADS))[w - 1] += 1
    return out


def _unit_params(units: Mapping[uuid.UUID, Sequence[int]]) -> dict[str, list[Any]]:
    params: dict[str, list[Any]] = {"ids": list(units)}
    for k in range(len(WORKLOADS)):
        params[f"n{k + 1}"] = [u[k] for u in units.values()]
    return params


_UNITS = "unnest(:ids, :n1, :n2, :n3, :n4) AS u(id, n1, n2, n3, n4)"
_UNIT_TYPES: dict[str, Any] = {"ids": UUIDS, "n1": INTS, "n2": INTS, "n3": INTS, "n4": INTS}

_TAKE = """
    UPDATE router.agents a
    SET active_count = a.active_count + u.n1 + u.n2 + u.n3 + u.n4, last_assigned_at = u.at,
        loads = ARRAY[a.loads[1] + u.n1, a.loads[2] + u.n2, a.loads[3] + u.n3, a.loads[4] + u.n4]
    FROM unnest(:ids, :n1, :n2, :n3, :n4, :ats) AS u(id, n1, n2, n3, n4, at)
    WHERE a.id = u.id {check}
    RETURNING a.id
"""
# A supervisor's assignment takes capacity whatever is left: their call, not the policy's.
_FORCE_TAKE = statement(_TAKE.format(check=""), ats=TIMES, **_UNIT_TYPES)


_RELEASE = statement(
    f"""
    UPDATE router.agents a
    SET active_count = greatest(a.active_count - (u.n1 + u.n2 + u.n3 + u.n4), 0),
        loads = ARRAY[greatest(a.loads[1] - u.n1, 0), greatest(a.loads[2] - u.n2, 0),
                      greatest(a.loads[3] - u.n3, 0), greatest(a.loads[4] - u.n4, 0)]
    FROM {_UNITS}
    WHERE a.id = u.id
    """,  # noqa: S608 - our own fragments, no input
    **_UNIT_TYPES,
)


async def release(session: AsyncSession, units: Mapping[uuid.UUID, Sequence[int]]) -> None:
    if units:
        await session.execute(_RELEASE, _unit_params(units))


@dataclass(frozen=True, slots=True)
class Placement:
    conversation_id: uuid.UUID
    agent_id: uuid.UUID
    expires_at: datetime | None  # an offer's deadline; None for a direct assignment


# The agents chosen are locked here, in id order and skipping those another transaction holds (routing
# never waits, so it cannot deadlock), then their capacity is taken only where it is still there: in READ
# COMMITTED an UPDATE evaluates its condition on the row's latest committed version (a row changed since
# the statement's snapshot is re-read and re-checked), and the lock keeps it so until commit. Only the
# tasks of agents so reserved are assigned or offered; the others stay queued for the caller to choose
# again. One statement, one round trip, however many placements.
_RESERVE = _TAKE.format(
    check="""
    AND a.id IN (SELECT id FROM chosen)
    AND a.status = 'online' AND a.active_count + u.n1 + u.n2 + u.n3 + u.n4 <= a.capacity
    AND a.loads[1] + u.n1 <= a.capacities[1] AND a.loads[2] + u.n2 <= a.capacities[2]
    AND a.loads[3] + u.n3 <= a.capacities[3] AND a.loads[4] + u.n4 <= a.capacities[4]
    """
)
_RESERVE_AND_PLACE = statement(
    f"""
    WITH chosen AS (
        SELECT a.id FROM router.agents a WHERE a.id = ANY(:ids) ORDER BY a.id FOR UPDATE SKIP LOCKED
    ), reserved AS ({_RESERVE}), placed AS (
        UPDATE router.tasks t
        SET state = CASE WHEN p.expires IS NULL THEN 'assigned' ELSE 'offered' END, agent_id = p.agent_id,
            assigned_at = CASE WHEN p.expires IS NULL THEN CAST(:at AS timestamptz) END,
            offered_at = CASE WHEN p.expires IS NULL THEN NULL ELSE CAST(:at AS timestamptz) END,
            offer_expires_at = p.expires
        FROM unnest(:tasks, :agents, :expires) AS p(id, agent_id, expires)
        WHERE t.conversation_id = p.id AND t.state = 'queued' AND p.agent_id IN (SELECT id FROM reserved)
        RETURNING t.conversation_id
    )
    SELECT id AS agent_id, NULL::uuid AS conversation_id FROM reserved
    UNION ALL
    SELECT NULL::uuid, conversation_id FROM placed
    """,  # noqa: S608 - our own fragments, no input
    ats=TIMES,
    tasks=UUIDS,
    agents=UUIDS,
    expires=TIMES,
    at=sa.DateTime(timezone=True),
    **_UNIT_TYPES,
)


async def reserve_and_place(
    session: AsyncSession,
    units: Mapping[uuid.UUID, Sequence[int]],
    last: Mapping[uuid.UUID, datetime],
    placements: Sequence[Placement],
    at: datetime,
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """Take ``units`` (per workload) of each agent's capacity if no other transaction holds the agent and
    they are online and have it, setting their ``last_assigned_at`` to ``last``; and assign or offer (at
    ``at``) the queued tasks of ``placements`` whose agent was so reserved. Returns the agents reserved
    and the tasks placed. The single source of truth for capacity."""
    if not units:
        return set(), set()
    rows = await session.execute(
        _RESERVE_AND_PLACE,
        {
            **_unit_params(units),
            "ats": [last[a] for a in units],
            "tasks": [p.conversation_id for p in placements],
            "agents": [p.agent_id for p in placements],
            "expires": [p.expires_at for p in placements],
            "at": at,
        },
    )
    reserved: set[uuid.UUID] = set()
    placed: set[uuid.UUID] = set()
    for r in rows:
        if r.conversation_id is None:
            reserved.add(r.agent_id)
        else:
            placed.add(r.conversation_id)
    return reserved, placed


# A resolution closes a task queued before it: one replayed after the conversation reopened (the task
# re-queued at the reopen, which is later than that resolution) leaves the reopened task alone.
_LOCK_OPEN_TASKS = statement(
    """
    SELECT t.state, t.agent_id, t.workload FROM router.tasks t
    JOIN unnest(:ids, :ats) AS u(id, at) ON t.conversation_id = u.id
    WHERE t.state <> 'closed' AND t.enqueued_at <= u.at
    FOR UPDATE OF t
    """,
    ids=UUIDS,
    ats=TIMES,
)
_CLOSE = statement(
    """
    UPDATE router.tasks t SET state = 'closed', closed_at = u.at, offer_expires_at = NULL
    FROM unnest(:ids, :ats) AS u(id, at)
    WHERE t.conversation_id = u.id AND t.state <> 'closed' AND t.enqueued_at <= u.at
    """,
    ids=UUIDS,
    ats=TIMES,
)
_HOLDING = (TaskState.ASSIGNED.value, TaskState.OFFERED.value)


async def close_tasks(
    session: AsyncSession, closing: Mapping[uuid.UUID, datetime]
) -> dict[uuid.UUID, list[int]]:
    """Close tasks not closed yet and queued before their resolution; returns, per agent, the capacity
    (per workload) the closed ones held: assigned or offered.

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
    return per_workload(
        (r.agent_id, r.workload) for r in rows if r.state in _HOLDING and r.agent_id is not None
    )


# --- offers ----------------------------------------------------------------------------------------------

_OFFER_ENDED = """
    WITH ended AS (
        SELECT conversation_id, agent_id, workload, offered_at FROM router.tasks
        WHERE state = 'offered' AND {which}
        ORDER BY conversation_id
        FOR UPDATE SKIP LOCKED
    )
    UPDATE router.tasks t
    SET state = 'queued', agent_id = NULL, offered_at = NULL, offer_expires_at = NULL,
        declined_by = array_append(t.declined_by, ended.agent_id)
    FROM ended WHERE t.conversation_id = ended.conversation_id
    RETURNING ended.agent_id, ended.workload AS held, ended.offered_at, {columns}
"""
_DECLINE = statement(
    _OFFER_ENDED.format(which="conversation_id = :id AND agent_id = :agent", columns=_QUEUED_COLUMNS),
    id=sa.Uuid(),
    agent=sa.Uuid(),
)
_EXPIRE = statement(
    _OFFER_ENDED.format(which="offer_expires_at <= :now", columns=_QUEUED_COLUMNS),
    now=sa.DateTime(timezone=True),
)
_WITHDRAW = statement(
    _OFFER_ENDED.format(which="agent_id = ANY(:agents)", columns=_QUEUED_COLUMNS), agents=UUIDS
)


@dataclass(frozen=True, slots=True)
class EndedOffer:
    """An offer that ended without acceptance: its task waits again, as ``waiting``."""

    agent_id: uuid.UUID
    workload: int
    offered_at: datetime
    waiting: Waiting


async def _end_offers(session: AsyncSession, stmt: sa.TextClause, params: dict[str, Any]) -> list[EndedOffer]:
    rows = await session.execute(stmt, params)
    return [EndedOffer(r.agent_id, r.held, r.offered_at, _waiting(r)) for r in rows]


async def decline_offer(
    session: AsyncSession, conversation_id: uuid.UUID, agent_id: uuid.UUID
) -> EndedOffer | None:
    ended = await _end_offers(session, _DECLINE, {"id": conversation_id, "agent": agent_id})
    return ended[0] if ended else None


async def expire_offers(session: AsyncSession, now: datetime) -> list[EndedOffer]:
    """End the offers past their deadline (skipping any another transaction holds)."""
    return await _end_offers(session, _EXPIRE, {"now": now})


async def withdraw_offers(session: AsyncSession, agent_ids: Sequence[uuid.UUID]) -> list[EndedOffer]:
    """End the offers made to ``agent_ids`` (who went offline)."""
    if not agent_ids:
        return []
    return await _end_offers(session, _WITHDRAW, {"agents": list(agent_ids)})


_ACCEPT = statement(
    """
    UPDATE router.tasks SET state = 'assigned', assigned_at = :at, offer_expires_at = NULL
    WHERE conversation_id = :id AND agent_id = :agent AND state = 'offered'
    RETURNING enqueued_at, offered_at, queue
    """,
    id=sa.Uuid(),
    agent=sa.Uuid(),
    at=sa.DateTime(timezone=True),
)


async def accept_offer(
    session: AsyncSession, conversation_id: uuid.UUID, agent_id: uuid.UUID, at: datetime
) -> tuple[datetime, datetime, str] | None:
    """Turn the agent's offer into an assignment (its capacity was held since the offer); returns the
    task's queue time, the offer's time and its queue, or None when the agent holds no such offer."""
    row = (await session.execute(_ACCEPT, {"id": conversation_id, "agent": agent_id, "at": at})).one_or_none()
    return None if row is None else (row.enqueued_at, row.offered_at, row.queue)


# --- presence ---------------------------------------------------------------------------------------------

_TOUCH = statement(
    """
    INSERT INTO router.agent_presence (agent_id, last_seen_at) VALUES (:agent, :at)
    ON CONFLICT (agent_id) DO UPDATE
    SET last_seen_at = greatest(router.agent_presence.last_seen_at, excluded.last_seen_at)
    """,
    agent=sa.Uuid(),
    at=sa.DateTime(timezone=True),
)


async def touch_presence(session: AsyncSession, agent_id: uuid.UUID, at: datetime) -> None:
    """Record a heartbeat; never touches (or waits for) the agent's row, which routing locks."""
    await session.execute(_TOUCH, {"agent": agent_id, "at": at})


# Agents present (not offline) not heard from (a heartbeat, or their last status change if later) for the
# timeout or longer: they go offline as of the instant the silence reached the timeout, whenever the
# sweeper notices, so the offline grace counts from that instant too (``_REQUEUE_ABANDONED``) and a
# silent agent's conversations are requeued exactly ``timeout + grace`` after they were last heard from.
# Both deadlines are reached at their instant (``<=``), as offers' and SLAs' are.
_SILENCE = statement(
    """
    WITH silent AS (
        SELECT a.id, a.status, greatest(p.last_seen_at, a.status_changed_at) + :timeout AS since
        FROM router.agents a
        LEFT JOIN router.agent_presence p ON p.agent_id = a.id
        WHERE a.status <> 'offline' AND greatest(p.last_seen_at, a.status_changed_at) + :timeout <= :now
        ORDER BY a.id
        FOR UPDATE OF a SKIP LOCKED
    )
    UPDATE router.agents a SET status = 'offline', status_changed_at = silent.since
    FROM silent WHERE a.id = silent.id
    RETURNING a.id, silent.status AS previous, silent.since
    """,
    timeout=sa.Interval(),
    now=sa.DateTime(timezone=True),
)


@dataclass(frozen=True, slots=True)
class Silenced:
    agent_id: uuid.UUID
    previous: str  # their status before
    since: datetime  # offline as of: last heard from + the timeout


async def silence_stale_agents(session: AsyncSession, silence: timedelta, now: datetime) -> list[Silenced]:
    """Set offline the agents not heard from for ``silence`` (the presence timeout) or longer at ``now``."""
    rows = await session.execute(_SILENCE, {"timeout": silence, "now": now})
    return [Silenced(r.id, r.previous, r.since) for r in rows]


# Assigned tasks of agents offline since the cutoff or before (the grace period over: reached at its
# instant, counted from when the agent went offline, ``_SILENCE``), or deleted (no grace),
# wait again with their original age; among ``:agents`` only, when given (a deletion). A task another
# transaction holds is skipped, and taken by the sweeper's next pass: a deleted agent counts as past the
# grace at once.
_REQUEUE_ABANDONED = statement(
    f"""
    WITH gone AS (
        SELECT t.conversation_id, t.agent_id, t.workload, a.deleted_at IS NOT NULL AS deleted
        FROM router.tasks t
        JOIN router.agents a ON a.id = t.agent_id
        WHERE t.state = 'assigned' AND a.status = 'offline'
          AND (a.status_changed_at <= :cutoff OR a.deleted_at IS NOT NULL)
          AND (CAST(:agents AS uuid[]) IS NULL OR t.agent_id = ANY(:agents))
        ORDER BY t.conversation_id
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE router.tasks t SET state = 'queued', agent_id = NULL, assigned_at = NULL, answered_at = NULL
    FROM gone WHERE t.conversation_id = gone.conversation_id
    RETURNING gone.agent_id, gone.workload AS held, gone.deleted, {_QUEUED_COLUMNS}
    """,  # noqa: S608 - our own fragments, no input
    cutoff=sa.DateTime(timezone=True),
    agents=UUIDS,
)


@dataclass(frozen=True, slots=True)
class Requeued:
    agent_id: uuid.UUID
    workload: int
    waiting: Waiting
    agent_deleted: bool = False  # taken back because its agent was deleted


async def requeue_abandoned(
    session: AsyncSession, cutoff: datetime, agent_ids: Sequence[uuid.UUID] | None = None
) -> list[Requeued]:
    """Take back the assignments of agents offline since before ``cutoff`` or deleted (of ``agent_ids``
    only, when given)."""
    rows = await session.execute(
        _REQUEUE_ABANDONED, {"cutoff": cutoff, "agents": None if agent_ids is None else list(agent_ids)}
    )
    return [Requeued(r.agent_id, r.held, _waiting(r), r.deleted) for r in rows]


# A transfer: the conversation's task, still assigned to the agent handing it on, waits again with its
# original age; given skills replace its requirement (any proficiency; escalation starts over) and a given
# queue its queue. The agent handing it on is skipped, as one who declined it.
_TAKE_BACK = statement(
    f"""
    WITH gone AS (
        SELECT conversation_id, agent_id, workload FROM router.tasks
        WHERE conversation_id = :id AND agent_id = :agent AND state = 'assigned'
        FOR UPDATE
    )
    UPDATE router.tasks t
    SET state = 'queued', agent_id = NULL, assigned_at = NULL, answered_at = NULL,
        required_skills = coalesce(:skills, t.required_skills),
        min_levels = CASE WHEN :skills IS NULL THEN t.min_levels
            ELSE array_fill(1::smallint, ARRAY[cardinality(:skills)]) END,
        base_skills = coalesce(:skills, t.base_skills),
        base_levels = CASE WHEN :skills IS NULL THEN t.base_levels
            ELSE array_fill(1::smallint, ARRAY[cardinality(:skills)]) END,
        optional_skills = CASE WHEN :skills IS NULL THEN t.optional_skills ELSE '{{}}' END,
        escalation_step = CASE WHEN :skills IS NULL THEN t.escalation_step ELSE 0 END,
        queue = coalesce(:queue, t.queue),
        declined_by = array_append(t.declined_by, gone.agent_id)
    FROM gone WHERE t.conversation_id = gone.conversation_id
    RETURNING gone.agent_id, gone.workload AS held, {_QUEUED_COLUMNS}
    """,  # noqa: S608 - our own fragments, no input
    id=sa.Uuid(),
    agent=sa.Uuid(),
    skills=TEXTS,
    queue=sa.Text(),
)


async def take_back(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    agent_id: uuid.UUID,
    skills: Sequence[str] | None,
    queue: str | None,
) -> Requeued | None:
    """The conversation back in the queue from ``agent_id`` (None when it is no longer theirs)."""
    params = {
        "id": conversation_id,
        "agent": agent_id,
        "skills": sorted(set(skills)) if skills is not None else None,
        "queue": queue,
    }
    row = (await session.execute(_TAKE_BACK, params)).one_or_none()
    return None if row is None else Requeued(row.agent_id, row.held, _waiting(row))


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


# The queued task and how many tasks of its queue are served before it, in ``policy.queue_order``;
# counted on the partial queue index.
_QUEUED_WITH_AHEAD = statement(
    """
    SELECT t.conversation_id, t.required_skills, t.priority, t.channel, t.enqueued_at, t.queue,
           (SELECT count(*) FROM router.tasks o
            WHERE o.state = 'queued' AND o.queue = t.queue
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
    queue: str
    ahead: int  # tasks of the same queue served before this one


async def queued_with_position(session: AsyncSession, conversation_id: uuid.UUID) -> QueuedTask | None:
    """The conversation's task if it is waiting, with how many of its queue are ahead of it."""
    row = (await session.execute(_QUEUED_WITH_AHEAD, {"id": conversation_id})).one_or_none()
    if row is None:
        return None
    return QueuedTask(
        row.conversation_id,
        row.required_skills,
        row.priority,
        row.channel,
        row.enqueued_at,
        row.queue,
        row.ahead,
    )


# The slots serving each of the queues ``:queues``: the online agents able to take at least one of the
# conversations waiting in it (``estimate.Slots``). The distinct requirements waiting in those queues come
# first (few, however long the queues), then each online agent is matched against them once per queue.
_NEED_MET = _QUALIFIES.format(skills="n.required_skills", levels="n.min_levels", lang="n.language")
# ``queued`` (the tasks waiting in ``:queues``) is a CTE of its own so that a statement needing more of
# those tasks (the announcement's positions, ``hours.repository``) scans them once.
QUEUED_IN_SQL = """
        SELECT t.conversation_id, t.queue, t.priority, t.enqueued_at, t.required_skills, t.min_levels,
               t.language
        FROM router.tasks t
        WHERE t.state = 'queued' AND t.queue = ANY(:queues)
"""
QUEUE_NEEDS_SQL = """
        SELECT DISTINCT t.queue, t.required_skills, t.min_levels, t.language FROM queued t
"""
QUEUE_SLOTS_SQL = f"""
        SELECT q.queue, sum(a.capacity) AS capacity, sum(greatest(a.capacity - a.active_count, 0)) AS free
        FROM (SELECT DISTINCT queue FROM needs) AS q
        JOIN router.agents a ON a.status = 'online' AND a.deleted_at IS NULL AND EXISTS (
            SELECT 1 FROM needs n
            WHERE n.queue = q.queue AND {_NEED_MET}
        )
        GROUP BY q.queue
"""  # noqa: S608 - our own fragment, no input
_QUEUE_SLOTS = statement(
    f"WITH queued AS ({QUEUED_IN_SQL}), needs AS ({QUEUE_NEEDS_SQL}), slots AS ({QUEUE_SLOTS_SQL})"  # noqa: S608
    " SELECT * FROM slots",
    queues=TEXTS,
)


def slots_of(rows: Iterable[tuple[str, int, int]]) -> dict[str, Slots]:
    """``QUEUE_SLOTS_SQL``'s rows (queue, capacity, free) by queue."""
    return {queue: Slots(int(capacity), int(free)) for queue, capacity, free in rows}


async def queue_slots(session: AsyncSession, queues: Sequence[str]) -> dict[str, Slots]:
    """The slots serving each of ``queues`` that some online agent can serve (the others are left out)."""
    if not queues:
        return {}
    rows = await session.execute(_QUEUE_SLOTS, {"queues": sorted(set(queues))})
    return slots_of((r.queue, r.capacity, r.free) for r in rows)


# A conversation arriving now in :queue: how many already wait there, and the slots that would serve it.
# The slots are those of the requirements waiting in the queue; an empty queue has none to match agents
# against, so it counts the agents a conversation without requirement would reach.
_ARRIVAL = statement(
    f"""
    WITH queued AS ({QUEUED_IN_SQL}), needs AS ({QUEUE_NEEDS_SQL}
        UNION ALL
        SELECT :queue, '{{}}'::text[], '{{}}'::smallint[], NULL::text
        WHERE NOT EXISTS (SELECT 1 FROM queued)
    ), slots AS ({QUEUE_SLOTS_SQL})
    SELECT (SELECT count(*) FROM queued) AS waiting, s.capacity, s.free
    FROM (SELECT 1) AS one LEFT JOIN slots s ON true
    """,  # noqa: S608 - our own fragments, no input
    queues=TEXTS,
    queue=sa.Text(),
)


async def arrival(session: AsyncSession, queue: str) -> tuple[int, Slots | None]:
    """How many conversations wait in ``queue``, and the slots serving it (None: no online agent can)."""
    row = (await session.execute(_ARRIVAL, {"queues": [queue], "queue": queue})).one()
    slots = Slots(int(row.capacity), int(row.free)) if row.capacity is not None else None
    return int(row.waiting), slots


# The most recently closed assignments (tasks closed without one, resolved while waiting, are not handle
# times), newest first on the partial index ``tasks_closed``; their mean duration per queue and overall
# (the empty grouping set). A clock difference between services never makes one negative.
RECENT_HANDLE_SQL = """
        SELECT queue,
               extract(epoch FROM greatest(closed_at - assigned_at, interval '0')) AS seconds
        FROM router.tasks
        WHERE state = 'closed' AND assigned_at IS NOT NULL
        ORDER BY closed_at DESC
        LIMIT :sample
"""
HANDLE_TIMES_SQL = """
    SELECT grouping(queue) = 1 AS overall, queue, count(*) AS n, avg(seconds)::float8 AS mean_seconds
    FROM recent
    GROUP BY GROUPING SETS ((queue), ())
"""
_HANDLE_TIMES = statement(f"WITH recent AS ({RECENT_HANDLE_SQL}) {HANDLE_TIMES_SQL}", sample=sa.Integer())


async def handle_times(session: AsyncSession, sample: int) -> HandleTimes:
    """Mean handle times over the ``sample`` most recently closed assignments."""
    rows = await session.execute(_HANDLE_TIMES, {"sample": sample})
    return handle_times_of((r.overall, r.queue, r.n, r.mean_seconds) for r in rows)


def handle_times_of(rows: Iterable[tuple[bool, str | None, int, float | None]]) -> HandleTimes:
    """``HANDLE_TIMES_SQL``'s rows (overall, queue, count, mean seconds) as handle times."""
    by_queue: dict[str, Sample] = {}
    overall: Sample | None = None
    for is_overall, queue, n, mean_seconds in rows:
        if n == 0 or mean_seconds is None:
            continue  # the overall row of an empty history
        measured = Sample(int(n), float(mean_seconds))
        if is_overall:
            overall = measured
        elif queue is not None:
            by_queue[queue] = measured
    return HandleTimes(by_queue, overall)


# --- SLA and supervisors -----------------------------------------------------------------------------

_BREACH = statement(
    """
    WITH late AS (
        SELECT conversation_id FROM router.tasks
        WHERE state = 'queued' AND sla_target_s IS NOT NULL AND sla_breached_at IS NULL
          AND enqueued_at + make_interval(secs => sla_target_s) <= :now
        ORDER BY conversation_id
        FOR UPDATE SKIP LOCKED
    )
    UPDATE router.tasks t SET sla_breached_at = :now, priority = least(t.priority + 1, 10)
    FROM late WHERE t.conversation_id = late.conversation_id
    RETURNING t.conversation_id, t.queue, t.sla_target_s, t.enqueued_at, t.priority
    """,
    now=sa.DateTime(timezone=True),
)


@dataclass(frozen=True, slots=True)
class Breach:
    conversation_id: uuid.UUID
    queue: str
    sla_target_s: int
    enqueued_at: datetime
    priority: int


async def mark_sla_breaches(session: AsyncSession, now: datetime) -> list[Breach]:
    """Waiting tasks past their SLA target, not marked yet: marked, their priority raised by one."""
    rows = await session.execute(_BREACH, {"now": now})
    return [Breach(r.conversation_id, r.queue, r.sla_target_s, r.enqueued_at, r.priority) for r in rows]


_LOCK_OPEN_TASK = statement(
    """
    SELECT state, agent_id, workload, enqueued_at, assigned_at, queue FROM router.tasks
    WHERE conversation_id = :id AND state <> 'closed'
    FOR UPDATE
    """,
    id=sa.Uuid(),
)
_FORCE_ASSIGN = statement(
    """
    UPDATE router.tasks SET state = 'assigned', agent_id = :agent, assigned_at = :at, offered_at = NULL,
        offer_expires_at = NULL, answered_at = NULL
    WHERE conversation_id = :id
    """,
    id=sa.Uuid(),
    agent=sa.Uuid(),
    at=sa.DateTime(timezone=True),
)


@dataclass(frozen=True, slots=True)
class OpenTask:
    state: str
    agent_id: uuid.UUID | None
    workload: int
    enqueued_at: datetime
    assigned_at: datetime | None
    queue: str


async def lock_open_task(session: AsyncSession, conversation_id: uuid.UUID) -> OpenTask | None:
    row = (await session.execute(_LOCK_OPEN_TASK, {"id": conversation_id})).one_or_none()
    return (
        None
        if row is None
        else OpenTask(row.state, row.agent_id, row.workload, row.enqueued_at, row.assigned_at, row.queue)
    )


async def force_assign(
    session: AsyncSession, conversation_id: uuid.UUID, agent_id: uuid.UUID, workload: int, at: datetime
) -> None:
    """Assign a locked open task to the agent, taking one unit of their capacity unconditionally."""
    await session.execute(_FORCE_TAKE, {**_unit_params(per_workload([(agent_id, workload)])), "ats": [at]})
    await session.execute(_FORCE_ASSIGN, {"id": conversation_id, "agent": agent_id, "at": at})


# --- answers ------------------------------------------------------------------------------------------

# The first reply of the agent the conversation is assigned to (a reply by anyone else, or to a task
# since requeued, answers nothing).
_ANSWERED = statement(
    """
    UPDATE router.tasks t SET answered_at = u.at
    FROM unnest(:ids, :agents, :ats) AS u(id, agent_id, at)
    WHERE t.conversation_id = u.id AND t.agent_id = u.agent_id AND t.state = 'assigned'
      AND t.answered_at IS NULL
    """,
    ids=UUIDS,
    agents=UUIDS,
    ats=TIMES,
)


async def mark_answered(
    session: AsyncSession, replies: Sequence[tuple[uuid.UUID, uuid.UUID, datetime]]
) -> None:
    """Record (conversation, agent, sent at) replies as the assigned agents' answers."""
    if replies:
        await session.execute(
            _ANSWERED,
            {
                "ids": [r[0] for r in replies],
                "agents": [r[1] for r in replies],
                "ats": [r[2] for r in replies],
            },
        )


# Assigned since before the cutoff and not answered: back to the queue (original age kept), never to be
# offered to that agent again.
_REQUEUE_UNANSWERED = statement(
    f"""
    WITH silent AS (
        SELECT conversation_id, agent_id, workload FROM router.tasks
        WHERE state = 'assigned' AND answered_at IS NULL AND assigned_at <= :cutoff
        ORDER BY conversation_id
        FOR UPDATE SKIP LOCKED
    )
    UPDATE router.tasks t SET state = 'queued', agent_id = NULL, assigned_at = NULL,
        declined_by = array_append(t.declined_by, silent.agent_id)
    FROM silent WHERE t.conversation_id = silent.conversation_id
    RETURNING silent.agent_id, silent.workload AS held, {_QUEUED_COLUMNS}
    """,  # noqa: S608 - our own fragments, no input
    cutoff=sa.DateTime(timezone=True),
)


async def requeue_unanswered(session: AsyncSession, cutoff: datetime) -> list[Requeued]:
    rows = await session.execute(_REQUEUE_UNANSWERED, {"cutoff": cutoff})
    return [Requeued(r.agent_id, r.held, _waiting(r)) for r in rows]


# --- escalation ---------------------------------------------------------------------------------------

# Waiting tasks due for their queue's next escalation step.
_DUE_ESCALATIONS = statement(
    """
    SELECT t.conversation_id, t.queue, t.base_skills, t.base_levels, t.optional_skills, t.escalation_step,
           t.enqueued_at, q.escalation
    FROM router.tasks t JOIN router.queues q ON q.name = t.queue
    WHERE t.state = 'queued' AND jsonb_array_length(q.escalation) > t.escalation_step
      AND t.enqueued_at + make_interval(secs => (q.escalation -> t.escalation_step ->> 'after_s')::int)
          <= :now
    ORDER BY t.conversation_id
    FOR UPDATE OF t SKIP LOCKED
    """,
    now=sa.DateTime(timezone=True),
)


@dataclass(frozen=True, slots=True)
class DueEscalation:
    conversation_id: uuid.UUID
    queue: str
    base: dict[str, int]
    optional: list[str]
    step: int
    enqueued_at: datetime
    steps: list[dict[str, Any]]


async def lock_due_escalations(session: AsyncSession, now: datetime) -> list[DueEscalation]:
    rows = await session.execute(_DUE_ESCALATIONS, {"now": now})
    return [
        DueEscalation(
            r.conversation_id,
            r.queue,
            dict(zip(r.base_skills, r.base_levels, strict=True)),
            list(r.optional_skills),
            r.escalation_step,
            r.enqueued_at,
            list(r.escalation),
        )
        for r in rows
    ]


_ESCALATE = statement(
    f"""
    UPDATE router.tasks t
    SET required_skills = string_to_array(u.skills, ','),
        min_levels = string_to_array(u.levels, ',')::smallint[], escalation_step = u.step
    FROM unnest(:ids, :skills, :levels, :steps) AS u(id, skills, levels, step)
    WHERE t.conversation_id = u.id AND t.state = 'queued'
    RETURNING {_QUEUED_COLUMNS}
    """,  # noqa: S608 - our own fragments, no input
    ids=UUIDS,
    skills=TEXTS,
    levels=TEXTS,
    steps=INTS,
)


async def escalate(
    session: AsyncSession, changes: Sequence[tuple[uuid.UUID, Mapping[str, int], int]]
) -> list[Waiting]:
    """Set locked waiting tasks' requirement (conversation, skill -> level, steps taken); returns them."""
    if not changes:
        return []
    skills = [sorted(c[1].items()) for c in changes]
    rows = await session.execute(
        _ESCALATE,
        {
            "ids": [c[0] for c in changes],
            "skills": [_text(s for s, _ in k) for k in skills],
            "levels": [_text(m for _, m in k) for k in skills],
            "steps": [c[2] for c in changes],
        },
    )
    return [_waiting(r) for r in rows]


_ESCALATIONS = statement("SELECT name, escalation FROM router.queues WHERE escalation <> '[]'::jsonb")


async def queue_escalations(session: AsyncSession) -> dict[str, list[dict[str, Any]]]:
    """The queues with escalation steps, and their steps."""
    return {r.name: list(r.escalation) for r in await session.execute(_ESCALATIONS)}
