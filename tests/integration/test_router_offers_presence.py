"""Routing on the real database: capacity per workload, proficiency, sticky routing, offers (accept,
decline, lapse), heartbeats, requeue from agents who went offline, and routing rules applied to opened
conversations; each outcome read back from the tables and the router's outbox."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from switchboard_common.auth import Principal, Role
from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_common.errors import Conflict, NotFound
from switchboard_common.events import (
    Channel,
    ConversationOpened,
    ConversationResolved,
    EventEnvelope,
    MessageOutbound,
    utcnow,
)
from switchboard_router.agents import service as agents
from switchboard_router.agents.schemas import (
    AgentCreate,
    ChannelCapacity,
    EscalationStep,
    QueueUpsert,
    TeamUpsert,
)
from switchboard_router.models import Agent, AgentStatus, Task, outbox_table
from switchboard_router.routing import service
from switchboard_router.routing.policy import Policy
from switchboard_router.routing.service import RoutingConfig
from switchboard_router.rules import service as rules_service
from switchboard_router.rules.book import RuleBook
from switchboard_router.rules.schemas import RuleCreate
from tests.conftest import Settings

ADMIN = Principal(Role.ADMIN)
NO_STICKY = RoutingConfig(sticky_window=timedelta(0))


class Router:
    def __init__(self, settings: Settings) -> None:
        self.db = Database.from_settings(settings)
        self.outbox = Outbox(outbox_table, settings)

    async def agent(self, name: str, *, online: bool = True, **fields: Any) -> uuid.UUID:
        body = AgentCreate(name=name, email=f"{name}@example.com", **fields)
        async with self.db.unit_of_work() as session:
            agent = await agents.create(session, body)
        if online:
            await self.status(agent.id, AgentStatus.ONLINE)
        return agent.id

    async def status(self, agent_id: uuid.UUID, status: AgentStatus) -> None:
        async with self.db.unit_of_work() as session:
            await agents.set_status(session, self.outbox, ADMIN, agent_id, status)

    async def open(
        self,
        *,
        channel: Channel = Channel.API,
        skills: list[str] | None = None,
        customer: uuid.UUID | None = None,
        config: RoutingConfig = NO_STICKY,
    ) -> uuid.UUID:
        event = ConversationOpened(
            conversation_id=uuid.uuid4(),
            customer_id=customer or uuid.uuid4(),
            channel=channel,
            required_skills=skills or [],
            priority=0,
            opened_at=utcnow(),
        )
        async with self.db.unit_of_work() as session:
            await service.on_opened(
                session, self.outbox, [(EventEnvelope.wrap(event, producer="t"), event)], config
            )
        return event.conversation_id

    async def open_with(
        self, config: RoutingConfig, text: str, attributes: dict[str, str], skills: list[str] | None = None
    ) -> uuid.UUID:
        event = ConversationOpened(
            conversation_id=uuid.uuid4(),
            customer_id=uuid.uuid4(),
            channel=Channel.WHATSAPP,
            required_skills=skills or [],
            priority=0,
            opened_at=utcnow(),
            text=text,
            customer_attributes=attributes,
        )
        async with self.db.unit_of_work() as session:
            await service.on_opened(
                session, self.outbox, [(EventEnvelope.wrap(event, producer="t"), event)], config
            )
        return event.conversation_id

    async def resolve(self, cid: uuid.UUID) -> None:
        async with self.db.unit_of_work() as session:
            await service.on_resolved(
                session,
                self.outbox,
                [ConversationResolved(conversation_id=cid, agent_id=None, resolved_at=utcnow())],
            )

    async def task(self, cid: uuid.UUID) -> Task:
        async with self.db.unit_of_work() as session:
            task = await session.get(Task, cid)
            assert task is not None
            return task

    async def load(self, agent_id: uuid.UUID) -> tuple[int, list[int]]:
        async with self.db.unit_of_work() as session:
            agent = await session.get(Agent, agent_id)
            assert agent is not None
            return agent.active_count, list(agent.loads)

    async def events(self, event_type: str) -> list[dict[str, Any]]:
        """Payloads of the router's events of this type, oldest first (the relay is not running)."""
        async with self.db.unit_of_work() as session:
            rows = (await session.execute(sa.select(outbox_table.c.value).order_by(outbox_table.c.id))).all()
        envelopes = [EventEnvelope.from_bytes(bytes(r.value)) for r in rows]
        return [e.payload for e in envelopes if e.type == event_type]

    async def run(self, step: Any) -> Any:
        async with self.db.unit_of_work() as session:
            return await step(session, self.outbox)

    async def execute(self, sql: str, **params: Any) -> None:
        async with self.db.unit_of_work() as session:
            await session.execute(sa.text(sql), params)


