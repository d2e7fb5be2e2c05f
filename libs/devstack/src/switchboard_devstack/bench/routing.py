"""`make bench` routing mode: the cost of one routing decision on a large router database.

Issue 9 sets the target: one decision (candidate fetch + policy) within 1 ms at 5,000 online agents and
10,000 waiting conversations. This runs the router's own repository and policy code, in this process,
against a real (embedded) PostgreSQL holding that many rows, and times each decision:

* ``opened_1`` / ``opened_50``: conversations arrive (``insert_with_candidates``: queued and their best
  candidates, with sticky customers, read in one statement; + ``policy.match``), as ``service.on_opened``
  does before it writes the outcome;
* ``placed_1``: ``opened_1`` and the outcome written: the chosen agent locked, its capacity taken and the
  conversation assigned (``service._place``: ``reserve_and_place``), since candidates are read unlocked;
* ``freed``: an agent frees up (``agents_and_queue([agent])``: the agent and the head of the queue it
  could take, one statement; + ``policy.match``), as ``service.assign_queued`` does after a resolution;
* ``sweep``: the sweeper's whole pass, ``service.assign_queued(session, outbox, None)``, which also
  reserves capacity, marks tasks and writes the outbox;
* ``sweep_changed``: the sweeper's pass with its memory (``service.SweepMemory``) when ``CHANGED_AGENTS``
  agents with room changed since its last pass (the others as that pass saw them: the seed's).

Every repetition runs in a transaction that is rolled back, so each one sees the same data. SQL time is
the time spent in the driver (SQLAlchemy's cursor events, round trip included); policy time is
``policy.match``; the rest is Python around them (result rows to candidates, SQLAlchemy). Once measured,
each scenario runs once more under ``auto_explain`` (ANALYZE, BUFFERS), so the plans reported are the ones
the server executed for these prepared statements (a generic plan shows ``$n`` where a custom one shows
values).

Experiments (``--variant``) re-measure with a statement text replaced in this process or an index added
to the benchmark's own database: proposals to compare, never a change to the router.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from switchboard_common.db.outbox import Outbox
from switchboard_common.db.sql import INTS, TEXTS, TIMES, UUIDS, statement
from switchboard_common.settings import CommonSettings
from switchboard_devstack.bench.stats import summary_ms
from switchboard_devstack.ports import free_port
from switchboard_devstack.stack import create_database

TARGET_MS = 1.0

SKILLS = (
    "billing", "refunds", "shipping", "returns", "technical", "account", "payments", "sales",
    "onboarding", "invoices", "subscriptions", "mobile", "web", "api", "fraud", "security",
    "hardware", "network", "compliance", "vip",
)  # fmt: skip
# Some skills are far more common than others, among agents and among conversations alike.
SKILL_WEIGHTS = tuple(1 / (i + 1) ** 0.8 for i in range(len(SKILLS)))
LANGUAGES = ("en", "es", "fr", "de", "pt", "it")
LANGUAGE_WEIGHTS = (0.60, 0.15, 0.10, 0.08, 0.04, 0.03)
# Per workload, in policy.WORKLOADS order (chat, messaging, email, voice): how work arrives, the channels
# that carry it, and the capacities agents get.
WORKLOAD_WEIGHTS = (0.30, 0.45, 0.20, 0.05)
WORKLOAD_CHANNELS = (
    ("webchat",),
    ("whatsapp", "sms", "messenger", "instagram", "api"),
    ("email",),
    ("voice",),
)
WORKLOAD_CAPACITIES = ((2, 3, 4), (3, 5, 8), (5, 8, 10), (0, 1, 1))
TEAMS = 50
OFFER_TEAMS = 5  # the first teams want offers (the others auto-accept)
LEVEL_WEIGHTS = (0.40, 0.25, 0.20, 0.10, 0.05)  # a conversation's minimum proficiency, 1-5
SCENARIOS = ("opened_1", "placed_1", "opened_50", "freed", "sweep", "sweep_changed")
CHANGED_AGENTS = 10  # agents with room whose state changed between two of the sweeper's passes


# --- the seed (pure) ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeedAgent:
    id: uuid.UUID
    proficiency: dict[str, int]  # skill -> level 1-5
    languages: tuple[str, ...]
    teams: tuple[str, ...]
    capacity: int
    capacities: tuple[int, int, int, int]
    loads: tuple[int, int, int, int]
    last_assigned_at: datetime | None

    @property
    def active(self) -> int:
        return sum(self.loads)

    @property
    def has_room(self) -> bool:
        return self.active < self.capacity


@dataclass(frozen=True, slots=True)
class SeedTask:
    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    skills: tuple[tuple[str, int], ...]  # (skill, minimum level), sorted by skill
    language: str | None
    workload: int  # 1-based
    channel: str
    priority: int
    enqueued_at: datetime
    state: str = "queued"
    agent_id: uuid.UUID | None = None
    assigned_at: datetime | None = None
    closed_at: datetime | None = None
    declined_by: tuple[uuid.UUID, ...] = ()


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _sample(rng: random.Random, items: Sequence[str], weights: Sequence[float], k: int) -> list[str]:
    """``k`` distinct items, drawn by weight."""
    chosen: list[str] = []
    pool, w = list(items), list(weights)
    for _ in range(min(k, len(pool))):
        i = rng.choices(range(len(pool)), w)[0]
        chosen.append(pool.pop(i))
        w.pop(i)
    return chosen


def seed_agents(rng: random.Random, n: int, now: datetime) -> list[SeedAgent]:
    """``n`` online agents: 2-5 skills at levels 1-5, 1-3 languages, one team, a capacity per workload and
    a total below their sum, and a load from idle to full."""
    agents = []
    for _ in range(n):
        skills = _sample(rng, SKILLS, SKILL_WEIGHTS, rng.randint(2, 5))
        languages = _sample(rng, LANGUAGES, LANGUAGE_WEIGHTS, rng.choices((1, 2, 3), (0.6, 0.3, 0.1))[0])
        capacities = tuple(rng.choice(options) for options in WORKLOAD_CAPACITIES)
        capacity = min(sum(capacities), rng.randint(4, 12))
        utilisation = rng.random()
        loads = [min(c, round(c * utilisation * rng.uniform(0.5, 1.5))) for c in capacities]
        while sum(loads) > capacity:  # the total binds before the workloads do
            loads[max(range(4), key=lambda w: loads[w])] -= 1
        idle = None if rng.random() < 0.05 else now - timedelta(seconds=rng.uniform(0, 7200))
        agents.append(
            SeedAgent(
                _uuid(rng),
                {s: rng.randint(1, 5) for s in skills},
                tuple(languages),
                (f"team-{rng.randrange(TEAMS):02d}",),
                capacity,
                (capacities[0], capacities[1], capacities[2], capacities[3]),
                (loads[0], loads[1], loads[2], loads[3]),
                idle,
            )
        )
    return agents


def seed_task(
    rng: random.Random,
    now: datetime,
    *,
    customer_id: uuid.UUID | None = None,
    declinable: Sequence[SeedAgent] = (),
    max_age_s: float = 3600.0,
) -> SeedTask:
    """One waiting conversation: 1-3 required skills with minimum levels, a language for some, a workload
    and its channel, mostly normal priority, queued within ``max_age_s``; a few were declined by an agent
    of ``declinable``."""
    skills = _sample(rng, SKILLS, SKILL_WEIGHTS, rng.choices((1, 2, 3), (0.6, 0.3, 0.1))[0])
    levels = {s: rng.choices((1, 2, 3, 4, 5), LEVEL_WEIGHTS)[0] for s in skills}
    language = None if rng.random() < 0.6 else rng.choices(LANGUAGES, LANGUAGE_WEIGHTS)[0]
    workload = rng.choices((1, 2, 3, 4), WORKLOAD_WEIGHTS)[0]
    declined = (rng.choice(declinable).id,) if declinable and rng.random() < 0.03 else ()
    return SeedTask(
        _uuid(rng),
        customer_id or _uuid(rng),
        tuple(sorted(levels.items())),
        language,
        workload,
        rng.choice(WORKLOAD_CHANNELS[workload - 1]),
        rng.choices((0, 1, 2), (0.85, 0.10, 0.05))[0],
        now - timedelta(seconds=rng.uniform(0, max_age_s)),
        declined_by=declined,
    )


def seed_queue(rng: random.Random, n: int, now: datetime, agents: Sequence[SeedAgent]) -> list[SeedTask]:
    return [seed_task(rng, now, declinable=agents) for _ in range(n)]


def seed_assigned(rng: random.Random, agents: Sequence[SeedAgent], now: datetime) -> list[SeedTask]:
    """The conversations the agents' loads stand for, one assigned task per unit, on one of the agent's
    skills (their customers are the returning ones of sticky routing)."""
    tasks = []
    for agent in agents:
        for w, load in enumerate(agent.loads, start=1):
            for _ in range(load):
                assigned = now - timedelta(seconds=rng.uniform(0, 3600))
                tasks.append(
                    SeedTask(
                        _uuid(rng),
                        _uuid(rng),
                        ((rng.choice(sorted(agent.proficiency)), 1),),
                        None,
                        w,
                        rng.choice(WORKLOAD_CHANNELS[w - 1]),
                        0,
                        assigned - timedelta(seconds=rng.uniform(0, 300)),
                        state="assigned",
                        agent_id=agent.id,
                        assigned_at=assigned,
                    )
                )
    return tasks


def seed_closed(rng: random.Random, n: int, agents: Sequence[SeedAgent], now: datetime) -> list[SeedTask]:
    """History: conversations handled and closed over the last week."""
    tasks = []
    for _ in range(n):
        agent = rng.choice(agents)
        base = seed_task(rng, now, max_age_s=7 * 86400)
        assigned = base.enqueued_at + timedelta(seconds=rng.uniform(1, 600))
        tasks.append(
            SeedTask(
                base.conversation_id,
                base.customer_id,
                base.skills,
                base.language,
                base.workload,
                base.channel,
                base.priority,
                base.enqueued_at,
                state="closed",
                agent_id=agent.id,
                assigned_at=assigned,
                closed_at=assigned + timedelta(seconds=rng.uniform(60, 3600)),
            )
        )
    return tasks


def agent_columns(agents: Sequence[SeedAgent]) -> dict[str, list[Any]]:
    """The agents as parallel arrays for one ``unnest`` INSERT (ragged arrays go as comma-joined text)."""
    return {
        "ids": [a.id for a in agents],
        "skills": [",".join(sorted(a.proficiency)) for a in agents],
        "proficiency": [json.dumps(a.proficiency, sort_keys=True) for a in agents],
        "languages": [",".join(a.languages) for a in agents],
        "teams": [",".join(a.teams) for a in agents],
        "capacity": [a.capacity for a in agents],
        **{f"c{w + 1}": [a.capacities[w] for a in agents] for w in range(4)},
        **{f"l{w + 1}": [a.loads[w] for a in agents] for w in range(4)},
        "active": [a.active for a in agents],
        "last": [a.last_assigned_at for a in agents],
    }


def task_columns(tasks: Sequence[SeedTask]) -> dict[str, list[Any]]:
    return {
        "ids": [t.conversation_id for t in tasks],
        "customers": [t.customer_id for t in tasks],
        "states": [t.state for t in tasks],
        "skills": [",".join(s for s, _ in t.skills) for t in tasks],
        "levels": [",".join(str(m) for _, m in t.skills) for t in tasks],
        "langs": [t.language for t in tasks],
        "workloads": [t.workload for t in tasks],
        "priorities": [t.priority for t in tasks],
        "channels": [t.channel for t in tasks],
        "enqueued": [t.enqueued_at for t in tasks],
        "agents": [t.agent_id for t in tasks],
        "assigned": [t.assigned_at for t in tasks],
        "closed": [t.closed_at for t in tasks],
        "declined": [",".join(str(a) for a in t.declined_by) for t in tasks],
    }


_INSERT_AGENTS = statement(
    """
    INSERT INTO router.agents (id, name, email, skills, proficiency, languages, teams, capacity, capacities,
                               status, active_count, loads, last_assigned_at)
    SELECT u.id, 'bench ' || u.id, u.id || '@bench.example.com', string_to_array(u.skills, ','),
           u.proficiency::jsonb, string_to_array(u.languages, ','), string_to_array(u.teams, ','),
           u.capacity, ARRAY[u.c1, u.c2, u.c3, u.c4], 'online', u.active, ARRAY[u.l1, u.l2, u.l3, u.l4],
           u.last
    FROM unnest(:ids, :skills, :proficiency, :languages, :teams, :capacity, :c1, :c2, :c3, :c4, :l1, :l2,
                :l3, :l4, :active, :last)
         AS u(id, skills, proficiency, languages, teams, capacity, c1, c2, c3, c4, l1, l2, l3, l4, active,
              last)
    """,
    ids=UUIDS,
    skills=TEXTS,
    proficiency=TEXTS,
    languages=TEXTS,
    teams=TEXTS,
    capacity=INTS,
    c1=INTS,
    c2=INTS,
    c3=INTS,
    c4=INTS,
    l1=INTS,
    l2=INTS,
    l3=INTS,
    l4=INTS,
    active=INTS,
    last=TIMES,
)
_INSERT_TASKS = statement(
    """
    INSERT INTO router.tasks (conversation_id, customer_id, state, required_skills, min_levels, language,
                              workload, priority, channel, enqueued_at, agent_id, assigned_at, closed_at,
                              declined_by)
    SELECT u.id, u.customer, u.state, string_to_array(u.skills, ','),
           string_to_array(u.levels, ',')::smallint[], u.lang, u.workload, u.priority, u.channel, u.enqueued,
           u.agent, u.assigned, u.closed, string_to_array(u.declined, ',')::uuid[]
    FROM unnest(:ids, :customers, :states, :skills, :levels, :langs, :workloads, :priorities, :channels,
                :enqueued, :agents, :assigned, :closed, :declined)
         AS u(id, customer, state, skills, levels, lang, workload, priority, channel, enqueued, agent,
              assigned, closed, declined)
    """,
    ids=UUIDS,
    customers=UUIDS,
    states=TEXTS,
    skills=TEXTS,
    levels=TEXTS,
    langs=TEXTS,
    workloads=INTS,
    priorities=INTS,
    channels=TEXTS,
    enqueued=TIMES,
    agents=UUIDS,
    assigned=TIMES,
    closed=TIMES,
    declined=TEXTS,
)
_INSERT_TEAMS = statement(
    """
    INSERT INTO router.teams (name, auto_accept, offer_timeout_s)
    SELECT format('team-%s', lpad(i::text, 2, '0')), i >= :offer_teams, 30 FROM generate_series(0, :n - 1) i
    """,
    offer_teams=sa.Integer(),
    n=sa.Integer(),
)


def _chunks(columns: dict[str, list[Any]], size: int) -> Iterator[dict[str, list[Any]]]:
    n = len(next(iter(columns.values()), []))
    for start in range(0, n, size):
        yield {k: v[start : start + size] for k, v in columns.items()}


@dataclass
class Seed:
    agents: list[SeedAgent]
    queued: list[SeedTask]
    assigned: list[SeedTask]
    closed: list[SeedTask]


def make_seed(rng: random.Random, agents: int, waiting: int, closed: int, now: datetime) -> Seed:
    people = seed_agents(rng, agents, now)
    return Seed(
        people,
        seed_queue(rng, waiting, now, people),
        seed_assigned(rng, people, now),
        seed_closed(rng, closed, people, now) if people else [],
    )


async def load_seed(engine: AsyncEngine, seed: Seed) -> None:
    async with engine.begin() as conn:
        await conn.execute(_INSERT_TEAMS, {"offer_teams": OFFER_TEAMS, "n": TEAMS})
        for chunk in _chunks(agent_columns(seed.agents), 5000):
            await conn.execute(_INSERT_AGENTS, chunk)
        for tasks in (seed.queued, seed.assigned, seed.closed):
            for chunk in _chunks(task_columns(tasks), 5000):
                await conn.execute(_INSERT_TASKS, chunk)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM ANALYZE router.agents, router.tasks, router.teams"))


# --- measuring -------------------------------------------------------------------------------------------


@dataclass
class Rep:
    wall: float
    cpu: float
    sql: float = 0.0
    policy: float = 0.0
    statements: dict[str, float] = field(default_factory=dict)
    tasks: int = 0
    candidates: int = 0
    matched: int = 0


class SqlTimer:
    """Times every statement the engine runs (driver round trip included), by the repository name of the
    statement, and keeps the text each name was last sent as (to find its plan)."""

    def __init__(self, engine: AsyncEngine, names: dict[int, str]) -> None:
        self.names = names
        self.durations: dict[str, float] = {}
        self.texts: dict[str, str] = {}
        self._started: list[float] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._before)
        event.listen(engine.sync_engine, "after_cursor_execute", self._after)

    def name_of(self, context: Any, text: str) -> str:
        compiled = getattr(context, "compiled", None)
        clause = getattr(compiled, "statement", None)
        if clause is not None and id(clause) in self.names:
            return self.names[id(clause)]
        return " ".join(text.split())[:48]

    def _before(self, conn: Any, cursor: Any, text: str, params: Any, context: Any, many: bool) -> None:
        self._started.append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, text: str, params: Any, context: Any, many: bool) -> None:
        elapsed = time.perf_counter() - self._started.pop()
        name = self.name_of(context, text)
        self.durations[name] = self.durations.get(name, 0.0) + elapsed
        self.texts[name] = text

    def take(self) -> dict[str, float]:
        taken, self.durations = self.durations, {}
        return taken


def statement_names(*modules: Any, extra: dict[str, sa.TextClause] | None = None) -> dict[int, str]:
    names = {
        id(value): name.lstrip("_").lower()
        for module in modules
        for name, value in vars(module).items()
        if isinstance(value, sa.TextClause)
    }
    names.update({id(clause): name for name, clause in (extra or {}).items()})
    return names


@contextlib.contextmanager
def timed_match(policy: Any, into: list[float]) -> Iterator[None]:
    """``policy.match`` timed, for code that calls it through the module (the service)."""
    original = policy.match

    def match(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - start)

    policy.match = match
    try:
        yield
    finally:
        policy.match = original


@contextlib.asynccontextmanager
async def rolled_back(conn: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """A session in a transaction that is always rolled back."""
    transaction = await conn.begin()
    session = AsyncSession(bind=conn, expire_on_commit=False, autoflush=False)
    try:
        # The driver begins lazily: this takes BEGIN's round trip, which is the transaction's, not the
        # decision's.
        await session.execute(sa.text("SELECT 1"))
        yield session
    finally:
        await session.close()
        await transaction.rollback()


# --- the report (pure) -------------------------------------------------------------------------------------


def summarize(reps: Sequence[Rep], server_cpu_s: float | None) -> dict[str, Any]:
    """Per scenario: wall, SQL, policy and other time (ms percentiles), client CPU, per-statement time."""
    if not reps:
        return {"repetitions": 0}
    names = sorted({n for r in reps for n in r.statements})
    n = len(reps)
    return {
        "repetitions": n,
        "wall_ms": summary_ms([r.wall for r in reps]),
        "sql_ms": summary_ms([r.sql for r in reps]),
        "policy_ms": summary_ms([r.policy for r in reps]),
        "other_ms": summary_ms([max(0.0, r.wall - r.sql - r.policy) for r in reps]),
        "client_cpu_ms": summary_ms([r.cpu for r in reps]),
        "server_cpu_ms_mean": None if server_cpu_s is None else server_cpu_s / n * 1000,
        "statements_ms": {s: summary_ms([r.statements.get(s, 0.0) for r in reps]) for s in names},
        "tasks_mean": sum(r.tasks for r in reps) / n,
        "candidates_mean": sum(r.candidates for r in reps) / n,
        "matched_mean": sum(r.matched for r in reps) / n,
    }


def slowest_statement(scenario: dict[str, Any]) -> str | None:
    """The statement with the highest median time in a scenario."""
    statements: dict[str, dict[str, float]] = scenario.get("statements_ms") or {}
    if not statements:
        return None
    return max(statements, key=lambda s: statements[s].get("p50", 0.0))


def _f(value: Any, fmt: str = "9.2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-".rjust(int(fmt.split(".")[0]))
    return format(value, fmt)


def _clip(line: str, width: int = 160) -> str:
    """Plans quote the parameters (thousands of ids for a sweep): the report shows their start."""
    return line if len(line) <= width else f"{line[: width - 24]} ... ({len(line)} chars)"


COLUMNS = ("p50", "p90", "p99", "max", "mean")
DESCRIPTIONS = {
    "opened_1": "1 conversation arrives: insert_with_candidates + match",
    "placed_1": "1 conversation arrives and is placed: opened_1 + reserve_and_place",
    "opened_50": "50 conversations arrive: insert_with_candidates + match",
    "freed": "an agent frees up: agents_and_queue([agent]) + match",
    "sweep": "the sweeper's pass: service.assign_queued(session, outbox, None), whole",
    "sweep_changed": f"the sweeper's pass with its memory, {CHANGED_AGENTS} agents changed since the last",
}


def render(doc: dict[str, Any], *, plans: bool = True) -> str:
    config, postgres = doc["config"], doc.get("postgres", {})
    lines = [
        "",
        f"routing decision benchmark: {config['agents']} online agents, {config['waiting']} waiting, "
        f"{config['assigned']} assigned, {config['closed']} closed tasks"
        + (f"; variants {', '.join(config['variant'])}" if config.get("variant") else ""),
        f"  PostgreSQL {postgres.get('version', '?')}, jit {postgres.get('jit', '?')}"
        f"; target {TARGET_MS:g} ms per decision (candidate fetch + policy)",
    ]
    for name, s in doc["scenarios"].items():
        if not s.get("repetitions"):
            continue
        lines += [
            "",
            f"{name}: {DESCRIPTIONS.get(name, '')}",
            f"  {s['repetitions']} repetitions; per repetition: {s['tasks_mean']:.1f} tasks, "
            f"{s['candidates_mean']:.1f} candidates, {s['matched_mean']:.1f} matched",
            "  " + "ms".ljust(26) + "".join(c.rjust(9) for c in COLUMNS),
        ]
        rows = [
            ("wall", s["wall_ms"]),
            ("  SQL", s["sql_ms"]),
            ("  policy.match", s["policy_ms"]),
            ("  other Python", s["other_ms"]),
            ("client CPU", s["client_cpu_ms"]),
        ]
        rows += [(f"  {stmt}", row) for stmt, row in s["statements_ms"].items()]
        for label, row in rows:
            lines.append("  " + label.ljust(26) + "".join(_f(row.get(c)) for c in COLUMNS))
        if s.get("server_cpu_ms_mean") is not None:
            lines.append(
                "  " + "PostgreSQL backend CPU".ljust(26) + _f(None) * 4 + _f(s["server_cpu_ms_mean"])
            )
        verdict = "within" if s["wall_ms"]["p99"] <= TARGET_MS else "over"
        lines.append(f"  p99 wall {s['wall_ms']['p99']:.2f} ms: {verdict} the {TARGET_MS:g} ms target")
        plan = (s.get("plans") or {}).get(s.get("slowest") or "")
        if plans and plan:
            lines += [f"  plan of the slowest statement, {s['slowest']} (auto_explain, ANALYZE, BUFFERS):"]
            lines += ["    " + _clip(line) for line in plan.splitlines() if line.strip()]
    return "\n".join(lines)


Step = Callable[[AsyncSession, Any, list[float]], Any]


# --- scenarios ---------------------------------------------------------------------------------------------


class Bench:
    def __init__(
        self, args: argparse.Namespace, engine: AsyncEngine, seed: Seed, settings: CommonSettings
    ) -> None:
        from switchboard_router.models import outbox_table
        from switchboard_router.routing import policy, repository, service

        self.args = args
        self.engine = engine
        self.seed = seed
        self.policy = policy
        self.repository = repository
        self.service = service
        self.outbox = Outbox(outbox_table, settings)
        self.rng = random.Random(args.seed + 1)
        self.timer = SqlTimer(
            engine, statement_names(repository, extra={"outbox.add_many": self.outbox._insert})
        )
        self.with_room = [a for a in seed.agents if a.has_room]
        self.returning = [t.customer_id for t in seed.assigned]
        self.notices: list[str] = []
        self.seen: dict[uuid.UUID, tuple[object, ...]] | None = None  # the sweeper's memory of a full pass

    # One decision each: (tasks, candidates, matched), SQL and policy timed by the caller's wrappers.

    async def opened(
        self, session: AsyncSession, new: list[Any], policy_time: list[float], *, place: bool = False
    ) -> tuple[int, int, int]:
        repository, policy = self.repository, self.policy
        now = datetime.now(UTC)
        customers = {x.waiting.conversation_id: x.customer_id for x in new}
        # As service.on_opened does with a sticky window: queued and candidates read in one statement.
        tasks, locked = await repository.insert_with_candidates(
            session,
            new,
            sticky_customers=sorted(set(customers.values())),
            sticky_since=now - timedelta(days=1),
        )
        if locked.sticky:
            tasks = [
                t
                if (c := customers[t.conversation_id]) not in locked.sticky
                else policy.Waiting(
                    t.conversation_id, t.requirement, t.priority, t.enqueued_at, locked.sticky[c]
                )
                for t in tasks
            ]
        if place:
            with timed_match(policy, policy_time):
                placed, _, _ = await self.service._place(session, tasks, locked, {}, now)
            return len(tasks), len(locked.candidates), len(placed)
        start = time.perf_counter()
        matches = policy.match(tasks, locked.candidates, now)
        policy_time.append(time.perf_counter() - start)
        return len(tasks), len(locked.candidates), len(matches)

    async def placed(
        self, session: AsyncSession, new: list[Any], policy_time: list[float]
    ) -> tuple[int, int, int]:
        return await self.opened(session, new, policy_time, place=True)

    def new_tasks(self, n: int) -> list[Any]:
        """Conversations arriving now (built before the clock starts: not part of the decision)."""
        repository, policy = self.repository, self.policy
        now = datetime.now(UTC)
        new = []
        for _ in range(n):
            # Returning customers are the ones sticky routing looks up.
            customer = self.rng.choice(self.returning) if self.returning and self.rng.random() < 0.2 else None
            t = seed_task(self.rng, now, customer_id=customer, max_age_s=0.01)
            waiting = policy.Waiting(
                t.conversation_id,
                policy.Requirement(t.skills, policy.WORKLOADS[t.workload - 1], t.language),
                t.priority,
                t.enqueued_at,
            )
            new.append(repository.NewTask(waiting, t.customer_id, t.channel))
        return new

    async def freed(
        self, session: AsyncSession, agent: uuid.UUID, policy_time: list[float]
    ) -> tuple[int, int, int]:
        repository, policy = self.repository, self.policy
        locked, tasks = await repository.agents_and_queue(session, [agent])
        start = time.perf_counter()
        matches = policy.match(tasks, locked.candidates, datetime.now(UTC))
        policy_time.append(time.perf_counter() - start)
        return len(tasks), len(locked.candidates), len(matches)

    async def sweep(self, session: AsyncSession, _: None, policy_time: list[float]) -> tuple[int, int, int]:
        with timed_match(self.policy, policy_time):
            placed = await self.service.assign_queued(session, self.outbox, None)
        return 0, 0, placed

    async def sweep_changed(
        self, session: AsyncSession, _: None, policy_time: list[float]
    ) -> tuple[int, int, int]:
        if self.seen is None:  # the first (warm-up) repetition: what a full pass remembers
            full = self.service.SweepMemory()
            full.changed((await self.repository.agents_with_capacity(session, None)).candidates)
            self.seen = full.seen
        seen = dict(self.seen)
        for agent_id in self.rng.sample(sorted(seen), min(CHANGED_AGENTS, len(seen))):
            del seen[agent_id]  # changed since: served as new
        memory = self.service.SweepMemory(full_every=sys.maxsize, seen=seen, passes=1)
        with timed_match(self.policy, policy_time):
            placed = await self.service.assign_queued(session, self.outbox, None, memory)
        return 0, CHANGED_AGENTS, placed

    def step(self, name: str) -> tuple[Callable[[], Any], Step]:
        """What a repetition needs, made before the clock starts, and the decision itself."""
        if name == "opened_1":
            return lambda: self.new_tasks(1), self.opened
        if name == "placed_1":
            return lambda: self.new_tasks(1), self.placed
        if name == "opened_50":
            return lambda: self.new_tasks(50), self.opened
        if name == "freed":
            return lambda: self.rng.choice(self.with_room).id, self.freed
        if name == "sweep_changed":
            return lambda: None, self.sweep_changed
        return lambda: None, self.sweep

    async def measure(self, conn: AsyncConnection, name: str, repeat: int, warmup: int) -> dict[str, Any]:
        make_input, step = self.step(name)
        backend_pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
        await conn.rollback()
        # A pass rewrites many rows (thousands for a full one); keep the heap as it was.
        vacuum_each = name in ("sweep", "sweep_changed")
        reps: list[Rep] = []
        server = 0.0
        for i in range(warmup + repeat):
            if vacuum_each and i:
                await self.vacuum()
            policy_time: list[float] = []
            given = make_input()
            async with rolled_back(conn) as session:
                self.timer.take()
                cpu_before, server_before = time.process_time(), _process_cpu(backend_pid)
                start = time.perf_counter()
                tasks, candidates, matched = await step(session, given, policy_time)
                wall = time.perf_counter() - start
                cpu = time.process_time() - cpu_before
                server_after = _process_cpu(backend_pid)
                statements = self.timer.take()
            if i >= warmup:
                if server_before is not None and server_after is not None:
                    server += server_after - server_before
                reps.append(
                    Rep(
                        wall,
                        cpu,
                        sum(statements.values()),
                        sum(policy_time),
                        statements,
                        tasks,
                        candidates,
                        matched,
                    )
                )
        await self.vacuum()
        summary = summarize(reps, server if _process_cpu(backend_pid) is not None else None)
        summary["plans"] = await self.plans(conn, make_input, step)
        summary["slowest"] = slowest_statement(summary)
        return summary

    async def plans(self, conn: AsyncConnection, make_input: Callable[[], Any], step: Step) -> dict[str, str]:
        """One more repetition under auto_explain: the executed plan of each statement, by name."""
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        notices: list[str] = []

        def listener(_conn: Any, message: Any) -> None:
            notices.append(str(getattr(message, "message", message)))

        driver.add_log_listener(listener)
        try:
            async with rolled_back(conn) as session:
                for setting in (
                    "LOAD 'auto_explain'",
                    "SET LOCAL auto_explain.log_min_duration = 0",
                    "SET LOCAL auto_explain.log_analyze = on",
                    "SET LOCAL auto_explain.log_buffers = on",
                    "SET LOCAL auto_explain.log_timing = on",
                    "SET LOCAL auto_explain.log_level = notice",
                ):
                    await session.execute(sa.text(setting))
                given = make_input()
                self.timer.take()
                self.timer.texts.clear()
                await step(session, given, [])
                await asyncio.sleep(0)  # let the driver hand over the last notices
            texts = dict(self.timer.texts)
            self.timer.take()
        finally:
            driver.remove_log_listener(listener)
        return plans_by_statement(notices, texts)

    async def vacuum(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("VACUUM router.agents, router.tasks"))

    async def run(self) -> dict[str, Any]:
        scenarios: dict[str, Any] = {}
        async with self.engine.connect() as conn:
            for name in self.args.scenarios:
                repeat = self.args.sweep_repeat if name == "sweep" else self.args.repeat
                warmup = self.args.sweep_warmup if name == "sweep" else 10
                print(f"  {name}: {warmup} warm-up + {repeat} measured ...", file=sys.stderr, flush=True)
                scenarios[name] = await self.measure(conn, name, repeat, warmup)
            version = await conn.scalar(sa.text("SHOW server_version"))
            jit = await conn.scalar(sa.text("SHOW jit"))
        return {"scenarios": scenarios, "postgres": {"version": version, "jit": jit}}


def plans_by_statement(notices: Sequence[str], texts: dict[str, str]) -> dict[str, str]:
    """auto_explain's notices, attributed to statements by the query text each quotes."""
    plans: dict[str, str] = {}
    # Longest first: a short statement (``SELECT 1``) can be part of a longer one's text.
    by_length = sorted(texts.items(), key=lambda item: -len(item[1].strip()))
    for notice in notices:
        for name, text in by_length:
            at = notice.find(text.strip())
            if at >= 0:
                duration = notice.split("plan:", 1)[0].strip()
                plans[name] = f"({duration})\n" + notice[at + len(text.strip()) :].strip("\n")
                break
    return plans


