"""The invariants checked after each fault scenario: pure functions of what was sent and what PostgreSQL
and the broker hold once the system is quiescent (gathered by ``faults.probe``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from switchboard_devstack.faults.load import Outcome

RSS_BOUND_MIB = 200.0

# metrics' event_counts compared with what the tables say happened
COUNTED = (
    "message.received",
    "conversation.message_added",
    "conversation.opened",
    "conversation.assigned",
    "conversation.resolved",
)

INVARIANTS = ("acked", "stored_once", "assigned_once", "assigned", "capacity", "drained", "metrics", "rss")


@dataclass(frozen=True)
class Check:
    invariant: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class AgentLoad:
    agent_id: str
    capacity: int
    active_count: int
    open_tasks: int  # router.tasks in state 'assigned' for the agent


@dataclass
class Snapshot:
    """The state of the system once quiescent, as the checks need it."""

    # conversation.messages rows per acknowledged external id, and the message id stored for it
    stored_rows: Mapping[str, int] = field(default_factory=dict)
    stored_ids: Mapping[str, str] = field(default_factory=dict)
    conversations: int = 0
    resolved: int = 0
    messages: int = 0
    # conversation.assigned events in routing.events: conversation id -> distinct (event id, agent id)
    assigned_events: Mapping[str, set[tuple[str, str]]] = field(default_factory=dict)
    conversation_ids: frozenset[str] = frozenset()
    tasks_assigned_ever: int = 0  # router.tasks with an assigned_at
    missing_tasks: int = 0  # conversations the router has no task for
    queued_with_capacity: int = 0  # queued tasks an online agent with the skills had room for
    unrecorded: int = 0  # assigned by the router, not (or to another agent) in conversation.conversations
    unreleased: int = 0  # tasks still 'assigned' whose conversation is resolved
    agents: Sequence[AgentLoad] = ()
    outboxes: Mapping[str, int] = field(default_factory=dict)  # schema -> rows left
    dlq_records: Mapping[str, int] = field(default_factory=dict)  # DLQ topic -> records added in the scenario
    event_counts: Mapping[str, int] = field(default_factory=dict)  # metrics.event_counts
    facts: Mapping[str, int] = field(default_factory=dict)  # metrics.conversation_facts columns set
    facts_agent_mismatch: int = 0  # facts whose agent differs from the router's
    max_rss_mib: Mapping[str, float] = field(default_factory=dict)  # instance -> max VmRSS in the scenario
    # conversation id -> times it was reopened (a resolved conversation the customer wrote to again soon;
    # empty where the schema has no reopening): each reopening starts a new period to assign and resolve
    reopens: Mapping[str, int] = field(default_factory=dict)
    ever_resolved: int | None = None  # conversations resolved at least once (None: = resolved, no reopening)


def truth(s: Snapshot) -> dict[str, int]:
    """What metrics should have counted, from the tables of the services that did the work."""
    return {
        "message.received": s.messages,
        "conversation.message_added": s.messages,
        "conversation.opened": s.conversations,
        "conversation.assigned": s.tasks_assigned_ever,
        # metrics counts natural keys: a conversation's resolution once, however often it reopened
        "conversation.resolved": _ever_resolved(s),
    }


def _ever_resolved(s: Snapshot) -> int:
    return s.resolved if s.ever_resolved is None else s.ever_resolved


def check_acked(outcomes: Sequence[Outcome]) -> Check:
    """Every message a provider sent is acknowledged (2xx) in the end, the retries included."""
    finals = Counter("gave up" if o.status is None else str(o.status) for o in outcomes if not o.acked)
    failures: Counter[str] = Counter()
    for o in outcomes:
        failures.update(o.failures)
    acked = sum(o.acked for o in outcomes)
    retried = sum(1 for o in outcomes if o.attempts > 1)
    detail = f"{acked}/{len(outcomes)} acked, {retried} retried"
    if failures:
        detail += " (" + ", ".join(f"{k}x{v}" for k, v in sorted(failures.items())) + ")"
    if finals:
        detail += "; not acked: " + ", ".join(f"{k}x{v}" for k, v in sorted(finals.items()))
    return Check("acked", acked == len(outcomes), detail)


def check_stored_once(outcomes: Sequence[Outcome], s: Snapshot) -> Check:
    """Every acknowledged message is in conversation.messages exactly once, under the id ingest answered."""
    acked = {o.external_id: o.message_id for o in outcomes if o.acked}
    missing = [e for e in acked if s.stored_rows.get(e, 0) == 0]
    doubled = [e for e in acked if s.stored_rows.get(e, 0) > 1]
    other_id = [e for e, m in acked.items() if e in s.stored_ids and s.stored_ids[e] != m]
    ok = not (missing or doubled or other_id)
    detail = f"{len(acked) - len(missing)}/{len(acked)} stored, {len(missing)} missing, {len(doubled)} twice"
    if other_id:
        detail += f", {len(other_id)} under another id"
    if missing:
        detail += f" (e.g. {', '.join(sorted(missing)[:3])})"
    return Check("stored_once", ok, detail)


def check_assigned_once(s: Snapshot) -> Check:
    """No conversation was assigned twice in one open period: at most one conversation.assigned event (by
    event id; the same event republished is one assignment) per conversation and reopening."""
    twice = {
        c: e
        for c, e in s.assigned_events.items()
        if c in s.conversation_ids and len(e) > 1 + s.reopens.get(c, 0)
    }
    other_agent = sum(1 for e in twice.values() if len({agent for _, agent in e}) > 1)
    assigned = sum(1 for c, e in s.assigned_events.items() if c in s.conversation_ids and e)
    detail = f"{assigned} assigned, {len(twice)} more than once ({other_agent} to another agent)"
    return Check("assigned_once", not twice, detail)


def check_assigned(s: Snapshot) -> Check:
    """Every conversation reached the router and was assigned while an eligible agent had room, and the
    conversation service recorded the router's choice."""
    ok = s.missing_tasks == 0 and s.queued_with_capacity == 0 and s.unrecorded == 0
    detail = (
        f"{s.conversations} conversations, {s.tasks_assigned_ever} assigned, "
        f"{s.missing_tasks} unknown to the router, {s.queued_with_capacity} queued despite capacity, "
        f"{s.unrecorded} not recorded"
    )
    return Check("assigned", ok, detail)