@pytest.fixture
async def router(settings: Settings) -> AsyncIterator[Router]:
    r = Router(settings)
    try:
        yield r
    finally:
        await r.db.dispose()


async def test_capacity_is_held_per_workload(router: Router) -> None:
    agent = await router.agent("chatty", capacity=5, channel_capacity=ChannelCapacity(chat=1))
    first = await router.open(channel=Channel.WEBCHAT)
    second = await router.open(channel=Channel.WEBCHAT)
    email = await router.open(channel=Channel.EMAIL)
    assert (await router.task(first)).state == "assigned"
    assert (await router.task(second)).state == "queued"  # chat is full; there is room in total
    assert (await router.task(email)).agent_id == agent
    assert await router.load(agent) == (2, [1, 0, 1, 0])
    await router.resolve(first)
    # The freed chat slot takes the waiting chat at once.
    assert (await router.task(second)).agent_id == agent
    assert await router.load(agent) == (2, [1, 0, 1, 0])


async def test_minimum_proficiency_is_checked_in_sql(router: Router) -> None:
    novice = await router.agent("novice", skills=[{"skill": "billing", "level": 1}], capacity=5)
    cid = await router.open(skills=["billing"])  # minimum 1: the novice qualifies
    assert (await router.task(cid)).agent_id == novice
    # A task needing level 4 (as a rule would set) waits for someone skilled enough.
    await router.execute(
        "UPDATE router.tasks SET state = 'queued', agent_id = NULL, min_levels = '{4}' WHERE conversation_id = :c",
        c=cid,
    )
    await router.execute("UPDATE router.agents SET active_count = 0, loads = '{0,0,0,0}'")
    assert await router.run(service.sweep) == 0
    expert = await router.agent("expert", skills=[{"skill": "billing", "level": 4}], capacity=5)
    assert (await router.task(cid)).agent_id == expert  # given at once as they came online


async def test_sticky_routing_prefers_the_customers_previous_agent(router: Router) -> None:
    sticky = RoutingConfig(sticky_window=timedelta(hours=1))
    customer = uuid.uuid4()
    first_agent = await router.agent("first", capacity=5)
    cid = await router.open(customer=customer, config=sticky)
    assert (await router.task(cid)).agent_id == first_agent
    await router.resolve(cid)
    # Load the first agent a little, and add an idle one who would win on load.
    await router.open(config=sticky)
    idle = await router.agent("idle", capacity=5)
    again = await router.open(customer=customer, config=sticky)
    assert (await router.task(again)).agent_id == first_agent
    # Without stickiness the least loaded agent takes it; and an offline previous agent is skipped.
    other = await router.open(customer=customer, config=NO_STICKY)
    assert (await router.task(other)).agent_id == idle
    await router.status(first_agent, AgentStatus.OFFLINE)
    last = await router.open(customer=customer, config=sticky)
    assert (await router.task(last)).agent_id == idle