def _process_cpu(pid: int | None) -> float | None:
    """utime + stime of a process, in seconds (None when /proc does not show it)."""
    if pid is None:
        return None
    from switchboard_devstack.bench.procstat import CLK_TCK, read_stat

    stat = read_stat(pid)
    return None if stat is None else stat.own_ticks / CLK_TCK


# --- experiments -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A proposed change, measured in this process and database only."""

    summary: str
    ddl: tuple[str, ...] = ()  # run on the benchmark's database after the seed, before ANALYZE
    # (repository constant, fragment of its SQL, replacement): the statement is rebuilt with the same
    # typed parameters and replaces the constant in this process.
    patches: tuple[tuple[str, str, str], ...] = ()


VARIANTS: dict[str, Variant] = {
    # lock_queued orders by (priority DESC, enqueued_at, conversation_id); tasks_queue is (priority,
    # enqueued_at), so each agent's LATERAL reads the whole top-priority group backwards and sorts it, and
    # in a group (priority 0 is most of the queue) it reads every task before the first row comes out.
    "queue-index": Variant(
        "tasks_queue as (priority DESC, enqueued_at, conversation_id) WHERE state = 'queued'",
        ddl=(
            "CREATE INDEX tasks_queue_order ON router.tasks (priority DESC, enqueued_at, conversation_id) "
            "WHERE state = 'queued'",
            "DROP INDEX router.tasks_queue",
        ),
    ),
}


