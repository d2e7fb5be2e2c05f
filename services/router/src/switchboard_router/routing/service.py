"""The assignment engine: what happens when conversations open, resolve or reopen, when agents free up,
and on the sweeper's tick. Each entry point handles a whole batch in a fixed number of statements; the
choice of agent is the pure policy in ``routing.policy``."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.db.outbox import Outbox, OutboxEvent
from switchboard_common.events import (
    ConversationAssigned,
    ConversationOpened,
    ConversationQueued,
    ConversationReopened,
    ConversationResolved,
    EventEnvelope,
    utcnow,
)
from switchboard_router.routing import policy, repository
from switchboard_router.routing.policy import Candidate, Match, Waiting

PRODUCER = "router"


def _routing_event(
    payload: ConversationQueued | ConversationAssigned, cause: EventEnvelope | None
) -> OutboxEvent:
    envelope = EventEnvelope.wrap(payload, producer=PRODUCER, causation=cause)
    return (topics.ROUTING_EVENTS, str(payload.conversation_id), envelope)


async def _assign(
    session: AsyncSession,
    tasks: Sequence[Waiting],
    candidates: Sequence[Candidate],
    now: datetime,
) -> list[Match]:
    """Match locked tasks to locked candidates, reserve the capacity and record the assignments."""
    matches = policy.match(tasks, candidates, now)
    if not matches:
        return []
    units = Counter(m.agent_id for m in matches)
    held = await repository.reserve(session, units, now)
    if held != set(units):
        # The candidates are locked by this transaction, so their capacity cannot have changed.
        raise RuntimeError(f"capacity reservation failed for locked agents {set(units) - held}")
    assigned = await repository.mark_assigned(session, matches, now)
    if len(assigned) != len(matches):
        raise RuntimeError("a locked task was no longer queued")
    return matches


def _assigned_events(
    matches: Sequence[Match], tasks: Sequence[Waiting], causes: dict[uuid.UUID, EventEnvelope], now: datetime
) -> list[OutboxEvent]:
    enqueued = {t.conversation_id: t.enqueued_at for t in tasks}
    return [
        _routing_event(
            ConversationAssigned(
                conversation_id=m.conversation_id,
                agent_id=m.agent_id,
                queued_at=enqueued[m.conversation_id],
                assigned_at=now,
            ),
            causes.get(m.conversation_id),
        )
        for m in matches
    ]


Queueable = TypeVar("Queueable", ConversationOpened, ConversationReopened)
QueueStatement = Callable[[AsyncSession, Sequence[Waiting], Sequence[str]], Awaitable[set[uuid.UUID]]]


async def _queue_and_route(
    session: AsyncSession,
    outbox: Outbox,
    events: Sequence[tuple[EventEnvelope, Queueable]],
    enqueued_at: Callable[[Queueable], datetime],
    queue: QueueStatement,
    now: datetime,
) -> None:
    """Queue the conversations of ``events`` (the first event of each; ``queue`` returns those it really
    queued, the others being redeliveries or stale) and route them."""
    first: dict[uuid.UUID, tuple[EventEnvelope, Queueable]] = {}
    for envelope, event in events:
        first.setdefault(event.conversation_id, (envelope, event))
    tasks = [
        Waiting(e.conversation_id, frozenset(e.required_skills), e.priority, enqueued_at(e))
        for _, e in first.values()
    ]
    queued = await queue(session, tasks, [e.channel.value for _, e in first.values()])
    tasks = [t for t in tasks if t.conversation_id in queued]
    await _route_new(session, outbox, tasks, {cid: envelope for cid, (envelope, _) in first.items()}, now)


async def on_opened(
    session: AsyncSession, outbox: Outbox, opened: Sequence[tuple[EventEnvelope, ConversationOpened]]
) -> None:
    """Queue newly opened conversations and assign those an eligible agent can take right away."""
    now = utcnow()
    # A conversation waits from the moment it opened (the customer's first message reached ingest), not
    # from when the router got to it: queue order and reported waits are the customer's.
    await _queue_and_route(
        session, outbox, opened, lambda e: min(e.opened_at, now), repository.insert_tasks, now
    )


async def on_reopened(
    session: AsyncSession, outbox: Outbox, reopened: Sequence[tuple[EventEnvelope, ConversationReopened]]
) -> None:
    """Queue reopened conversations again and assign those an eligible agent can take right away, as for
    opened ones. Any eligible agent, not necessarily the previous one (sticky routing is not built)."""
    # Queued from the reopen exactly, not the router's clock: the conversation service recognises the
    # assignment that follows the reopen by this time (conversation.assigned's queued_at), and the next
    # resolution of the task is compared with it.
    await _queue_and_route(session, outbox, reopened, lambda e: e.reopened_at, repository.requeue, utcnow())


async def _route_new(
    session: AsyncSession,
    outbox: Outbox,
    tasks: Sequence[Waiting],
    causes: dict[uuid.UUID, EventEnvelope],
    now: datetime,
) -> None:
    """Assign the tasks this transaction just queued to the best agents free now; announce the rest as
    waiting."""
    if not tasks:
        return
    # The tasks are invisible to (or look closed to) other transactions until commit: only the agents
    # need locking.
    candidates = await repository.lock_best_candidates(
        session, [t.required_skills for t in tasks], len(tasks)
    )
    matches = await _assign(session, tasks, candidates, now)
    # conversation.queued announces a conversation left waiting; one assigned at once needs no such event
    # (conversation.assigned carries its queued_at), which saves a record per message on the hot path.
    placed = {m.conversation_id for m in matches}
    queued = [
        _routing_event(
            ConversationQueued(
                conversation_id=t.conversation_id,
                required_skills=sorted(t.required_skills),
                priority=t.priority,
                queued_at=t.enqueued_at,
            ),
            causes[t.conversation_id],
        )
        for t in tasks
        if t.conversation_id not in placed
    ]
    await outbox.add_many(session, queued + _assigned_events(matches, tasks, causes, now))


async def assign_queued(
    session: AsyncSession, outbox: Outbox, agent_ids: Sequence[uuid.UUID] | None = None
) -> int:
    """Serve the queue head with the free capacity of ``agent_ids`` (every online agent when None);
    returns how many conversations were assigned."""
    candidates = await repository.lock_agents_with_capacity(session, agent_ids)
    free = sum(c.capacity - c.active for c in candidates)
    tasks = await repository.lock_queued(session, candidates, free)
    now = utcnow()
    matches = await _assign(session, tasks, candidates, now)
    await outbox.add_many(session, _assigned_events(matches, tasks, {}, now))
    return len(matches)


async def on_resolved(
    session: AsyncSession, outbox: Outbox, resolved: Sequence[ConversationResolved]
) -> None:
    """Close the resolved conversations' tasks, free their agents' capacity, and refill those agents."""
    freed = await repository.close_tasks(session, {e.conversation_id: e.resolved_at for e in resolved})
    if freed:
        await repository.release(session, freed)
        await assign_queued(session, outbox, list(freed))


async def sweep(session: AsyncSession, outbox: Outbox) -> int:
    """Place waiting conversations with any free capacity. Covers the races in which neither side sees the
    other (a conversation queued while, in another transaction, the only eligible agent comes online) and
    agents skipped because another transaction held them."""
    if not await repository.any_queued(session):
        return 0  # the common case: do not lock agents that consumers are routing to
    return await assign_queued(session, outbox)
