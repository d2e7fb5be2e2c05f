"""The assignment engine: what happens when conversations open, resolve or reopen, when agents free up,
answer offers or fall silent, and on the sweeper's tick. Each entry point handles a whole batch in a fixed
number of statements; the choice of agent is the pure policy in ``routing.policy``."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.outbox import Outbox, OutboxEvent
from switchboard_common.errors import Conflict, NotFound
from switchboard_common.events import (
    AgentStatus,
    AgentStatusChanged,
    ConversationAssigned,
    ConversationEscalated,
    ConversationOfferDeclined,
    ConversationOffered,
    ConversationOfferTimedOut,
    ConversationOpened,
    ConversationQueued,
    ConversationReopened,
    ConversationRequeued,
    ConversationResolved,
    ConversationSlaBreached,
    ConversationTransferRequested,
    EventEnvelope,
    MessageOutbound,
    Payload,
    RequeueReason,
    utcnow,
)
from switchboard_router.hours import service as hours_service
from switchboard_router.models import Agent, TaskState
from switchboard_router.routing import escalation, policy, repository
from switchboard_router.routing.escalation import Step
from switchboard_router.routing.policy import Candidate, Match, Requirement, Waiting, workload_of
from switchboard_router.routing.repository import Candidates, EndedOffer, NewTask, Placement
from switchboard_router.rules.book import RuleBook
from switchboard_router.rules.evaluate import Decision

PRODUCER = "router"


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """What routing needs of the settings."""

    sticky_window: timedelta = timedelta(days=1)  # zero: no sticky routing
    presence_timeout: timedelta = timedelta(seconds=90)  # zero: presence only through the API
    offline_grace: timedelta = timedelta(seconds=120)
    rules: RuleBook | None = None  # none: no routing rules (the conversations' own skills and priority)
    no_answer_timeout: timedelta = timedelta(0)  # zero: an assignment waits for its agent's reply forever
    # The estimates announced with conversation.queued (as the queue view's: RouterSettings).
    handle_time_sample: int = 200
    default_handle_time_s: float = 300.0


def _event(payload: Payload, key: uuid.UUID, cause: EventEnvelope | None = None) -> OutboxEvent:
    envelope = EventEnvelope.wrap(payload, producer=PRODUCER, causation=cause)
    return (payload.topic, str(key), envelope)


# Attempts at placing one decision's tasks: an agent chosen may have been taken meanwhile (held by another
# transaction, or filled up), and its tasks are then matched again among the other candidates. Each
# attempt is one statement, and only contention makes a second; what is still unplaced after these waits
# for the sweeper's next tick.
_ATTEMPTS = 3


async def _place(
    session: AsyncSession,
    tasks: Sequence[Waiting],
    found: Candidates,
    causes: dict[uuid.UUID, EventEnvelope],
    now: datetime,
) -> tuple[list[Match], list[OutboxEvent], set[uuid.UUID]]:
    """Match tasks this transaction holds to the candidates, take the chosen agents' capacity, and assign
    (or offer, to agents whose team wants offers) each. Returns the matches placed, the events that say
    so, and the agents found taken by others."""
    by_id = {t.conversation_id: t for t in tasks}
    candidates = found.candidates
    waiting = list(tasks)
    placed: list[Placement] = []
    taken: set[uuid.UUID] = set()
    for _ in range(_ATTEMPTS):
        # Every assignment of the decision at its own instant, across attempts too (assignment_time).
        at = policy.assignment_time(now, len(placed))
        matches = policy.match(waiting, candidates, at)
        if not matches:
            break
        placements = [
            Placement(
                m.conversation_id,
                m.agent_id,
                None if (t := found.offer_timeout_s.get(m.agent_id)) is None else now + timedelta(seconds=t),
            )
            for m in matches
        ]
        units = repository.per_workload(
            (m.agent_id, policy.workload_index(by_id[m.conversation_id].requirement.workload))
            for m in matches
        )
        # Each agent's last assignment of this decision, at the time the policy counted it made.
        last = {m.agent_id: policy.assignment_time(at, k) for k, m in enumerate(matches)}
        reserved, done = await repository.reserve_and_place(session, units, last, placements, now)
        kept = [m for m in matches if m.agent_id in reserved]
        if done != {m.conversation_id for m in kept}:
            raise RuntimeError("a task this transaction holds was no longer queued")
        placed += [p for p in placements if p.agent_id in reserved]
        if len(kept) == len(matches):
            break
        taken |= {m.agent_id for m in matches} - reserved
        candidates = [c for c in _with_room(candidates, kept, waiting, at) if c.agent_id not in taken]
        waiting = [t for t in waiting if t.conversation_id not in done]
    events: list[OutboxEvent] = []
    for p in placed:
        queued_at = by_id[p.conversation_id].enqueued_at
        payload: Payload
        if p.expires_at is None:
            payload = ConversationAssigned(
                conversation_id=p.conversation_id,
                agent_id=p.agent_id,
                queued_at=queued_at,
                assigned_at=now,
                queue=by_id[p.conversation_id].queue,
            )
        else:
            payload = ConversationOffered(
                conversation_id=p.conversation_id,
                agent_id=p.agent_id,
                queued_at=queued_at,
                offered_at=now,
                expires_at=p.expires_at,
            )
        events.append(_event(payload, p.conversation_id, causes.get(p.conversation_id)))
    return [Match(p.conversation_id, p.agent_id) for p in placed], events, taken


async def _route(
    session: AsyncSession,
    outbox: Outbox,
    tasks: Sequence[Waiting],
    now: datetime,
    *,
    causes: dict[uuid.UUID, EventEnvelope] | None = None,
    customers: dict[uuid.UUID, uuid.UUID] | None = None,
    config: RoutingConfig | None = None,
    announce: bool = False,
    found: Candidates | None = None,
) -> None:
    """Place tasks this transaction queued (or holds) with the best agents free now (``found``: their
    candidates, already read with them); with ``announce``, say which are left waiting. ``customers``
    (conversation → customer) turns on sticky routing."""
    if not tasks:
        return
    causes = causes or {}
    sticky = _sticky(customers, config)
    if found is None:
        found = await repository.best_candidates(
            session, tasks, sticky_customers=sorted(set(sticky.values())), sticky_since=_since(now, config)
        )
    if found.sticky:
        tasks = [
            t
            if t.preferred_agent is not None or (c := sticky.get(t.conversation_id)) not in found.sticky
            else _prefer(t, found.sticky[c])
            for t in tasks
        ]
    matches, events, taken = await _place(session, tasks, found, causes, now)
    placed = {m.conversation_id for m in matches}
    left = [t for t in tasks if t.conversation_id not in placed]
    if taken and left:
        # Agents chosen were taken by another transaction meanwhile, and the candidates read ran out:
        # read the next best once more (counting the taken agents as excluded makes each requirement's
        # fetch that many longer, and keeps them out of the match).
        left = [replace(t, excluded=t.excluded | taken) for t in left]
        again = await repository.best_candidates(session, left)
        more, more_events, _ = await _place(session, left, again, causes, now)
        matches, events = matches + more, events + more_events
        placed |= {m.conversation_id for m in more}
    if announce:
        # conversation.queued announces a conversation left waiting; one placed at once needs no such
        # event (conversation.assigned carries its queued_at), which saves a record per message on the hot
        # path. It says what the customer can be told: the estimated wait, or when their team opens (one
        # statement for the batch, only when some are left waiting).
        waiting = [t for t in tasks if t.conversation_id not in placed]
        config = config or RoutingConfig()
        told = await hours_service.outlook(
            session, waiting, config.handle_time_sample, config.default_handle_time_s, now
        )
        events = [
            _event(
                ConversationQueued(
                    conversation_id=t.conversation_id,
                    required_skills=sorted(t.required_skills),
                    priority=t.priority,
                    queued_at=t.enqueued_at,
                    queue=t.queue,
                    team=t.team,
                    position=told[t.conversation_id].position,
                    estimated_wait_s=told[t.conversation_id].estimated_wait_s,
                    opens_at=told[t.conversation_id].opens_at,
                    timezone=told[t.conversation_id].timezone,
                ),
                t.conversation_id,
                causes.get(t.conversation_id),
            )
            for t in waiting
        ] + events
    await outbox.add_many(session, events)


def _sticky(
    customers: dict[uuid.UUID, uuid.UUID] | None, config: RoutingConfig | None
) -> dict[uuid.UUID, uuid.UUID]:
    """The conversations (→ customer) whose customer's previous agent is looked for."""
    return customers if customers and config is not None and config.sticky_window else {}