def patched(clause: sa.TextClause, fragment: str, replacement: str) -> sa.TextClause:
    """``clause`` with ``fragment`` of its SQL replaced, its parameters' types kept."""
    if fragment not in clause.text:
        raise SystemExit(f"the statement no longer contains {fragment!r}: the variant is out of date")
    params = clause._bindparams.values()  # the typed parameters, carried over
    return sa.text(clause.text.replace(fragment, replacement)).bindparams(*params)


async def apply_variants(engine: AsyncEngine, names: Sequence[str]) -> None:
    from switchboard_router.routing import repository

    for name in names:
        variant = VARIANTS.get(name)
        if variant is None:
            raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        for constant, fragment, replacement in variant.patches:
            setattr(repository, constant, patched(getattr(repository, constant), fragment, replacement))
        if variant.ddl:
            async with engine.begin() as conn:
                for ddl in variant.ddl:
                    await conn.execute(sa.text(ddl))
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("ANALYZE router.tasks, router.agents"))


# --- the command -------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=int, default=5000, help="online agents (default 5000)")
    parser.add_argument("--waiting", type=int, default=10_000, help="waiting conversations (default 10000)")
    parser.add_argument(
        "--closed", type=int, default=0, help="closed tasks of history in the table too (default 0)"
    )
    parser.add_argument(
        "--repeat", type=int, default=300, help="measured decisions per scenario (default 300)"
    )
    parser.add_argument(
        "--sweep-repeat", type=int, default=5, help="measured sweeper passes (default 5: each may take long)"
    )
    parser.add_argument("--sweep-warmup", type=int, default=1, help="sweeper passes not measured (default 1)")
    parser.add_argument(
        "--scenarios",
        type=lambda text: [s for s in text.split(",") if s],
        default=list(SCENARIOS),
        help=f"comma-separated, of {','.join(SCENARIOS)} (default all)",
    )
    parser.add_argument("--seed", type=int, default=9, help="random seed of the data (default 9)")
    parser.add_argument(
        "--variant",
        type=lambda text: [v for v in text.split(",") if v],
        default=[],
        help="measure proposed changes (comma-separated; statement text or index, in this process and the "
        "benchmark's database only): " + "; ".join(f"{name}: {v.summary}" for name, v in VARIANTS.items()),
    )
    parser.add_argument("--no-plans", action="store_true", help="do not print the plans")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(".devstack/bench-routing"),
        help="PostgreSQL data (emptied first)",
    )


