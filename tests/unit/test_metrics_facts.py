"""The pure parts of metrics: what each event tells and of which natural key, how a call's facts merge,
which columns become known against the stored rows (and so what counts), and the KPI formulas."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard_common.events import (
    AgentCapacityChanged,
    AgentStatus,
    AgentStatusChanged,
    Channel,
    ConversationAssigned,
    ConversationEscalated,
    ConversationMessageAdded,
    ConversationOfferDeclined,
    ConversationOffered,
    ConversationOfferTimedOut,
    ConversationOpened,
    ConversationQueued,
    ConversationReopened,
    ConversationRequeued,
    ConversationResolved,
    ConversationSlaBreached,
    ConversationTagsChanged,
    CustomerIdentity,
    DeliveryState,
    DeliveryStatusChanged,
    Direction,
    IdentityKind,
    MessageOutbound,
    MessageReceived,
    Payload,
    RequeueReason,
    utcnow,
)
from switchboard_metrics.kpis.facts import (
    Batch,
    ConversationFacts,
    DeliveryFacts,
    Handoff,
    HandoffKind,
    MessageFacts,
    Occurrence,
    OccurrenceKind,
    Reopen,
    Retag,
    StatusChange,
    counted_types,
    facts_of,
    merge,
    news,
    news_of,
    stored,
    then,
)

T0 = utcnow()
STATUS = AgentStatusChanged.event_type
CID = uuid.uuid4()
MID = uuid.uuid4()
AGENT = uuid.uuid4()


def _opened(at: datetime = T0, cid: uuid.UUID = CID) -> ConversationOpened:
    return ConversationOpened(
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=Channel.SMS,
        required_skills=[],
        priority=1,
        opened_at=at,
    )


def _queued(at: datetime = T0, cid: uuid.UUID = CID) -> ConversationQueued:
    return ConversationQueued(conversation_id=cid, required_skills=[], priority=0, queued_at=at)


def _assigned(at: datetime = T0, cid: uuid.UUID = CID, agent: uuid.UUID = AGENT) -> ConversationAssigned:
    return ConversationAssigned(conversation_id=cid, agent_id=agent, queued_at=T0, assigned_at=at)


def _resolved(at: datetime = T0, cid: uuid.UUID = CID) -> ConversationResolved:
    return ConversationResolved(conversation_id=cid, agent_id=None, resolved_at=at)


def _reopened(at: datetime = T0, cid: uuid.UUID = CID) -> ConversationReopened:
    return ConversationReopened(
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=Channel.EMAIL,
        required_skills=[],
        priority=0,
        reopened_at=at,
        previous_agent_id=AGENT,
    )


def _received(mid: uuid.UUID = MID, at: datetime = T0) -> MessageReceived:
    return MessageReceived(
        message_id=mid,
        channel=Channel.WHATSAPP,
        external_id="wamid-1",
        sender=CustomerIdentity(kind=IdentityKind.PHONE, value="+15550001111"),
        text="hi",
        sent_at=T0 - timedelta(seconds=1),
        received_at=at,
    )


def _added(
    mid: uuid.UUID = MID, cid: uuid.UUID = CID, direction: Direction = Direction.INBOUND
) -> ConversationMessageAdded:
    return ConversationMessageAdded(
        conversation_id=cid,
        message_id=mid,
        channel=Channel.WHATSAPP,
        direction=direction,
        sent_at=T0 - timedelta(seconds=1),
    )


def _outbound(mid: uuid.UUID = MID, cid: uuid.UUID = CID) -> MessageOutbound:
    return MessageOutbound(
        message_id=mid,
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=Channel.SMS,
        agent_id=AGENT,
        text="on its way",
        sent_at=T0,
    )


def _requeued(at: datetime = T0) -> ConversationRequeued:
    return ConversationRequeued(
        conversation_id=CID, agent_id=AGENT, reason=RequeueReason.AGENT_OFFLINE, queued_at=T0, requeued_at=at
    )


def _status(at: datetime = T0, status: AgentStatus = AgentStatus.AWAY) -> AgentStatusChanged:
    return AgentStatusChanged(
        agent_id=AGENT, status=status, previous_status=AgentStatus.ONLINE, changed_at=at
    )


# --- what each event tells ---------------------------------------------------------------------------------


def test_each_event_tells_its_natural_key_and_columns() -> None:
    sent = T0 - timedelta(seconds=1)
    assert facts_of(_received()) == [
        (MID, MessageFacts(channel="whatsapp", direction="inbound", sent_at=sent, received_at=T0))
    ]
    assert facts_of(_added(direction=Direction.OUTBOUND)) == [
        (MID, MessageFacts(channel="whatsapp", direction="outbound", conversation_id=CID, sent_at=sent))
    ]
    # A customer's message also tells a channel they used in the conversation.
    assert facts_of(_added(direction=Direction.INBOUND)) == [
        (MID, MessageFacts(channel="whatsapp", direction="inbound", conversation_id=CID, sent_at=sent)),
        (CID, ConversationFacts(channels=("whatsapp",))),
    ]
    opened = _opened()
    assert facts_of(opened) == [
        (
            CID,
            ConversationFacts(
                channel="sms",
                opened_at=T0,
                customer_id=opened.customer_id,
                tags=(),
                tags_at=T0,
                channels=("sms",),
            ),
        )
    ]
    assert facts_of(_queued()) == [(CID, ConversationFacts(queued=True, queued_at=T0))]
    # An assignment also tells when the conversation was queued (no queued event when assigned at once),
    # but not that a conversation.queued event was seen; and it is a handoff to the agent.
    assert facts_of(_assigned()) == [
        (CID, ConversationFacts(agent_id=AGENT, queued_at=T0, assigned_at=T0)),
        Handoff(CID, T0, HandoffKind.ASSIGNED, AGENT),
    ]
    assert facts_of(_resolved()) == [(CID, ConversationFacts(resolved_at=T0, last_resolved_at=T0))]
    assert facts_of(_status()) == [StatusChange(AGENT, T0, "away")]
    with_capacity = _status().model_copy(update={"capacity": 5})
    assert facts_of(with_capacity) == [StatusChange(AGENT, T0, "away", 5)]
    assert facts_of(_reopened()) == [
        Reopen(CID, T0),
        (CID, ConversationFacts(first_reopened_at=T0, last_reopened_at=T0)),
    ]
    assert facts_of(_requeued()) == [Handoff(CID, T0, HandoffKind.REQUEUED, AGENT)]


def _resized(at: datetime = T0, capacity: int = 7) -> AgentCapacityChanged:
    return AgentCapacityChanged(
        agent_id=AGENT, capacity=capacity, previous_capacity=5, status=AgentStatus.ONLINE, changed_at=at
    )


def test_a_capacity_change_is_a_row_of_the_agents_timeline_with_the_status_unchanged() -> None:
    told = merge([_resized(), _status(T0 + timedelta(minutes=1))])
    assert told.statuses == {
        (AGENT, T0): ("online", 7, AgentCapacityChanged.event_type),
        (AGENT, T0 + timedelta(minutes=1)): ("away", None, STATUS),
    }


def _offered(at: datetime = T0) -> ConversationOffered:
    return ConversationOffered(
        conversation_id=CID,
        agent_id=AGENT,
        queued_at=T0,
        offered_at=at,
        expires_at=at + timedelta(seconds=30),
    )


def _offer_ended(
    kind: type[ConversationOfferDeclined | ConversationOfferTimedOut], at: datetime = T0
) -> Payload:
    return kind(conversation_id=CID, agent_id=AGENT, queued_at=T0, offered_at=T0, ended_at=at)


def _escalated(at: datetime = T0) -> ConversationEscalated:
    return ConversationEscalated(
        conversation_id=CID,
        queue="vip",
        step=1,
        required_skills={"billing": 2},
        queued_at=T0,
        escalated_at=at,
    )


def _breached(at: datetime = T0) -> ConversationSlaBreached:
    return ConversationSlaBreached(
        conversation_id=CID, queue="vip", sla_target_s=60, queued_at=T0, breached_at=at, priority=3
    )


def test_offers_escalations_and_breaches_are_routing_occurrences_by_agent_or_queue() -> None:
    later = T0 + timedelta(seconds=20)
    accepted = ConversationAssigned(
        conversation_id=CID, agent_id=AGENT, queued_at=T0, offered_at=T0, assigned_at=later
    )
    told = merge(
        [
            _offered(),
            _offered(),  # redelivered: one row
            _offer_ended(ConversationOfferDeclined, later),
            _offer_ended(ConversationOfferTimedOut, later),
            accepted,
            _assigned(),  # assigned without an offer: no acceptance
            _escalated(),
            _breached(later),
        ]
    )
    assert sorted(told.occurrences) == sorted(
        [
            Occurrence(OccurrenceKind.OFFERED, CID, T0, AGENT),
            Occurrence(OccurrenceKind.OFFER_DECLINED, CID, later, AGENT),
            Occurrence(OccurrenceKind.OFFER_TIMED_OUT, CID, later, AGENT),
            Occurrence(OccurrenceKind.OFFER_ACCEPTED, CID, later, AGENT),
            Occurrence(OccurrenceKind.ESCALATED, CID, T0, queue="vip"),
            Occurrence(OccurrenceKind.SLA_BREACHED, CID, later, queue="vip"),
        ]
    )


def test_every_registered_event_type_has_a_natural_key() -> None:
    examples: list[Payload] = [
        _received(),
        _added(),
        _opened(),
        _queued(),
        _assigned(),
        _resolved(),
        _status(),
        _resized(),
        _offered(),
        _offer_ended(ConversationOfferDeclined),
        _offer_ended(ConversationOfferTimedOut),
        _escalated(),
        _breached(),
        _reopened(),
        _outbound(),
        _requeued(),
        _report(DeliveryState.SENT),
        _retagged(["why:refund"]),
    ]
    assert {type(p) for p in examples} == set(counted_types())
    assert all(facts_of(p) is not None for p in examples)


def test_an_agents_reply_tells_an_outbound_message_and_the_first_human_reply() -> None:
    reply = _outbound()
    message = MessageFacts(
        channel="sms",
        direction="outbound",
        conversation_id=CID,
        sent_at=T0,
        agent_id=reply.agent_id,
        automated=False,
    )
    assert facts_of(reply) == [(MID, message), (CID, ConversationFacts(first_reply_at=T0))]
    # An automatic reply is a message, never a human response.
    automated = reply.model_copy(update={"automated": True})
    assert facts_of(automated) == [(MID, replace(message, automated=True))]


def test_a_reply_counts_as_message_outbound_once() -> None:
    reply, other = uuid.uuid4(), uuid.uuid4()
    first = news_of(merge([_outbound(reply), _outbound(reply), _added(other)]), {}, {})
    assert first.counts == Counter({"message.outbound": 1, "conversation.message_added": 1})
    # Delivered again, against the row the first call left: nothing new.
    stored = {reply: first.messages[reply], other: first.messages[other]}
    assert +news_of(merge([_outbound(reply)]), stored, {}).counts == Counter()


def test_a_message_told_by_both_announcing_events_counts_the_first_once() -> None:
    """No producer announces one message both ways; were it so, the first to tell its conversation (the
    value the row keeps) counts, and the message still counts once."""
    assert news_of(merge([_outbound(), _added()]), {}, {}).counts == Counter({"message.outbound": 1})
    assert news_of(merge([_added(), _outbound()]), {}, {}).counts == Counter(
        {"conversation.message_added": 1}
    )


# --- merging a call ----------------------------------------------------------------------------------------


def test_the_first_known_value_of_a_column_wins() -> None:
    later = T0 + timedelta(seconds=5)
    assert then(ConversationFacts(opened_at=T0), ConversationFacts(opened_at=later, resolved_at=later)) == (
        ConversationFacts(opened_at=T0, resolved_at=later)
    )
    assert then(MessageFacts(), MessageFacts(channel="sms")) == MessageFacts(channel="sms")
    other = uuid.uuid4()
    first, second, third = _opened(later), _opened(T0), _opened(T0, other)
    merged = merge([_resolved(later), first, second, third])
    assert merged.conversations == {
        CID: ConversationFacts(
            channel="sms",
            opened_at=later,
            resolved_at=later,
            last_resolved_at=later,
            customer_id=first.customer_id,
            tags=(),
            tags_at=later,
            channels=("sms",),
        ),
        other: ConversationFacts(
            channel="sms", opened_at=T0, customer_id=third.customer_id, tags=(), tags_at=T0, channels=("sms",)
        ),
    }
    assert merged.messages == {}
    assert merged.statuses == {}


def test_a_call_merges_one_entry_per_natural_key() -> None:
    later = T0 + timedelta(seconds=5)
    merged = merge(
        [
            _added(),
            _received(),
            _received(at=later),  # the same message again: the first value stays
            _status(T0, AgentStatus.AWAY),
            _status(T0, AgentStatus.OFFLINE),  # the same change again: the first status stays
            _status(later, AgentStatus.ONLINE),
            _queued(),
            _assigned(),
        ]
    )
    sent = T0 - timedelta(seconds=1)
    assert merged == Batch(
        messages={
            MID: MessageFacts(
                channel="whatsapp", direction="inbound", conversation_id=CID, sent_at=sent, received_at=T0
            )
        },
        conversations={
            CID: ConversationFacts(
                agent_id=AGENT, queued=True, queued_at=T0, assigned_at=T0, channels=("whatsapp",)
            )
        },
        statuses={(AGENT, T0): ("away", None, STATUS), (AGENT, later): ("online", None, STATUS)},
        handoffs={Handoff(CID, T0, HandoffKind.ASSIGNED, AGENT)},
    )


def test_a_call_keeps_each_reopen_once_and_every_reopen_of_a_conversation() -> None:
    later = T0 + timedelta(hours=1)
    merged = merge([_reopened(T0), _resolved(T0), _reopened(T0), _reopened(later)])
    # Reopens are their own rows, and tell the conversation's first and last reopening.
    assert merged.reopens == {Reopen(CID, T0), Reopen(CID, later)}
    assert merged.conversations == {
        CID: ConversationFacts(
            resolved_at=T0, last_resolved_at=T0, first_reopened_at=T0, last_reopened_at=later
        )
    }
    assert news_of(merged, {}, {}).counts == Counter({"conversation.resolved": 1})


# --- what is news ------------------------------------------------------------------------------------------


def test_news_is_what_was_unknown_and_becomes_known() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    later = T0 + timedelta(seconds=3)
    before = {
        a: ConversationFacts(opened_at=T0, channel="sms"),
        b: ConversationFacts(opened_at=T0, assigned_at=T0),
        c: ConversationFacts(),  # claimed but empty: as good as no row
    }
    incoming = {
        a: ConversationFacts(opened_at=later, channel="email", resolved_at=later),  # a stored value stays
        b: ConversationFacts(opened_at=T0, assigned_at=later),  # nothing new
        c: ConversationFacts(queued=True, queued_at=T0),
        CID: ConversationFacts(opened_at=T0),  # no row at all
    }
    assert news(before, incoming) == {
        a: ConversationFacts(resolved_at=later),
        c: ConversationFacts(queued=True, queued_at=T0),
        CID: ConversationFacts(opened_at=T0),
    }


def test_each_event_type_counts_the_keys_whose_column_becomes_known() -> None:
    m2 = uuid.uuid4()
    c2 = uuid.uuid4()
    batch = merge(
        [
            _received(),
            _added(),
            _received(m2),
            _opened(),
            _queued(),
            _assigned(),
            _assigned(cid=c2),
            _resolved(),
        ]
    )
    # MID was received before, c2 queued_at is known (an assignment told it), CID is new.
    stored_messages = {MID: MessageFacts(received_at=T0, channel="whatsapp")}
    stored_conversations = {c2: ConversationFacts(queued_at=T0, opened_at=T0)}
    result = news_of(batch, stored_messages, stored_conversations)
    assert result.counts == Counter(
        {
            "message.received": 1,  # m2 only
            "conversation.message_added": 1,
            "conversation.opened": 1,
            "conversation.queued": 1,
            "conversation.assigned": 2,
            "conversation.resolved": 1,
        }
    )
    assert result.conversations[c2] == ConversationFacts(agent_id=AGENT, assigned_at=T0)
    # The same batch against the rows it leaves behind: nothing new, nothing counted.
    after_messages = {k: then(stored_messages.get(k, MessageFacts()), v) for k, v in batch.messages.items()}
    after_conversations = {
        k: then(stored_conversations.get(k, ConversationFacts()), v) for k, v in batch.conversations.items()
    }
    replay = news_of(batch, after_messages, after_conversations)
    assert (replay.messages, replay.conversations, +replay.counts) == ({}, {}, Counter())


def test_an_assignment_does_not_count_as_queued() -> None:
    counted = news_of(merge([_assigned()]), {}, {}).counts
    assert counted == Counter({"conversation.assigned": 1})
    # conversation.queued after the assignment told queued_at still counts: the queued column is new.
    stored = {CID: ConversationFacts(agent_id=AGENT, queued_at=T0, assigned_at=T0)}
    assert news_of(merge([_queued()]), {}, stored).counts == Counter({"conversation.queued": 1})


# Events about a few keys, so that repeats are frequent; each call is a slice of the stream.
_CIDS = [uuid.uuid4() for _ in range(3)]
_MIDS = [uuid.uuid4() for _ in range(3)]
_TIMES = [T0 + timedelta(seconds=n) for n in range(3)]
_REPLY_MIDS = [uuid.uuid4() for _ in range(3)]  # a reply is never a received message
_events = st.one_of(
    st.builds(_outbound, st.sampled_from(_REPLY_MIDS), st.sampled_from(_CIDS)),
    st.builds(_received, st.sampled_from(_MIDS), st.sampled_from(_TIMES)),
    st.builds(_added, st.sampled_from(_MIDS), st.sampled_from(_CIDS)),
    st.builds(_opened, st.sampled_from(_TIMES), st.sampled_from(_CIDS)),
    st.builds(_queued, st.sampled_from(_TIMES), st.sampled_from(_CIDS)),
    st.builds(_assigned, st.sampled_from(_TIMES), st.sampled_from(_CIDS)),
    st.builds(_resolved, st.sampled_from(_TIMES), st.sampled_from(_CIDS)),
)


def _natural_key(payload: Payload) -> object:
    told = facts_of(payload)
    assert told is not None
    first = told[0]
    assert not isinstance(first, StatusChange | Reopen | Retag | Handoff | Occurrence)
    return first[0]


@settings(max_examples=200, deadline=None)
@given(st.lists(_events, max_size=30), st.lists(st.integers(min_value=1, max_value=8), min_size=1))
def test_calls_in_sequence_count_each_natural_key_once(stream: list[Payload], cuts: list[int]) -> None:
    """However a stream (with repeats) is cut into calls, against the rows the earlier calls left, each
    event type counts its distinct natural keys, and the rows are the stream's merged facts."""
    messages: dict[uuid.UUID, MessageFacts] = {}
    conversations: dict[uuid.UUID, ConversationFacts] = {}
    total: Counter[str] = Counter()
    start, sizes = 0, iter(cuts * (len(stream) + 1))
    while start < len(stream):
        end = start + next(sizes)
        call, start = stream[start:end], end
        result = news_of(merge(call), messages, conversations)
        for key, new in result.messages.items():
            messages[key] = then(messages.get(key, MessageFacts()), new)
        for key, cnew in result.conversations.items():
            conversations[key] = then(conversations.get(key, ConversationFacts()), cnew)
        total += result.counts

    distinct: dict[str, set[object]] = {}
    for payload in stream:
        distinct.setdefault(payload.event_type, set()).add(_natural_key(payload))
    assert total == Counter({event_type: len(keys) for event_type, keys in distinct.items()})
    whole = merge(stream)
    assert (messages, conversations) == (whole.messages, whole.conversations)