def _since(now: datetime, config: RoutingConfig | None) -> datetime | None:
    """How far back a customer's previous assignment makes their agent sticky."""
    return now - config.sticky_window if config is not None and config.sticky_window else None


def _prefer(task: Waiting, agent_id: uuid.UUID) -> Waiting:
    return replace(task, preferred_agent=agent_id)


Queueable = TypeVar("Queueable", ConversationOpened, ConversationReopened)
# Queues new tasks and returns those it queued, as stored, with their candidates when it read them too
# (given the customers whose previous agent is sticky and since when).
QueueStatement = Callable[
    [AsyncSession, Sequence[NewTask], Sequence[uuid.UUID], datetime | None],
    Awaitable[tuple[list[Waiting], Candidates | None]],
]


async def _insert(
    session: AsyncSession, new: Sequence[NewTask], customers: Sequence[uuid.UUID], since: datetime | None
) -> tuple[list[Waiting], Candidates | None]:
    return await repository.insert_with_candidates(
        session, new, sticky_customers=customers, sticky_since=since
    )


async def _requeue_reopened(
    session: AsyncSession, new: Sequence[NewTask], _: Sequence[uuid.UUID], __: datetime | None
) -> tuple[list[Waiting], Candidates | None]:
    # The requirement is the one stored (decided when the conversation opened), known only once requeued.
    return await repository.requeue(session, new), None