async def _bench(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    engine = create_async_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        rng = random.Random(args.seed)
        now = datetime.now(UTC)
        started = time.perf_counter()
        seed = make_seed(rng, args.agents, args.waiting, args.closed, now)
        await load_seed(engine, seed)
        print(f"  seeded in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        if args.variant:
            await apply_variants(engine, args.variant)
        settings = CommonSettings(database_url=database_url)
        doc = await Bench(args, engine, seed, settings).run()
    finally:
        await engine.dispose()
    doc["config"] = {
        "agents": args.agents,
        "waiting": args.waiting,
        "assigned": len(seed.assigned),
        "closed": args.closed,
        "with_room": sum(1 for a in seed.agents if a.has_room),
        "repeat": args.repeat,
        "sweep_repeat": args.sweep_repeat,
        "seed": args.seed,
        "variant": args.variant,
        "cpus": os.cpu_count(),
        "router_sources": router_sources(),
        "at": now.isoformat(),
    }
    return doc


def router_sources() -> dict[str, str]:
    """A digest of the router code measured (it changes under a benchmark's feet in a shared tree)."""
    import hashlib

    from switchboard_router.routing import policy, repository, service

    return {
        Path(m.__file__).name: hashlib.sha256(Path(m.__file__).read_bytes()).hexdigest()[:12]
        for m in (policy, repository, service)
        if m.__file__
    }


def run(args: argparse.Namespace) -> int:
    from switchboard_common.db.migrations import upgrade
    from switchboard_devstack.postgres import EmbeddedPostgres

    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    postgres: EmbeddedPostgres | None = None
    server_url = os.environ.get("SWITCHBOARD_DATABASE_URL", "")
    if not server_url:
        workdir: Path = args.workdir.resolve()
        shutil.rmtree(workdir / "pgdata", ignore_errors=True)
        postgres = EmbeddedPostgres(workdir / "pgdata", free_port())
        print("Starting PostgreSQL ...", file=sys.stderr, flush=True)
        postgres.start()
        server_url = postgres.url
    try:
        # A database of its own, even on an external server: the seed is large and disposable.
        database_url = asyncio.run(create_database(server_url, "switchboard_bench_routing"))
        upgrade("switchboard_router", "router", database_url)
        asyncio.run(_truncate(database_url))
        print(f"Seeding {args.agents} agents and {args.waiting} waiting conversations ...", file=sys.stderr)
        doc = asyncio.run(_bench(args, database_url))
    finally:
        if postgres is not None:
            postgres.stop()
    print(render(doc, plans=not args.no_plans))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
        print(f"figures written to {args.json}")
    return 0


async def _truncate(database_url: str) -> None:
    engine = create_async_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("TRUNCATE router.tasks, router.agents, router.teams, router.outbox CASCADE")
            )
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m switchboard_devstack.bench.routing",
        description="the cost of one routing decision at scale (issue 9's 1 ms target)",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