async def test_offers_are_accepted_declined_and_lapse(router: Router) -> None:
    async with router.db.unit_of_work() as session:
        await agents.upsert_team(session, "tier2", TeamUpsert(auto_accept=False, offer_timeout_s=30))
    alice = await router.agent("alice", teams=["tier2"], capacity=2)
    cid = await router.open()
    task = await router.task(cid)
    assert (task.state, task.agent_id) == ("offered", alice)
    assert task.offer_expires_at is not None and task.offered_at is not None
    assert task.offer_expires_at - task.offered_at == timedelta(seconds=30)
    assert await router.load(alice) == (1, [0, 1, 0, 0])  # the offer holds capacity
    [offered] = await router.events("conversation.offered")
    assert offered["agent_id"] == str(alice)

    # Only the agent offered can answer.
    bob = await router.agent("bob", capacity=2)
    async with router.db.unit_of_work() as session:
        with pytest.raises(NotFound):
            await service.accept_offer(session, router.outbox, bob, cid)
    async with router.db.unit_of_work() as session:
        assigned = await service.accept_offer(session, router.outbox, alice, cid)
    assert assigned.offered_at == task.offered_at
    assert (await router.task(cid)).state == "assigned"
    # Answered: a second accept finds nothing.
    async with router.db.unit_of_work() as session:
        with pytest.raises(NotFound):
            await service.accept_offer(session, router.outbox, alice, cid)

    # Bob (auto-accept) is busier now; the next one is offered to Alice again, who declines: it goes to Bob.
    await router.execute(
        "UPDATE router.agents SET capacity = 4, capacities = '{4,4,4,4}', active_count = 3, loads = '{0,3,0,0}'"
        " WHERE id = :a",
        a=bob,
    )
    declined = await router.open()
    assert (await router.task(declined)).agent_id == alice
    async with router.db.unit_of_work() as session:
        await service.decline_offer(session, router.outbox, alice, declined)
    task = await router.task(declined)
    assert (task.state, task.agent_id, task.declined_by) == ("assigned", bob, [alice])
    assert await router.load(alice) == (1, [0, 1, 0, 0])  # the declined offer's hold was released
    assert [e["agent_id"] for e in await router.events("conversation.offer_declined")] == [str(alice)]

    # An offer nobody answers lapses; with nobody else free (Bob is full now), it waits and never returns
    # to Alice.
    lapsing = await router.open()
    assert (await router.task(lapsing)).state == "offered"
    await router.execute(
        "UPDATE router.tasks SET offer_expires_at = now() - interval '1 second' WHERE conversation_id = :c",
        c=lapsing,
    )
    assert await router.run(service.expire_offers) == 1
    task = await router.task(lapsing)
    assert (task.state, task.agent_id, task.declined_by) == ("queued", None, [alice])
    assert await router.run(service.sweep) == 0  # Alice has room, but declined by lapse
    assert len(await router.events("conversation.offer_timed_out")) == 1