def test_times_without_a_zone_are_utc() -> None:
    """A client may send a message's time without a zone; it must still compare with the services' times
    (a reply time subtracts one from the other)."""
    from switchboard_metrics.kpis.observe import Metric, cells_of

    naive = datetime(2026, 11, 23, 10, 0, 0)
    told = merge(
        [
            ConversationMessageAdded(
                conversation_id=CID,
                message_id=MID,
                channel=Channel.SMS,
                direction=Direction.INBOUND,
                sent_at=naive,
            )
        ]
    )
    customer = told.messages[MID]
    assert customer.sent_at == naive.replace(tzinfo=UTC) and customer.sent_at.tzinfo is UTC
    agent_reply = MessageFacts(
        channel="sms",
        direction="outbound",
        conversation_id=CID,
        sent_at=naive.replace(tzinfo=UTC) + timedelta(seconds=30),
        agent_id=AGENT,
        automated=False,
    )
    cells = cells_of(ConversationFacts(channel="sms"), [customer, agent_reply])
    [reply] = [(c, t) for c, t in cells.items() if c.metric == Metric.REPLY]
    assert reply[1].count == 1
    assert reply[1].seconds == 30.0


# --- delivery reports --------------------------------------------------------------------------------------


def _report(
    status: DeliveryState,
    at: datetime = T0,
    external_id: str | None = "wamid.1",
    message_id: uuid.UUID | None = MID,
) -> DeliveryStatusChanged:
    return DeliveryStatusChanged(
        channel=Channel.WHATSAPP, message_id=message_id, external_id=external_id, status=status, at=at
    )