def _new_task(
    event: ConversationOpened | ConversationReopened,
    enqueued_at: datetime,
    preferred: uuid.UUID | None,
    decision: Decision | None,
    steps: Sequence[Step] = (),
) -> NewTask:
    """The task of a conversation: what it asked for (skills at level 1, its priority), with what the
    matching routing rule adds (skills at their minimum levels, a higher priority, queue, SLA), asking
    for the optional skills too while its queue's escalation has not dropped them (ring 0)."""
    skills = dict.fromkeys(event.required_skills, 1)
    priority = event.priority
    if decision is None:
        return NewTask(
            Waiting(
                event.conversation_id,
                Requirement.of(skills, workload_of(event.channel.value)),
                priority,
                enqueued_at,
                preferred,
            ),
            event.customer_id,
            event.channel.value,
        )
    outcome = decision.outcome
    for skill, level in outcome.required_skills.items():
        skills[skill] = max(level, skills.get(skill, 1))
    ring0 = escalation.requirement_at(skills, outcome.optional_skills, steps, 0)
    return NewTask(
        Waiting(
            event.conversation_id,
            Requirement.of(ring0, workload_of(event.channel.value), decision.language),
            max(priority, outcome.priority),
            enqueued_at,
            preferred,
            queue=outcome.queue,
        ),
        event.customer_id,
        event.channel.value,
        queue=outcome.queue,
        optional_skills=tuple(sorted(outcome.optional_skills)),
        sla_target_s=outcome.sla_target_seconds,
        rule_id=decision.rule_id,
        base=tuple(sorted(skills.items())),
    )