async def test_silent_agents_go_offline_and_their_work_is_requeued(router: Router) -> None:
    config = RoutingConfig(
        sticky_window=timedelta(0),
        presence_timeout=timedelta(seconds=60),
        offline_grace=timedelta(seconds=30),
    )
    async with router.db.unit_of_work() as session:
        await agents.upsert_team(session, "offers", TeamUpsert(auto_accept=False))
    silent = await router.agent("silent", capacity=3)
    offered_to = await router.agent("offered-to", teams=["offers"], capacity=3, online=False)
    assigned = await router.open()
    await router.status(offered_to, AgentStatus.ONLINE)
    await router.execute("UPDATE router.agents SET active_count = 3 WHERE id = :a", a=silent)
    offered = await router.open()
    await router.execute("UPDATE router.agents SET active_count = 1 WHERE id = :a", a=silent)
    assert (await router.task(assigned)).agent_id == silent
    assert (await router.task(offered)).agent_id == offered_to

    # A heartbeat keeps an agent present; silence past the timeout does not.
    async with router.db.unit_of_work() as session:
        await agents.heartbeat(session, ADMIN, silent)
    assert await router.run(lambda s, o: service.silence_stale_agents(s, o, config)) == 0
    # Silent for 70 s: offline as of 10 s ago (when the 60 s ran out), within the 30 s grace.
    past = utcnow() - timedelta(seconds=70)
    await router.execute("UPDATE router.agent_presence SET last_seen_at = :t", t=past)
    await router.execute("UPDATE router.agents SET status_changed_at = :t", t=past)
    assert await router.run(lambda s, o: service.silence_stale_agents(s, o, config)) == 2
    changes = await router.events("agent.status_changed")
    assert {(c["agent_id"], c["status"]) for c in changes[-2:]} == {
        (str(silent), "offline"),
        (str(offered_to), "offline"),
    }
    # A change by the agent's own request carries their capacity (metrics weighs their load against it);
    # silence is noticed without reading the agent's row, and tells none.
    assert [(c["status"], c["capacity"]) for c in changes if c["agent_id"] == str(offered_to)] == [
        ("online", 3),
        ("offline", None),
    ]
    # The offer returned at once; the assignment waits out the grace period.
    task = await router.task(offered)
    assert (task.state, task.agent_id) == ("queued", None)
    assert (await router.task(assigned)).state == "assigned"
    assert await router.run(lambda s, o: service.requeue_abandoned(s, o, config)) == 0

    rescuer = await router.agent("rescuer", capacity=5)
    assert (await router.task(offered)).agent_id == rescuer  # the queue is served as they come online
    await router.execute(
        "UPDATE router.agents SET status_changed_at = :t WHERE id = :a",
        t=utcnow() - timedelta(minutes=1),
        a=silent,
    )
    assert await router.run(lambda s, o: service.requeue_abandoned(s, o, config)) == 1
    task = await router.task(assigned)
    assert (task.state, task.agent_id) == ("assigned", rescuer)
    [requeued] = await router.events("conversation.requeued")
    assert (requeued["agent_id"], requeued["reason"]) == (str(silent), "agent_offline")
    assert (await router.load(silent))[0] == 0  # the requeued conversation's capacity was released
    assert _age(task.enqueued_at) > timedelta(0)  # it kept its place in the queue


def _age(enqueued_at: datetime) -> timedelta:
    return utcnow() - enqueued_at


async def _rule(
    router: Router, name: str, position: int, conditions: dict[str, Any], outcome: dict[str, Any]
) -> None:
    body = RuleCreate.model_validate(
        {"name": name, "position": position, "conditions": conditions, "outcome": outcome}
    )
    async with router.db.unit_of_work() as session:
        await rules_service.create(session, body)


async def test_routing_rules_decide_skills_levels_priority_queue_and_sla(router: Router) -> None:
    await _rule(
        router,
        "enterprise billing",
        1,
        {"keywords": ["invoice"], "customer": {"plan": "enterprise"}},
        {"queue": "billing-vip", "required_skills": {"billing": 4}, "priority": 7, "sla_target_seconds": 60},
    )
    await _rule(
        router, "spanish", 2, {"languages": ["es"]}, {"queue": "spanish", "required_skills": {"es": 1}}
    )
    config = RoutingConfig(sticky_window=timedelta(0), rules=RuleBook(0, "en,es"))
    novice = await router.agent("novice", skills=[{"skill": "billing", "level": 3}], capacity=5)

    vip = await router.open_with(config, "My INVOICE is wrong", {"plan": "enterprise"}, skills=["general"])
    task = await router.task(vip)
    assert (task.queue, task.priority, task.sla_target_s) == ("billing-vip", 7, 60)
    assert dict(zip(task.required_skills, task.min_levels, strict=True)) == {"billing": 4, "general": 1}
    assert task.rule_id is not None and task.state == "queued"  # the level-3 agent does not qualify
    expert = await router.agent("expert", skills=["general", {"skill": "billing", "level": 5}], capacity=5)
    assert (await router.task(vip)).agent_id == expert

    # Not enterprise: the first rule does not hold; the text is English, so the second does not either.
    plain = await router.task(await router.open_with(config, "My invoice is wrong", {"plan": "basic"}))
    assert (plain.queue, plain.rule_id, plain.required_skills, plain.agent_id) == (
        "default",
        None,
        [],
        novice,
    )
    spanish = await router.task(
        await router.open_with(config, "Hola, necesito ayuda con mi factura del mes pasado", {})
    )
    assert (spanish.queue, spanish.required_skills, spanish.state) == ("spanish", ["es"], "queued")
    # A rule with a language condition also needs an agent who speaks it: the skill alone is not enough.
    assert spanish.language == "es" and plain.language is None
    await router.agent("skill-only", skills=["es"], languages=["en"], capacity=2)
    assert (await router.task(spanish.conversation_id)).state == "queued"
    speaker = await router.agent("speaker", skills=["es"], languages=["es"], capacity=2)
    assert (await router.task(spanish.conversation_id)).agent_id == speaker