def test_a_delivery_report_tells_its_state_under_the_providers_id_else_ours() -> None:
    assert facts_of(_report(DeliveryState.SENT)) == [
        (("whatsapp", "wamid.1"), DeliveryFacts(message_id=MID, accepted_at=T0))
    ]
    # A callback names only the provider's id; a send given up on only ours.
    assert facts_of(_report(DeliveryState.READ, message_id=None)) == [
        (("whatsapp", "wamid.1"), DeliveryFacts(read_at=T0))
    ]
    assert facts_of(_report(DeliveryState.FAILED, external_id=None)) == [
        (("whatsapp", str(MID)), DeliveryFacts(message_id=MID, failed_at=T0))
    ]
    # Queued is not news to metrics, and a report about no message is nothing.
    assert facts_of(_report(DeliveryState.QUEUED)) == []
    assert facts_of(_report(DeliveryState.SENT, external_id=None, message_id=None)) == []


def test_delivery_states_count_once_each_in_any_order_and_a_late_delivered_keeps_the_read() -> None:
    later = T0 + timedelta(seconds=4)
    read_first = news_of(merge([_report(DeliveryState.READ, later, message_id=None)]), {}, {})
    key = ("whatsapp", "wamid.1")
    assert read_first.counts == Counter({"delivery.status_changed": 1})
    stored = {key: read_first.deliveries[key]}
    late = news_of(
        merge([_report(DeliveryState.DELIVERED, T0, message_id=None), _report(DeliveryState.READ, later)]),
        {},
        {},
        stored,
    )
    # The read again is nothing new; the delivered is, and the read stays.
    assert late.counts == Counter({"delivery.status_changed": 1})
    assert then(stored[key], late.deliveries[key]) == DeliveryFacts(
        message_id=MID, delivered_at=T0, read_at=later
    )
    replayed = news_of(
        merge([_report(DeliveryState.DELIVERED, T0, message_id=None)]),
        {},
        {},
        {key: then(stored[key], late.deliveries[key])},
    )
    assert replayed.deliveries == {}
    assert +replayed.counts == Counter()