async def _queue_and_route(
    session: AsyncSession,
    outbox: Outbox,
    events: Sequence[tuple[EventEnvelope, Queueable]],
    enqueued_at: Callable[[Queueable], datetime],
    preferred: Callable[[Queueable], uuid.UUID | None],
    queue: QueueStatement,
    config: RoutingConfig,
    now: datetime,
    decisions: Mapping[uuid.UUID, Decision] | None = None,
) -> None:
    """Queue the conversations of ``events`` (the first event of each; ``queue`` returns those it really
    queued, the others being redeliveries or stale) and route them."""
    first: dict[uuid.UUID, tuple[EventEnvelope, Queueable]] = {}
    for envelope, event in events:
        first.setdefault(event.conversation_id, (envelope, event))
    decisions = decisions or {}
    steps: dict[str, list[Step]] = {}
    if config.rules is not None:
        for queue_name in {d.outcome.queue for d in decisions.values()}:
            steps[queue_name] = await config.rules.escalation(session, queue_name)
    new = [
        _new_task(
            e,
            enqueued_at(e),
            preferred(e) if config.sticky_window else None,
            d := decisions.get(e.conversation_id),
            steps.get(d.outcome.queue, []) if d is not None else [],
        )
        for _, e in first.values()
    ]
    asked = {n.waiting.conversation_id: n.waiting.preferred_agent for n in new}
    customers = {n.waiting.conversation_id: n.customer_id for n in new if n.waiting.preferred_agent is None}
    sticky = _sticky(customers, config)
    stored, found = await queue(session, new, sorted(set(sticky.values())), _since(now, config))
    # As stored: a reopened task keeps the requirement routing decided when it opened.
    queued = [_prefer(t, p) if (p := asked[t.conversation_id]) else t for t in stored]
    await _route(
        session,
        outbox,
        queued,
        now,
        causes={cid: envelope for cid, (envelope, _) in first.items()},
        customers=customers,
        config=config,
        announce=True,
        found=found,
    )


async def on_opened(
    session: AsyncSession,
    outbox: Outbox,
    opened: Sequence[tuple[EventEnvelope, ConversationOpened]],
    config: RoutingConfig,
) -> None:
    """Queue newly opened conversations, with what the routing rules decide for them, and place those an
    eligible agent can take right away (the customer's previous agent first, within the sticky window)."""
    now = utcnow()
    # A conversation waits from the moment it opened (the customer's first message reached ingest), not
    # from when the router got to it: queue order and reported waits are the customer's.
    decisions = await config.rules.decide(session, [e for _, e in opened]) if config.rules else {}
    await _queue_and_route(
        session,
        outbox,
        opened,
        lambda e: min(e.opened_at, now),
        lambda e: None,
        _insert,
        config,
        now,
        decisions,
    )


async def on_reopened(
    session: AsyncSession,
    outbox: Outbox,
    reopened: Sequence[tuple[EventEnvelope, ConversationReopened]],
    config: RoutingConfig,
) -> None:
    """Queue reopened conversations again and place them as opened ones, their previous agent first when
    that agent is eligible (online, with room): never back to an agent who is offline."""
    # Queued from the reopen exactly, not the router's clock: the conversation service recognises the
    # assignment that follows the reopen by this time (conversation.assigned's queued_at), and the next
    # resolution of the task is compared with it.
    await _queue_and_route(
        session,
        outbox,
        reopened,
        lambda e: e.reopened_at,
        lambda e: e.previous_agent_id,
        _requeue_reopened,
        config,
        utcnow(),
    )


# Rounds of serving the queue head in one transaction: agents freed together may all want the same first
# conversations; each round gives those still with room their next ones. Whatever is left after these
# rounds waits for the sweeper's next tick.
_MAX_ROUNDS = 8