async def test_a_conversation_past_its_sla_target_moves_up_once(router: Router) -> None:
    await _rule(
        router,
        "urgent",
        1,
        {"keywords": ["outage"]},
        {"queue": "ops", "priority": 3, "sla_target_seconds": 30},
    )
    config = RoutingConfig(sticky_window=timedelta(0), rules=RuleBook(0, "en"))
    late = await router.open_with(config, "Total outage here", {})  # nobody online: it waits
    on_time = await router.open_with(config, "Another outage", {})
    assert await router.run(service.mark_sla_breaches) == 0
    await router.execute(
        "UPDATE router.tasks SET enqueued_at = now() - interval '31 seconds' WHERE conversation_id = :c",
        c=late,
    )
    assert await router.run(service.mark_sla_breaches) == 1
    assert await router.run(service.mark_sla_breaches) == 0  # once
    task = await router.task(late)
    assert (task.priority, task.sla_breached_at is not None) == (4, True)
    assert (await router.task(on_time)).priority == 3
    [breach] = await router.events("conversation.sla_breached")
    assert (breach["conversation_id"], breach["queue"], breach["priority"]) == (str(late), "ops", 4)
    # The raised priority puts it first for the next agent, ahead of the older one.
    await router.execute(
        "UPDATE router.tasks SET enqueued_at = now() - interval '1 hour' WHERE conversation_id = :c",
        c=on_time,
    )
    agent = await router.agent("first", capacity=1)
    assert (await router.task(late)).agent_id == agent


async def test_a_supervisor_can_force_assign_over_skills_and_capacity(router: Router) -> None:
    busy = await router.agent("busy", capacity=1)
    cid = await router.open()
    assert (await router.task(cid)).agent_id == busy
    other = await router.agent("other", skills=["sales"], capacity=1)
    await router.open()  # the other agent is now full
    async with router.db.unit_of_work() as session:
        assigned = await service.force_assign(session, router.outbox, cid, other)
    task = await router.task(cid)
    assert (task.state, task.agent_id, assigned.agent_id) == ("assigned", other, other)
    assert await router.load(busy) == (0, [0, 0, 0, 0])  # freed
    assert await router.load(other) == (2, [0, 2, 0, 0])  # over capacity: the supervisor's call
    [requeued] = await router.events("conversation.requeued")
    assert (requeued["agent_id"], requeued["reason"]) == (str(busy), "supervisor")
    # Again to the same agent: nothing changes.
    async with router.db.unit_of_work() as session:
        await service.force_assign(session, router.outbox, cid, other)
    assert await router.load(other) == (2, [0, 2, 0, 0])
    # Offline agents and closed conversations are refused.
    await router.status(busy, AgentStatus.OFFLINE)
    async with router.db.unit_of_work() as session:
        with pytest.raises(Conflict):
            await service.force_assign(session, router.outbox, cid, busy)
    await router.resolve(cid)
    async with router.db.unit_of_work() as session:
        with pytest.raises(NotFound):
            await service.force_assign(session, router.outbox, cid, other)