# --- tag changes -------------------------------------------------------------------------------------------


def _retagged(tags: list[str], at: datetime = T0, cid: uuid.UUID = CID) -> ConversationTagsChanged:
    return ConversationTagsChanged(
        conversation_id=cid, tags=tags, added=tags, removed=[], agent_id=AGENT, changed_at=at
    )


def test_a_tag_change_tells_the_tags_now_and_is_a_change_of_its_own() -> None:
    assert facts_of(_retagged(["why:refund", "what:billing", "why:refund"])) == [
        Retag(CID, T0),
        (CID, ConversationFacts(tags=("what:billing", "why:refund"), tags_at=T0)),
    ]


@given(st.permutations(range(4)), st.integers(min_value=1, max_value=3))
def test_the_latest_tags_by_event_time_win_in_any_order_and_repeat(order: list[int], repeats: int) -> None:
    """The opening's tags, two changes and a redelivered first change, applied in any order and any number
    of times, call by call: the tags of the latest change stay, and each change counts once."""
    opening = _opened()
    events: list[Payload] = [
        opening.model_copy(update={"tags": ["vip"]}),
        _retagged(["why:refund"], T0 + timedelta(seconds=5)),
        _retagged(["what:billing"], T0 + timedelta(seconds=9)),
        _retagged(["why:refund"], T0 + timedelta(seconds=5)),
    ]
    stored: dict[uuid.UUID, ConversationFacts] = {}
    retags: set[Retag] = set()
    for _ in range(repeats):
        for i in order:
            found = news_of(merge([events[i]]), {}, stored)
            for cid, facts in found.conversations.items():
                stored[cid] = then(stored.get(cid, ConversationFacts()), facts)
            retags |= merge([events[i]]).retags
    assert stored[CID].tags == ("what:billing",)
    assert stored[CID].tags_at == T0 + timedelta(seconds=9)
    assert retags == {Retag(CID, T0 + timedelta(seconds=5)), Retag(CID, T0 + timedelta(seconds=9))}


def test_a_tie_of_tag_changes_goes_to_the_greater_tags_whatever_the_order() -> None:
    a, b = _retagged(["a"]), _retagged(["b"])
    assert (
        merge([a, b]).conversations
        == merge([b, a]).conversations
        == {CID: ConversationFacts(tags=("b",), tags_at=T0)}
    )
    # Stored "b", told "a" at the same time: nothing new. Stored "a", told "b": the tags, with their time.
    assert news({CID: ConversationFacts(tags=("b",), tags_at=T0)}, merge([a]).conversations) == {}
    assert news({CID: ConversationFacts(tags=("a",), tags_at=T0)}, merge([b]).conversations) == {
        CID: ConversationFacts(tags=("b",), tags_at=T0)
    }


def test_a_stored_time_at_the_end_of_the_range_is_read_as_utc() -> None:
    # asyncpg reads timestamptz 'infinity' (or a time at the edge of Python's range) as a naive datetime.max.
    row = stored(MessageFacts, ["api", "inbound", CID, datetime.max, T0, None, None])
    assert row.sent_at == datetime.max.replace(tzinfo=UTC) and row.received_at == T0
    assert sorted([row.sent_at, T0]) == [T0, row.sent_at]  # compares with the services' aware times
