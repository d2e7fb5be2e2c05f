"""The pure parts of metrics: which facts each event sets, how a batch's facts merge, which deliveries are
fresh, and the KPI formulas."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from switchboard_common.events import (
    AgentStatus,
    AgentStatusChanged,
    Channel,
    ConversationAssigned,
    ConversationOpened,
    ConversationQueued,
    ConversationResolved,
    EventEnvelope,
    Payload,
    utcnow,
)
from switchboard_common.kafka.consumer import Delivery
from switchboard_metrics.kpis.facts import Facts, facts_of, merge_facts
from switchboard_metrics.kpis.service import fresh_deliveries, kpi_snapshot, next_offsets_after

T0 = utcnow()
CID = uuid.uuid4()
AGENT = uuid.uuid4()


def _opened(at: datetime = T0) -> ConversationOpened:
    return ConversationOpened(
        conversation_id=CID,
        customer_id=uuid.uuid4(),
        channel=Channel.SMS,
        required_skills=[],
        priority=1,
        opened_at=at,
    )


def test_each_conversation_event_sets_its_columns_and_others_set_none() -> None:
    assert facts_of(_opened()) == (CID, Facts(channel="sms", opened_at=T0))
    queued = ConversationQueued(conversation_id=CID, required_skills=[], priority=0, queued_at=T0)
    assert facts_of(queued) == (CID, Facts(queued_at=T0))
    assigned = ConversationAssigned(conversation_id=CID, agent_id=AGENT, queued_at=T0, assigned_at=T0)
    # An assignment also tells when the conversation was queued (no queued event when assigned at once).
    assert facts_of(assigned) == (CID, Facts(agent_id=AGENT, queued_at=T0, assigned_at=T0))
    assert facts_of(ConversationResolved(conversation_id=CID, agent_id=AGENT, resolved_at=T0)) == (
        CID,
        Facts(resolved_at=T0),
    )
    status = AgentStatusChanged(
        agent_id=AGENT, status=AgentStatus.AWAY, previous_status=AgentStatus.ONLINE, changed_at=T0
    )
    assert facts_of(status) is None


def test_the_first_known_value_of_a_column_wins() -> None:
    later = T0 + timedelta(seconds=5)
    assert Facts(opened_at=T0).then(Facts(opened_at=later, resolved_at=later)) == Facts(
        opened_at=T0, resolved_at=later
    )
    assert Facts().then(Facts(channel="sms")) == Facts(channel="sms")
    other = uuid.uuid4()
    resolved = ConversationResolved(conversation_id=CID, agent_id=None, resolved_at=later)
    merged = merge_facts(
        [resolved, _opened(later), _opened(T0), _opened().model_copy(update={"conversation_id": other})]
    )
    assert merged == {
        CID: Facts(channel="sms", opened_at=later, resolved_at=later),
        other: Facts(channel="sms", opened_at=T0),
    }


def _delivery(payload: Payload, topic: str, partition: int, offset: int) -> Delivery[Payload]:
    return Delivery(EventEnvelope.wrap(payload, producer="test"), payload, topic, partition, offset)


def test_fresh_deliveries_are_at_or_above_the_stored_offset_and_each_counted_once() -> None:
    a = [_delivery(_opened(), "a", 0, n) for n in range(5)]
    b = [_delivery(_opened(), "b", 0, n) for n in range(2)]
    retried = Delivery(b[0].envelope, b[0].payload, "b", 0, 2)
    batch = [*a, *b, a[4], retried]
    assert fresh_deliveries(batch, {("a", 0): 3, ("b", 1): 9}) == [a[3], a[4], *b]
    assert next_offsets_after(fresh_deliveries(batch, {})) == {("a", 0): 5, ("b", 0): 2}


def test_kpi_snapshot() -> None:
    snapshot = kpi_snapshot(
        {"message.received": 3, "conversation.opened": 2, "agent.status_changed": 1},
        {"assigned": 2, "avg": 1.23456, "p50": 1, "p90": None, "p99": None, "max": 2},
        {"waiting": 1, "longest": 7.5},
    )
    assert snapshot.model_dump() == {
        "messages_received": 3,
        "conversations_opened": 2,
        "conversations_assigned": 0,
        "conversations_resolved": 0,
        "waiting_now": 1,
        "longest_wait_seconds": 7.5,
        "time_to_assign_seconds": {
            "count": 2,
            "avg": 1.2346,
            "p50": 1.0,
            "p90": None,
            "p99": None,
            "max": 2.0,
        },
        "events_by_type": {"message.received": 3, "conversation.opened": 2, "agent.status_changed": 1},
    }