async def test_a_queues_policy_chooses_among_eligible_agents(router: Router) -> None:
    async with router.db.unit_of_work() as session:
        await agents.upsert_queue(session, "experts", QueueUpsert(policy=Policy.MOST_SKILLED))
    await _rule(
        router,
        "refunds",
        1,
        {"keywords": ["refund"]},
        {"queue": "experts", "required_skills": {"billing": 1}},
    )
    config = RoutingConfig(sticky_window=timedelta(0), rules=RuleBook(0, "en"))
    expert = await router.agent("expert", skills=[{"skill": "billing", "level": 5}], capacity=4, online=False)
    novice = await router.agent("novice", skills=[{"skill": "billing", "level": 1}], capacity=4)
    await router.execute(
        "UPDATE router.agents SET active_count = 3, loads = '{0,3,0,0}' WHERE id = :a", a=expert
    )
    await router.execute("UPDATE router.agents SET status = 'online' WHERE id = :a", a=expert)
    # On arrival (the candidate fetch): the expert, though busier.
    first = await router.open_with(config, "I want a refund", {})
    assert (await router.task(first)).agent_id == expert
    # Other queues stay least loaded.
    other = await router.open_with(config, "Where is my parcel", {}, skills=["billing"])
    assert (await router.task(other)).agent_id == novice
    # From the queue (an agent freeing up, the sweeper): the expert again, when they have room.
    await router.execute("UPDATE router.agents SET status = 'away'")
    waiting = await router.open_with(config, "Refund please", {})
    assert (await router.task(waiting)).state == "queued"
    await router.execute("UPDATE router.agents SET status = 'online', active_count = 3, loads = '{0,3,0,0}'")
    # The novice is less loaded, and idle longer: least loaded would choose them.
    await router.execute(
        "UPDATE router.agents SET active_count = 2, loads = '{0,2,0,0}', last_assigned_at = NULL WHERE id = :a",
        a=novice,
    )
    assert await router.run(service.sweep) == 1
    assert (await router.task(waiting)).agent_id == expert


async def test_an_unanswered_assignment_goes_to_someone_else(router: Router) -> None:
    config = RoutingConfig(sticky_window=timedelta(0), no_answer_timeout=timedelta(minutes=2))
    slow = await router.agent("slow", capacity=2)
    silent = await router.open()
    answered = await router.open()
    assert {(await router.task(c)).agent_id for c in (silent, answered)} == {slow}
    helper = await router.agent("helper", capacity=2)

    # A reply by the assigned agent answers; one by somebody else does not.
    async with router.db.unit_of_work() as session:
        await service.on_replied(session, [_reply(answered, slow), _reply(silent, helper)])
    assert await router.run(lambda s, o: service.requeue_unanswered(s, o, config)) == 0  # not yet due
    await router.execute("UPDATE router.tasks SET assigned_at = now() - interval '3 minutes'")
    assert await router.run(lambda s, o: service.requeue_unanswered(s, o, config)) == 1
    task = await router.task(silent)
    assert (task.state, task.agent_id, task.declined_by) == ("assigned", helper, [slow])
    assert (await router.task(answered)).agent_id == slow
    assert await router.load(slow) == (1, [0, 1, 0, 0])
    [requeued] = await router.events("conversation.requeued")
    assert (requeued["agent_id"], requeued["reason"]) == (str(slow), "no_answer")
    # Off by default: nothing is requeued.
    await router.execute("UPDATE router.tasks SET assigned_at = now() - interval '3 hours'")
    assert await router.run(lambda s, o: service.requeue_unanswered(s, o, NO_STICKY)) == 0


def _reply(conversation_id: uuid.UUID, agent_id: uuid.UUID) -> MessageOutbound:
    return MessageOutbound(
        message_id=uuid.uuid4(),
        conversation_id=conversation_id,
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        agent_id=agent_id,
        text="on it",
        sent_at=utcnow(),
    )


