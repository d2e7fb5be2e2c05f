"""Reading the state the invariants are checked on: PostgreSQL (every service's schema, read directly, not
through the APIs under test) and the broker (DLQ ends, conversation.assigned events)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from switchboard_common import topics
from switchboard_devstack.faults.invariants import AgentLoad, Snapshot
from switchboard_metrics import models as metrics_models

T = TypeVar("T")
OUTBOXES = ("ingest", "conversation", "router")

_STORED = text(
    """
    SELECT external_id, count(*) AS n, min(id::text) AS id FROM conversation.messages
    WHERE channel = 'api' AND direction = 'inbound' AND external_id = ANY(:ids) GROUP BY external_id
    """
)
_TOTALS = text(
    """
    SELECT (SELECT count(*) FROM conversation.conversations) AS conversations,
           (SELECT count(*) FROM conversation.conversations WHERE status = 'resolved') AS resolved,
           -- customers' messages: the thread also holds automated replies (acknowledgements, surveys)
           (SELECT count(*) FROM conversation.messages WHERE direction = 'inbound') AS messages,
           (SELECT count(*) FROM router.tasks WHERE assigned_at IS NOT NULL) AS tasks_assigned_ever,
           (SELECT count(*) FROM conversation.conversations c
             WHERE NOT EXISTS (SELECT 1 FROM router.tasks t WHERE t.conversation_id = c.id)) AS missing_tasks,
           (SELECT count(*) FROM router.tasks t WHERE t.state = 'queued' AND EXISTS (
               SELECT 1 FROM router.agents a WHERE a.status = 'online' AND a.skills @> t.required_skills
               AND a.active_count < a.capacity)) AS queued_with_capacity,
           (SELECT count(*) FROM router.tasks t JOIN conversation.conversations c ON c.id = t.conversation_id
             WHERE t.assigned_at IS NOT NULL
               AND c.assigned_agent_id IS DISTINCT FROM t.agent_id) AS unrecorded,
           (SELECT count(*) FROM router.tasks t JOIN conversation.conversations c ON c.id = t.conversation_id
             WHERE t.state = 'assigned' AND c.status = 'resolved') AS unreleased,
           (SELECT count(*) FROM ingest.outbox) AS outbox_ingest,
           (SELECT count(*) FROM conversation.outbox) AS outbox_conversation,
           (SELECT count(*) FROM router.outbox) AS outbox_router,
           (SELECT count(opened_at) FROM metrics.conversation_facts) AS facts_opened_at,
           (SELECT count(assigned_at) FROM metrics.conversation_facts) AS facts_assigned_at,
           (SELECT count(resolved_at) FROM metrics.conversation_facts) AS facts_resolved_at,
           (SELECT count(*) FROM metrics.conversation_facts f JOIN router.tasks t
              ON t.conversation_id = f.conversation_id
             WHERE t.assigned_at IS NOT NULL
               AND t.agent_id IS DISTINCT FROM f.agent_id) AS facts_agent_mismatch
    """
)
_AGENTS = text(
    """
    SELECT a.id::text, a.capacity, a.active_count,
           (SELECT count(*) FROM router.tasks t
             WHERE t.agent_id = a.id AND t.state = 'assigned') AS open_tasks
    FROM router.agents a ORDER BY a.id
    """
)
_COUNTS = text("SELECT event_type, count FROM metrics.event_counts")
# Conversations reopen (a customer writing soon after a resolution) where the schema has reopen_count.
_HAS_REOPENS = text(
    """
    SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'conversation'
                   AND table_name = 'conversations' AND column_name = 'reopen_count')
    """
)
_REOPENS = text("SELECT id::text, reopen_count FROM conversation.conversations WHERE reopen_count > 0")
# every reopened conversation had been resolved
_EVER_RESOLVED = text(
    "SELECT count(*) FROM conversation.conversations WHERE status = 'resolved' OR reopen_count > 0"
)
_FIRST_PERIOD_AGENT_MISMATCH = text(
    """
    SELECT count(*) FROM metrics.conversation_facts f
    JOIN router.tasks t ON t.conversation_id = f.conversation_id
    JOIN conversation.conversations c ON c.id = f.conversation_id
    WHERE t.assigned_at IS NOT NULL AND c.reopen_count = 0 AND t.agent_id IS DISTINCT FROM f.agent_id
    """
)
_CONVERSATION_IDS = text("SELECT id::text FROM conversation.conversations")
_ASSIGNED_SAMPLE = text(
    "SELECT id::text FROM conversation.conversations"
    " WHERE status IN ('assigned', 'waiting_on_agent', 'waiting_on_customer') ORDER BY random() LIMIT :n"
)
# Between scenarios, once quiescent: every row the next scenario's invariants are computed on. Receipts
# stay (message ids never repeat across scenarios); so do metrics' partition offsets where they exist (they
# track the broker's log, which is not reset). metrics' tables are named if present (the database may be at
# an older revision of the metrics schema than the models). CASCADE empties the tables that refer to these
# (surveys, merges).
_RESET = """
    TRUNCATE conversation.messages, conversation.conversations, conversation.customer_identities,
             conversation.customers, router.tasks, router.agent_presence, router.agents, metrics.event_counts
             {metrics_facts}
    CASCADE
    """
# Every metrics table, from its models: a table a later revision adds is emptied too.
_METRICS_FACTS = tuple(t.name for t in metrics_models.Base.metadata.sorted_tables if t.name != "event_counts")
_EXISTING = text(
    "SELECT t FROM unnest(CAST(:names AS text[])) AS t WHERE to_regclass('metrics.' || t) IS NOT NULL"
)


def engine_for(database_url: str) -> AsyncEngine:
    # No pool: PostgreSQL is killed under it, and every probe must see a fresh connection.
    return create_async_engine(database_url, poolclass=NullPool)


async def db_snapshot(engine: AsyncEngine, acked_external_ids: Sequence[str]) -> Snapshot:
    async with engine.connect() as conn:
        stored = (await conn.execute(_STORED, {"ids": list(acked_external_ids)})).all()
        totals = (await conn.execute(_TOTALS)).mappings().one()
        agents = (await conn.execute(_AGENTS)).all()
        counts = (await conn.execute(_COUNTS)).all()
        conversation_ids = (await conn.execute(_CONVERSATION_IDS)).scalars().all()
        reopens: dict[str, int] = {}
        if await conn.scalar(_HAS_REOPENS):
            reopens = {cid: int(n) for cid, n in await conn.execute(_REOPENS)}
            ever_resolved = int(await conn.scalar(_EVER_RESOLVED) or 0)
            # facts keep a conversation's first agent; a reopened one may have another agent now
            agent_mismatch = int(await conn.scalar(_FIRST_PERIOD_AGENT_MISMATCH) or 0)
        else:
            agent_mismatch = int(totals["facts_agent_mismatch"])
            ever_resolved = int(totals["resolved"])
    return Snapshot(
        stored_rows={row.external_id: int(row.n) for row in stored},
        stored_ids={row.external_id: row.id for row in stored},
        conversations=int(totals["conversations"]),
        resolved=int(totals["resolved"]),
        messages=int(totals["messages"]),
        conversation_ids=frozenset(conversation_ids),
        tasks_assigned_ever=int(totals["tasks_assigned_ever"]),
        missing_tasks=int(totals["missing_tasks"]),
        queued_with_capacity=int(totals["queued_with_capacity"]),
        unrecorded=int(totals["unrecorded"]),
        unreleased=int(totals["unreleased"]),
        agents=[AgentLoad(a[0], int(a[1]), int(a[2]), int(a[3])) for a in agents],
        outboxes={name: int(totals[f"outbox_{name}"]) for name in OUTBOXES},
        event_counts={t: int(n) for t, n in counts},
        facts={c: int(totals[f"facts_{c}"]) for c in ("opened_at", "assigned_at", "resolved_at")},
        facts_agent_mismatch=agent_mismatch,
        reopens=reopens,
        ever_resolved=ever_resolved,
    )


async def assigned_sample(engine: AsyncEngine, n: int) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(_ASSIGNED_SAMPLE, {"n": n})).scalars().all())


async def reset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        facts = (await conn.execute(_EXISTING, {"names": list(_METRICS_FACTS)})).scalars().all()
        await conn.execute(text(_RESET.format(metrics_facts="".join(f", metrics.{t}" for t in facts))))


def dlq_topics(prefix: str) -> list[str]:
    return [f"{prefix}{topics.dlq(t)}" for t in topics.ALL]


async def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        client_id="switchboard-faults-probe",
    )
    await consumer.start()
    return consumer


async def _partitions(consumer: AIOKafkaConsumer, names: Sequence[str]) -> list[TopicPartition]:
    await consumer.topics()
    return [TopicPartition(n, p) for n in names for p in sorted(consumer.partitions_for_topic(n) or ())]


async def end_offsets(bootstrap: str, names: Sequence[str]) -> dict[str, int]:
    """Per topic, the sum of its partitions' end offsets (records ever written, for a DLQ)."""
    consumer = await _consumer(bootstrap)
    try:
        partitions = await _partitions(consumer, names)
        ends = await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()
    out = dict.fromkeys(names, 0)
    for tp, end in ends.items():
        out[tp.topic] += int(end)
    return out


async def assigned_events(bootstrap: str, topic: str, limit_s: float = 60) -> dict[str, set[tuple[str, str]]]:
    """Every conversation.assigned event in ``topic``: conversation id -> {(event id, agent id)}."""
    consumer = await _consumer(bootstrap)
    found: dict[str, set[tuple[str, str]]] = {}
    try:
        partitions = await _partitions(consumer, [topic])
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + limit_s
        pending = {tp for tp, end in ends.items() if end > 0}
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {limit_s:.0f} s")
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    _collect(record.value, found)
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return found


def _collect(value: bytes | None, found: dict[str, set[tuple[str, str]]]) -> None:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        event: dict[str, Any] = json.loads(value or b"")
        if event.get("type") == "conversation.assigned":
            payload = event["payload"]
            found.setdefault(str(payload["conversation_id"]), set()).add(
                (str(event["event_id"]), str(payload["agent_id"]))
            )


async def with_retries(make: Callable[[], Awaitable[T]], attempts: int = 5, delay: float = 1.0) -> T:
    """``await make()``, retried on any error (a probe during recovery may meet a dropped connection)."""
    for attempt in range(attempts):
        try:
            return await make()
        except Exception:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