@dataclass
class SweepMemory:
    """What one sweeper saw of the agents with room at its last pass, so that the next pass serves only the
    agents whose room, skills or languages changed since, and agents new to it (come online, or with room
    again). An agent unchanged since the last pass was served then against the queue as it was, and a
    conversation queued since was routed on arrival; what that leaves out (a conversation whose agent
    another transaction held at that moment, with no agent's state changing since) is served by a full
    pass every ``full_every`` passes (the first is one)."""

    full_every: int = 30
    seen: dict[uuid.UUID, tuple[object, ...]] = field(default_factory=dict)
    passes: int = 0

    def changed(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The candidates this pass serves; remembers all of them as they are now."""
        full = self.passes % self.full_every == 0
        self.passes += 1
        before, self.seen = self.seen, {c.agent_id: _state(c) for c in candidates}
        return (
            list(candidates)
            if full
            else [c for c in candidates if before.get(c.agent_id) != self.seen[c.agent_id]]
        )


def _state(c: Candidate) -> tuple[object, ...]:
    """What of an agent decides which waiting conversations it can take."""
    return (c.capacity, c.active, c.capacities, c.loads, tuple(sorted(c.proficiency.items())), c.languages)


async def assign_queued(
    session: AsyncSession,
    outbox: Outbox,
    agent_ids: Sequence[uuid.UUID] | None = None,
    memory: SweepMemory | None = None,
) -> int:
    """Serve the queue head with the free capacity of ``agent_ids`` (every online agent when None; only
    those changed since the sweeper's last pass, with ``memory``); returns how many were placed."""
    head: list[Waiting] | None = None
    if agent_ids is None:
        found = await repository.agents_with_capacity(session, None)
        if memory is not None:
            found = replace(found, candidates=memory.changed(found.candidates))
    else:
        # A few agents freed: they and their queue head in one statement, the first round's.
        found, head = await repository.agents_and_queue(session, agent_ids)
    candidates = found.candidates
    considered: set[uuid.UUID] = set()
    placed = 0
    now = utcnow()
    for _ in range(_MAX_ROUNDS):
        tasks = head if head is not None else await repository.lock_queued(session, candidates, considered)
        head = None
        matches, events, taken = await _place(session, tasks, replace(found, candidates=candidates), {}, now)
        await outbox.add_many(session, events)
        placed += len(matches)
        considered.update(t.conversation_id for t in tasks)
        candidates = [c for c in _with_room(candidates, matches, tasks, now) if c.agent_id not in taken]
        if not matches or not candidates:
            break
    return placed


def _with_room(
    candidates: Sequence[Candidate], matches: Sequence[Match], tasks: Sequence[Waiting], now: datetime
) -> list[Candidate]:
    """The candidates after ``matches``, those with room left."""
    workload = {t.conversation_id: policy.WORKLOADS.index(t.requirement.workload) for t in tasks}
    taken: dict[uuid.UUID, list[int]] = {}
    for m in matches:
        taken.setdefault(m.agent_id, []).append(workload[m.conversation_id])
    out = []
    for c in candidates:
        ws = taken.get(c.agent_id, [])
        loads = list(c.loads)
        for w in ws:
            loads[w] += 1
        after = replace(c, active=c.active + len(ws), loads=tuple(loads))
        if after.active < after.capacity and any(
            load < cap for load, cap in zip(after.loads, after.capacities, strict=True)
        ):
            out.append(after)
    return out


async def on_resolved(
    session: AsyncSession, outbox: Outbox, resolved: Sequence[ConversationResolved]
) -> None:
    """Close the resolved conversations' tasks, free their agents' capacity, and refill those agents."""
    freed = await repository.close_tasks(session, {e.conversation_id: e.resolved_at for e in resolved})
    if freed:
        await repository.release(session, freed)
        await assign_queued(session, outbox, list(freed))


# --- offers ----------------------------------------------------------------------------------------------


async def accept_offer(
    session: AsyncSession, outbox: Outbox, agent_id: uuid.UUID, conversation_id: uuid.UUID
) -> ConversationAssigned:
    """The agent takes the conversation offered to them. NotFound when they hold no such offer (never
    made, already answered, lapsed, or made to someone else)."""
    now = utcnow()
    accepted = await repository.accept_offer(session, conversation_id, agent_id, now)
    if accepted is None:
        raise NotFound("no such offer is open for this agent", code="offer_not_found")
    queued_at, offered_at, queue = accepted
    assigned = ConversationAssigned(
        conversation_id=conversation_id,
        agent_id=agent_id,
        queued_at=queued_at,
        assigned_at=now,
        offered_at=offered_at,
        queue=queue,
    )
    await outbox.add_many(session, [_event(assigned, conversation_id)])
    return assigned


async def decline_offer(
    session: AsyncSession, outbox: Outbox, agent_id: uuid.UUID, conversation_id: uuid.UUID
) -> None:
    """The agent declines: the conversation waits again with its age, and is offered to someone else."""
    ended = await repository.decline_offer(session, conversation_id, agent_id)
    if ended is None:
        raise NotFound("no such offer is open for this agent", code="offer_not_found")
    await _reoffer(session, outbox, [ended], ConversationOfferDeclined, utcnow())


async def _reoffer(
    session: AsyncSession,
    outbox: Outbox,
    ended: Sequence[EndedOffer],
    kind: type[ConversationOfferDeclined | ConversationOfferTimedOut],
    now: datetime,
) -> None:
    """Free the capacity the ended offers held, say they ended, and place their tasks elsewhere."""
    events = [
        kind(
            conversation_id=e.waiting.conversation_id,
            agent_id=e.agent_id,
            queued_at=e.waiting.enqueued_at,
            offered_at=e.offered_at,
            ended_at=now,
        )
        for e in ended
    ]
    await _release_and_reroute(
        session, outbox, [(e.agent_id, e.workload, e.waiting) for e in ended], events, now
    )


async def _release_and_reroute(
    session: AsyncSession,
    outbox: Outbox,
    taken: Sequence[tuple[uuid.UUID, int, Waiting]],
    events: Sequence[ConversationOfferDeclined | ConversationOfferTimedOut | ConversationRequeued],
    now: datetime,
) -> None:
    """Tasks taken back from agents (agent, workload, the task waiting again): free what they held, say
    why, and place them with someone else."""
    if not taken:
        return
    await repository.release(session, repository.per_workload((a, w) for a, w, _ in taken))
    await outbox.add_many(session, [_event(e, e.conversation_id) for e in events])
    await _route(session, outbox, [t for _, _, t in taken], now)


# --- presence ----------------------------------------------------------------------------------------------


async def agents_went_offline(session: AsyncSession, outbox: Outbox, agent_ids: Sequence[uuid.UUID]) -> None:
    """Offers to agents who went offline return to the queue at once (their assigned conversations wait
    out the grace period: ``requeue_abandoned``)."""
    ended = await repository.withdraw_offers(session, agent_ids)
    await _reoffer(session, outbox, ended, ConversationOfferTimedOut, utcnow())


async def expire_offers(session: AsyncSession, outbox: Outbox) -> int:
    now = utcnow()
    ended = await repository.expire_offers(session, now)
    await _reoffer(session, outbox, ended, ConversationOfferTimedOut, now)
    return len(ended)


async def silence_stale_agents(session: AsyncSession, outbox: Outbox, config: RoutingConfig) -> int:
    """Agents not heard from for the presence timeout go offline, as if they had said so when the
    timeout was reached (not when this tick noticed: the offline grace counts from then)."""
    if not config.presence_timeout:
        return 0
    silent = await repository.silence_stale_agents(session, config.presence_timeout, utcnow())
    if not silent:
        return 0
    await outbox.add_many(
        session,
        [
            _event(
                AgentStatusChanged(
                    agent_id=s.agent_id,
                    status=AgentStatus.OFFLINE,
                    previous_status=AgentStatus(s.previous),
                    changed_at=s.since,
                ),
                s.agent_id,
            )
            for s in silent
        ],
    )
    await agents_went_offline(session, outbox, [s.agent_id for s in silent])
    return len(silent)


async def requeue_abandoned(session: AsyncSession, outbox: Outbox, config: RoutingConfig) -> int:
    """Conversations of agents offline for the grace period or longer wait again (with their age) and go
    to someone else."""
    now = utcnow()
    gone = await repository.requeue_abandoned(session, now - config.offline_grace)
    # A deleted agent's task left behind by the deletion (another transaction held it) is taken here too,
    # and says why it really left its agent.
    await _requeue(
        session, outbox, [g for g in gone if not g.agent_deleted], RequeueReason.AGENT_OFFLINE, now
    )
    await _requeue(session, outbox, [g for g in gone if g.agent_deleted], RequeueReason.AGENT_DELETED, now)
    return len(gone)


async def agents_deleted(session: AsyncSession, outbox: Outbox, agent_ids: Sequence[uuid.UUID]) -> None:
    """Deleted agents (already marked deleted and offline in this transaction) hand back their offers and
    their assigned conversations at once, with their original age: the offline path without the grace.
    A task another transaction holds right now is left to the sweeper's next requeue pass, which treats a
    deleted agent as past the grace."""
    await agents_went_offline(session, outbox, agent_ids)
    now = utcnow()
    gone = await repository.requeue_abandoned(session, now, agent_ids)
    await _requeue(session, outbox, gone, RequeueReason.AGENT_DELETED, now)


async def _requeue(
    session: AsyncSession,
    outbox: Outbox,
    taken: Sequence[repository.Requeued],
    reason: RequeueReason,
    now: datetime,
) -> None:
    """Announce assignments taken back from their agents (``conversation.requeued``), free what they held
    and place them with someone else."""
    events = [
        ConversationRequeued(
            conversation_id=g.waiting.conversation_id,
            agent_id=g.agent_id,
            reason=reason,
            queued_at=g.waiting.enqueued_at,
            requeued_at=now,
        )
        for g in taken
    ]
    await _release_and_reroute(
        session, outbox, [(g.agent_id, g.workload, g.waiting) for g in taken], events, now
    )


async def on_replied(session: AsyncSession, replies: Sequence[MessageOutbound]) -> None:
    """Agents' replies answer the conversations assigned to them (for the no-answer requeue); automated
    messages (an acknowledgement) answer nothing."""
    await repository.mark_answered(
        session,
        [
            (r.conversation_id, r.agent_id, r.sent_at)
            for r in replies
            if r.agent_id is not None and not r.automated
        ],
    )


async def requeue_unanswered(session: AsyncSession, outbox: Outbox, config: RoutingConfig) -> int:
    """Conversations whose agent has not replied within the no-answer time go to someone else (original
    age kept, never back to that agent)."""
    if not config.no_answer_timeout:
        return 0
    now = utcnow()
    silent = await repository.requeue_unanswered(session, now - config.no_answer_timeout)
    await _requeue(session, outbox, silent, RequeueReason.NO_ANSWER, now)
    return len(silent)


async def escalate(session: AsyncSession, outbox: Outbox) -> int:
    """Waiting conversations that reached their queue's next escalation step ask less of an agent from
    now on, and are routed again at once with the wider requirement."""
    now = utcnow()
    due = await repository.lock_due_escalations(session, now)
    changes: list[tuple[uuid.UUID, dict[str, int], int]] = []
    for d in due:
        steps = escalation.steps_of(d.steps)
        reached = max(escalation.steps_reached(steps, d.enqueued_at, now), d.step)
        changes.append(
            (d.conversation_id, escalation.requirement_at(d.base, d.optional, steps, reached), reached)
        )
    waiting = await repository.escalate(session, changes)
    by_id = {d.conversation_id: d for d in due}
    events = [
        ConversationEscalated(
            conversation_id=cid,
            queue=by_id[cid].queue,
            step=step,
            required_skills=skills,
            queued_at=by_id[cid].enqueued_at,
            escalated_at=now,
        )
        for cid, skills, step in changes
    ]
    await outbox.add_many(session, [_event(e, e.conversation_id) for e in events])
    await _route(session, outbox, waiting, now)
    return len(changes)


async def mark_sla_breaches(session: AsyncSession, outbox: Outbox) -> int:
    """Conversations waiting past their SLA target move up one priority, once, and say so."""
    now = utcnow()
    breaches = await repository.mark_sla_breaches(session, now)
    events = [
        ConversationSlaBreached(
            conversation_id=b.conversation_id,
            queue=b.queue,
            sla_target_s=b.sla_target_s,
            queued_at=b.enqueued_at,
            breached_at=now,
            priority=b.priority,
        )
        for b in breaches
    ]
    await outbox.add_many(session, [_event(e, e.conversation_id) for e in events])
    return len(breaches)


async def force_assign(
    session: AsyncSession,
    outbox: Outbox,
    conversation_id: uuid.UUID,
    agent_id: uuid.UUID,
    reason: RequeueReason = RequeueReason.SUPERVISOR,
) -> ConversationAssigned:
    """A supervisor gives a conversation (waiting, offered or assigned) to an agent who is not offline,
    whatever their skills and load. One assigned to someone else is taken from them
    (``conversation.requeued``, reason ``supervisor``) and their capacity freed; assigning it again to
    the same agent changes nothing."""
    agent = await session.get(Agent, agent_id, with_for_update=True)
    if agent is None or agent.deleted_at is not None:
        raise NotFound("agent not found")
    if agent.status == AgentStatus.OFFLINE.value:
        raise Conflict("the agent is offline", code="agent_offline")
    task = await repository.lock_open_task(session, conversation_id)
    if task is None:
        raise NotFound("conversation not open in routing", code="conversation_not_routable")
    now = utcnow()
    if task.state == TaskState.ASSIGNED.value and task.agent_id == agent_id:
        assert task.assigned_at is not None
        return ConversationAssigned(
            conversation_id=conversation_id,
            agent_id=agent_id,
            queued_at=task.enqueued_at,
            assigned_at=task.assigned_at,
            queue=task.queue,
        )
    events: list[Payload] = []
    if task.agent_id is not None:
        await repository.release(session, repository.per_workload([(task.agent_id, task.workload)]))
        if task.state == TaskState.ASSIGNED.value:
            events.append(
                ConversationRequeued(
                    conversation_id=conversation_id,
                    agent_id=task.agent_id,
                    reason=reason,
                    queued_at=task.enqueued_at,
                    requeued_at=now,
                )
            )
    await repository.force_assign(session, conversation_id, agent_id, task.workload, now)
    assigned = ConversationAssigned(
        conversation_id=conversation_id,
        agent_id=agent_id,
        queued_at=task.enqueued_at,
        assigned_at=now,
        queue=task.queue,
    )
    events.append(assigned)
    await outbox.add_many(session, [_event(e, conversation_id) for e in events])
    return assigned


async def on_transfer_requested(
    session: AsyncSession, outbox: Outbox, requests: Sequence[ConversationTransferRequested]
) -> None:
    """Carry out agents' transfers. To an agent who is not offline: assigned to them directly (a deliberate
    handoff, like a supervisor's force-assign: their skills and load are not checked). Otherwise, or to
    skills or a queue: the conversation waits again with its age and is routed to anyone else eligible.
    A request for a conversation no longer with the agent who asked is stale (a redelivery, or the
    conversation moved meanwhile) and changes nothing.

    One request at a time: transfers are people's actions, a handful per poll, never the message path."""
    now = utcnow()
    for request in requests:
        if request.to_agent_id is not None:
            target = await session.get(Agent, request.to_agent_id)
            task = await repository.lock_open_task(session, request.conversation_id)
            if (
                task is None
                or task.state != TaskState.ASSIGNED.value
                or task.agent_id != request.from_agent_id
            ):
                continue
            if target is not None and target.status != AgentStatus.OFFLINE.value:
                await force_assign(
                    session, outbox, request.conversation_id, target.id, RequeueReason.TRANSFERRED
                )
                continue
        taken = await repository.take_back(
            session, request.conversation_id, request.from_agent_id, request.required_skills, request.queue
        )
        if taken is not None:
            await _requeue(session, outbox, [taken], RequeueReason.TRANSFERRED, now)


async def sweep(session: AsyncSession, outbox: Outbox, memory: SweepMemory | None = None) -> int:
    """Place waiting conversations with any free capacity (with ``memory``, that of agents changed since
    the last pass: ``SweepMemory``). Covers the races in which neither side sees the other (a conversation
    queued while, in another transaction, the only eligible agent comes online) and agents skipped because
    another transaction held them."""
    if not await repository.any_queued(session):
        return 0  # the common case: do not read agents that consumers are routing to
    return await assign_queued(session, outbox, None, memory)