async def test_escalation_widens_a_waiting_conversations_requirement_step_by_step(router: Router) -> None:
    steps = [EscalationStep(after_s=60, drop_optional=True), EscalationStep(after_s=120, relax_levels_by=2)]
    async with router.db.unit_of_work() as session:
        await agents.upsert_queue(session, "vip", QueueUpsert(escalation=steps))
    await _rule(
        router,
        "vip",
        1,
        {"customer": {"tier": "vip"}},
        {"queue": "vip", "required_skills": {"billing": 4}, "optional_skills": ["spanish"]},
    )
    config = RoutingConfig(sticky_window=timedelta(0), rules=RuleBook(0, "en"))
    agent = await router.agent("plain", skills=[{"skill": "billing", "level": 2}], capacity=3)
    cid = await router.open_with(config, "help", {"tier": "vip"})
    task = await router.task(cid)
    assert (task.state, dict(zip(task.required_skills, task.min_levels, strict=True))) == (
        "queued",
        {"billing": 4, "spanish": 1},
    )
    assert await router.run(service.escalate) == 0  # not yet due

    async def waited(seconds: int) -> None:
        await router.execute(
            "UPDATE router.tasks SET enqueued_at = now() - make_interval(secs => :s) WHERE conversation_id = :c",
            s=seconds,
            c=cid,
        )

    await waited(61)
    assert await router.run(service.escalate) == 1
    task = await router.task(cid)
    assert (task.state, task.escalation_step, task.required_skills, task.min_levels) == (
        "queued",
        1,
        ["billing"],
        [4],
    )
    assert await router.run(service.escalate) == 0  # each step once
    await waited(121)
    assert await router.run(service.escalate) == 1
    task = await router.task(cid)
    # Level 2 now suffices, and the escalation routed it at once.
    assert (task.escalation_step, task.min_levels, task.agent_id) == (2, [2], agent)
    escalated = await router.events("conversation.escalated")
    assert [(e["step"], e["required_skills"]) for e in escalated] == [
        (1, {"billing": 4}),
        (2, {"billing": 2}),
    ]


async def test_when_the_sticky_agent_cannot_take_it_the_queues_policy_still_chooses(router: Router) -> None:
    async with router.db.unit_of_work() as session:
        await agents.upsert_queue(session, "experts", QueueUpsert(policy=Policy.MOST_SKILLED))
    await _rule(
        router,
        "refunds",
        1,
        {"keywords": ["refund"]},
        {"queue": "experts", "required_skills": {"billing": 3}},
    )
    config = RoutingConfig(sticky_window=timedelta(hours=1), rules=RuleBook(0, "en"))
    customer = uuid.uuid4()
    previous = await router.agent("previous", capacity=5)
    await router.open(customer=customer, config=config)  # no rule matches: the previous agent takes it
    # The previous agent is online with room but lacks billing 3; an expert (busier) and a novice remain.
    expert = await router.agent("expert", skills=[{"skill": "billing", "level": 5}], capacity=4)
    await router.execute(
        "UPDATE router.agents SET active_count = 3, loads = '{0,3,0,0}' WHERE id = :a", a=expert
    )
    await router.agent("fair", skills=[{"skill": "billing", "level": 3}], capacity=4)
    event = ConversationOpened(
        conversation_id=uuid.uuid4(),
        customer_id=customer,
        channel=Channel.API,
        required_skills=[],
        priority=0,
        opened_at=utcnow(),
        text="a refund please",
    )
    # Another conversation in the same batch, so the candidate fetch brings more than the best one.
    other = event.model_copy(
        update={
            "conversation_id": uuid.uuid4(),
            "customer_id": uuid.uuid4(),
            "text": "hello",
            "opened_at": utcnow(),
        }
    )
    async with router.db.unit_of_work() as session:
        await service.on_opened(
            session, router.outbox, [(EventEnvelope.wrap(e, producer="t"), e) for e in (event, other)], config
        )
    task = await router.task(event.conversation_id)
    assert (task.queue, task.agent_id) == ("experts", expert)
    assert previous != expert