def check_capacity(s: Snapshot) -> Check:
    """No agent over capacity; each agent's active count equals their open tasks; resolving released."""
    over = [a for a in s.agents if a.active_count > a.capacity]
    drift = [a for a in s.agents if a.active_count != a.open_tasks]
    ok = not over and not drift and s.unreleased == 0
    active = sum(a.active_count for a in s.agents)
    detail = (
        f"{len(s.agents)} agents, {active} active, {len(over)} over capacity, {len(drift)} count≠open tasks, "
        f"{s.unreleased} unreleased"
    )
    if drift:
        a = drift[0]
        detail += f" (e.g. {a.agent_id[:8]}: active {a.active_count}, open {a.open_tasks})"
    return Check("capacity", ok, detail)


def check_drained(s: Snapshot, poison_sent: int = 0) -> Check:
    """Every outbox is empty and no record went to a DLQ (beyond the poison a scenario sent on purpose)."""
    left = {k: v for k, v in s.outboxes.items() if v}
    dead = sum(s.dlq_records.values())
    ok = not left and dead == poison_sent
    detail = "outboxes " + (", ".join(f"{k} {v}" for k, v in sorted(left.items())) if left else "empty")
    detail += f", DLQ +{dead}"
    if dead:
        detail += " (" + ", ".join(f"{k} {v}" for k, v in sorted(s.dlq_records.items()) if v) + ")"
    return Check("drained", ok, detail)


def check_metrics(s: Snapshot) -> Check:
    """metrics' counters and conversation facts equal what the other services' tables say happened."""
    expected = truth(s)
    wrong = {k: (s.event_counts.get(k, 0), v) for k, v in expected.items() if s.event_counts.get(k, 0) != v}
    # a reopened conversation keeps the resolved_at of its first resolution in the facts (first wins)
    ever_resolved = _ever_resolved(s)
    fact_truth = {
        "opened_at": s.conversations,
        "assigned_at": s.tasks_assigned_ever,
        "resolved_at": ever_resolved,
    }
    wrong_facts = {k: (s.facts.get(k, 0), v) for k, v in fact_truth.items() if s.facts.get(k, 0) != v}
    ok = not wrong and not wrong_facts and s.facts_agent_mismatch == 0
    if ok:
        detail = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in expected.items())
    else:
        parts = [f"{k} {got} vs {want}" for k, (got, want) in wrong.items()]
        parts += [f"facts.{k} {got} vs {want}" for k, (got, want) in wrong_facts.items()]
        if s.facts_agent_mismatch:
            parts.append(f"{s.facts_agent_mismatch} facts with another agent")
        detail = "metrics vs truth: " + ", ".join(parts)
    return Check("metrics", ok, detail)


def check_rss(s: Snapshot, bound_mib: float = RSS_BOUND_MIB) -> Check:
    """Every service process stayed under ``bound_mib`` of resident memory throughout the scenario."""
    over = {k: v for k, v in s.max_rss_mib.items() if v > bound_mib}
    top = max(s.max_rss_mib.items(), key=lambda kv: kv[1], default=("-", 0.0))
    detail = f"max {top[1]:.0f} MiB ({top[0]}), bound {bound_mib:.0f}"
    if over:
        detail += "; over: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(over.items()))
    return Check("rss", bool(s.max_rss_mib) and not over, detail)


def evaluate(outcomes: Sequence[Outcome], s: Snapshot, *, poison_sent: int = 0) -> list[Check]:
    """Every invariant, in the table's order."""
    return [
        check_acked(outcomes),
        check_stored_once(outcomes, s),
        check_assigned_once(s),
        check_assigned(s),
        check_capacity(s),
        check_drained(s, poison_sent),
        check_metrics(s),
        check_rss(s),
    ]


def settled(outcomes: Sequence[Outcome], s: Snapshot) -> bool:
    """Has the work the load caused all arrived? (The checks that converge as the system catches up;
    once they hold, waiting longer changes nothing.)"""
    return all(
        c.ok for c in (check_stored_once(outcomes, s), check_assigned(s), check_capacity(s), check_metrics(s))
    ) and not any(s.outboxes.values())


def progress_key(s: Snapshot) -> tuple[object, ...]:
    """Changes whenever the system makes progress on the work left; equal keys mean nothing moved."""
    return (
        sum(s.stored_rows.values()),
        s.messages,
        s.conversations,
        s.tasks_assigned_ever,
        s.resolved,
        tuple(sorted(s.outboxes.items())),
        tuple(sorted(s.event_counts.items())),
        tuple(sorted(s.facts.items())),
        sum(a.active_count for a in s.agents),
    )
