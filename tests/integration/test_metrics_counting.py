"""Metrics on the real database and broker: each event type counts its natural keys, so an event met again
(redelivered, replayed in a poll, republished by a relay at a new offset) counts nothing; facts fill in
any order; concurrent transactions on the same rows take turns and count each transition once; and a call
costs the same statements for one delivery or two hundred."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import event

from switchboard_common.db.database import Database
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
    EventEnvelope,
    IdentityKind,
    MessageOutbound,
    MessageReceived,
    Payload,
    RequeueReason,
    utcnow,
)
from switchboard_common.kafka.consumer import ConsumerRunner, Delivery
from switchboard_common.kafka.producer import EventPublisher
from switchboard_metrics.app import GROUP_ID
from switchboard_metrics.app import create_app as metrics_app
from switchboard_metrics.kpis.facts import CONVERSATION_COLUMNS, counted_types
from switchboard_metrics.kpis.service import record_batch
from tests.conftest import ADMIN_KEY, Settings
from tests.support import bearer, eventually, read_topic, serve

T0 = utcnow()


# --- events ------------------------------------------------------------------------------------------------


def opened(
    cid: uuid.UUID, at: datetime = T0, channel: Channel = Channel.API, tags: Sequence[str] = ()
) -> ConversationOpened:
    return ConversationOpened(
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=channel,
        required_skills=[],
        priority=0,
        opened_at=at,
        tags=list(tags),
    )


def queued(cid: uuid.UUID, at: datetime = T0, queue: str | None = None) -> ConversationQueued:
    return ConversationQueued(conversation_id=cid, required_skills=[], priority=0, queued_at=at, queue=queue)


def assigned(
    cid: uuid.UUID, agent_id: uuid.UUID, at: datetime, queued_at: datetime = T0, queue: str | None = None
) -> ConversationAssigned:
    return ConversationAssigned(
        conversation_id=cid, agent_id=agent_id, queued_at=queued_at, assigned_at=at, queue=queue
    )


def requeued(cid: uuid.UUID, agent_id: uuid.UUID, at: datetime) -> ConversationRequeued:
    return ConversationRequeued(
        conversation_id=cid,
        agent_id=agent_id,
        reason=RequeueReason.AGENT_OFFLINE,
        queued_at=T0,
        requeued_at=at,
    )


def resolved(cid: uuid.UUID, at: datetime) -> ConversationResolved:
    return ConversationResolved(conversation_id=cid, agent_id=None, resolved_at=at)


def reopened(cid: uuid.UUID, at: datetime) -> ConversationReopened:
    return ConversationReopened(
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        required_skills=[],
        priority=0,
        reopened_at=at,
        previous_agent_id=None,
    )


def received(n: int, message_id: uuid.UUID | None = None, at: datetime = T0) -> MessageReceived:
    return MessageReceived(
        message_id=message_id or uuid.uuid4(),
        channel=Channel.API,
        external_id=f"m-{n}",
        sender=CustomerIdentity(kind=IdentityKind.API, value=f"cust-{n}"),
        text="hello",
        sent_at=at - timedelta(seconds=1),
        received_at=at,
    )


def message_added(
    cid: uuid.UUID, message_id: uuid.UUID | None = None, direction: Direction = Direction.INBOUND
) -> ConversationMessageAdded:
    return ConversationMessageAdded(
        conversation_id=cid,
        message_id=message_id or uuid.uuid4(),
        channel=Channel.API,
        direction=direction,
        sent_at=T0 - timedelta(seconds=1),
    )


def outbound(cid: uuid.UUID, message_id: uuid.UUID | None = None) -> MessageOutbound:
    return MessageOutbound(
        message_id=message_id or uuid.uuid4(),
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=Channel.EMAIL,
        agent_id=uuid.uuid4(),
        text="on its way",
        sent_at=T0 + timedelta(seconds=30),
    )


def status_changed(agent_id: uuid.UUID | None = None, at: datetime = T0) -> AgentStatusChanged:
    return AgentStatusChanged(
        agent_id=agent_id or uuid.uuid4(),
        status=AgentStatus.ONLINE,
        previous_status=AgentStatus.OFFLINE,
        changed_at=at,
    )


def one_of_each() -> list[Payload]:
    """One event of every registered type, about fresh keys."""
    cid, mid, agent_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    events: list[Payload] = [
        received(1, mid),
        opened(cid),
        message_added(cid, mid),
        queued(cid),
        assigned(cid, agent_id, T0 + timedelta(seconds=2)),
        requeued(cid, agent_id, T0 + timedelta(seconds=5)),
        resolved(cid, T0 + timedelta(seconds=9)),
        status_changed(),
        AgentCapacityChanged(
            agent_id=agent_id, capacity=4, previous_capacity=3, status=AgentStatus.ONLINE, changed_at=T0
        ),
        reopened(cid, T0 + timedelta(seconds=20)),
        ConversationOffered(
            conversation_id=cid,
            agent_id=agent_id,
            queued_at=T0,
            offered_at=T0,
            expires_at=T0 + timedelta(minutes=1),
        ),
        ConversationOfferDeclined(
            conversation_id=cid,
            agent_id=agent_id,
            queued_at=T0,
            offered_at=T0,
            ended_at=T0 + timedelta(seconds=1),
        ),
        ConversationOfferTimedOut(
            conversation_id=cid,
            agent_id=agent_id,
            queued_at=T0,
            offered_at=T0,
            ended_at=T0 + timedelta(seconds=4),
        ),
        ConversationEscalated(
            conversation_id=cid, queue="vip", step=1, required_skills={}, queued_at=T0, escalated_at=T0
        ),
        ConversationSlaBreached(
            conversation_id=cid, queue="vip", sla_target_s=1, queued_at=T0, breached_at=T0, priority=1
        ),
        outbound(cid),
        DeliveryStatusChanged(
            channel=Channel.EMAIL, message_id=mid, external_id=f"x-{mid}", status=DeliveryState.SENT, at=T0
        ),
        ConversationTagsChanged(
            conversation_id=cid,
            tags=["why:refund"],
            added=["why:refund"],
            removed=[],
            agent_id=agent_id,
            changed_at=T0 + timedelta(seconds=3),
        ),
    ]
    assert {type(e) for e in events} == set(counted_types())
    return events


class Log:
    """Deliveries as the runner would hand them over: each payload appended to its topic's log (the
    partition picked by the caller), at the next offset of that partition."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._next: defaultdict[tuple[str, int], int] = defaultdict(int)

    def _at_end(self, envelope: EventEnvelope, payload: Payload, partition: int) -> Delivery[Payload]:
        topic = self._settings.topic(payload.topic)
        offset = self._next[(topic, partition)]
        self._next[(topic, partition)] += 1
        return Delivery(envelope, payload, topic, partition, offset)

    def append(self, payloads: Iterable[Payload], partition: int = 0) -> list[Delivery[Payload]]:
        return [self._at_end(EventEnvelope.wrap(p, producer="test"), p, partition) for p in payloads]

    def republish(self, deliveries: Iterable[Delivery[Payload]]) -> list[Delivery[Payload]]:
        """The same events (same envelope, same event id) written again at the end of their partition, as
        an outbox relay does after a crash between the broker's ack and its DELETE."""
        return [self._at_end(d.envelope, d.payload, d.partition) for d in deliveries]


# --- reading the tables ------------------------------------------------------------------------------------


async def record(db: Database, *batches: Sequence[Delivery[Payload]]) -> None:
    """Each batch in its own transaction, as the runner does for each poll."""
    for batch in batches:
        async with db.unit_of_work() as session:
            await record_batch(session, batch)


async def counts(db: Database) -> dict[str, int]:
    async with db.unit_of_work() as session:
        rows = await session.execute(sa.text("SELECT event_type, count FROM metrics.event_counts"))
        return {event_type: int(n) for event_type, n in rows}


async def rows(db: Database, table: str, key: str) -> dict[Any, dict[str, Any]]:
    async with db.unit_of_work() as session:
        found = (await session.execute(sa.text(f"SELECT * FROM metrics.{table}"))).mappings()  # noqa: S608
        return {row[key]: dict(row) for row in found}


async def facts(db: Database) -> dict[uuid.UUID, dict[str, Any]]:
    return await rows(db, "conversation_facts", "conversation_id")


async def stored_facts(db: Database) -> dict[uuid.UUID, dict[str, Any]]:
    """The conversation facts, without the columns the database computes from them."""
    return {
        cid: subset(row, ("conversation_id", *CONVERSATION_COLUMNS)) for cid, row in (await facts(db)).items()
    }


async def message_facts(db: Database) -> dict[uuid.UUID, dict[str, Any]]:
    return await rows(db, "message_facts", "message_id")


async def tables(db: Database) -> set[str]:
    async with db.unit_of_work() as session:
        return set(
            await session.scalars(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'metrics'"))
        )


# The columns of conversation_facts whose first told value stays (the others merge by their rule).
FIRST_WINS = ("channel", "agent_id", "opened_at", "queued", "queued_at", "assigned_at", "resolved_at")


def subset(row: dict[str, Any], columns: Iterable[str]) -> dict[str, Any]:
    return {c: row[c] for c in columns}


def by_type(deliveries: Iterable[Delivery[Payload]]) -> dict[str, int]:
    out: defaultdict[str, int] = defaultdict(int)
    for d in deliveries:
        out[d.payload.event_type] += 1
    return dict(out)


# --- counting by natural keys ------------------------------------------------------------------------------


async def test_redelivered_records_count_once(settings: Settings, db: Database) -> None:
    log = Log(settings)
    cid = uuid.uuid4()
    batch = [
        *log.append([opened(cid), message_added(cid), resolved(cid, T0)], partition=1),
        *log.append([received(n) for n in range(5)], partition=0),
        *log.append([received(n) for n in range(5, 8)], partition=2),
        *log.append([queued(cid)], partition=1),
    ]
    # The poll; the same poll replayed (a crash between the database commit and the offset commit); the
    # same records one transaction each (the runner's failure isolation).
    await record(db, batch, batch, *([d] for d in batch))

    assert (
        await counts(db)
        == by_type(batch)
        == {
            "conversation.opened": 1,
            "conversation.message_added": 1,
            "conversation.resolved": 1,
            "message.received": 8,
            "conversation.queued": 1,
        }
    )
    # No row per event, and no offsets: nothing but the facts, the counts and the rollups made from them.
    assert await tables(db) == {
        "alembic_version",
        "event_counts",
        "conversation_facts",
        "message_facts",
        "agent_status_changes",
        "conversation_reopens",
        "conversation_handoffs",
        "kpi_cells",
        "survey_answers",  # one row per answered survey, not per event
        "delivery_facts",  # one row per delivered message, not per report
        "conversation_retags",  # one row per change of a conversation's tags, keyed by its time
        "routing_occurrences",  # one row per offer, offer ending, escalation step or breach, keyed by its time
    }


async def test_an_event_republished_at_a_new_offset_in_a_later_poll_counts_once(
    settings: Settings, db: Database
) -> None:
    """The relay's at-least-once: the same event (same event id) at a new offset, in another poll, mixed
    with new events, for every event type."""
    log = Log(settings)
    first = log.append(one_of_each(), partition=1)
    fresh = log.append(one_of_each(), partition=1)
    again = log.republish(first)
    assert [d.offset for d in again] != [d.offset for d in first]
    await record(db, first, [*again[:3], *fresh, *again[3:]], log.republish(first + fresh))

    assert await counts(db) == dict.fromkeys(by_type(first), 2)


async def test_a_poll_replayed_after_a_crash_counts_nothing_twice(settings: Settings, db: Database) -> None:
    log = Log(settings)
    cid = uuid.uuid4()
    records = log.append([received(n) for n in range(8)]) + log.append(
        [opened(cid), queued(cid), message_added(cid)], partition=2
    )
    # Counted, then the poll's offsets were not committed: the next owner reads from the last commit, an
    # overlap of the counted records and new ones.
    await record(db, records[:5], records[3:], records)
    assert await counts(db) == by_type(records)


async def test_new_events_at_offsets_seen_before_count(settings: Settings, db: Database) -> None:
    """A topic deleted and created again (the embedded broker keeps its topics in memory) starts again at
    offset 0: what counts is the events, not where they were read."""
    before = Log(settings).append([received(n) for n in range(3)])
    after = Log(settings).append([received(n) for n in range(3)])
    assert [d.offset for d in before] == [d.offset for d in after]
    await record(db, before, after)
    assert await counts(db) == {"message.received": 6}


async def test_several_calls_in_one_transaction_see_each_others_rows(
    settings: Settings, db: Database
) -> None:
    log = Log(settings)
    records = log.append([received(n) for n in range(6)]) + log.append([received(n) for n in range(6, 9)], 1)
    records += log.append(one_of_each(), partition=2)
    async with db.unit_of_work() as session:
        await record_batch(session, records[:4])
        await record_batch(session, records[4:])
        await record_batch(session, records)
        await record_batch(session, records[2:3])
        await record_batch(session, log.republish(records[-7:]))
    assert await counts(db) == by_type(records)


async def test_the_same_record_or_event_twice_in_one_call_counts_once(
    settings: Settings, db: Database
) -> None:
    log = Log(settings)
    each = log.append(one_of_each())
    [retried] = log.republish(each[:1])  # a producer's retry, written twice to the log
    await record(db, [*each, each[0], retried, *each])
    assert await counts(db) == by_type(each)
    await record(db, [retried], each)
    assert await counts(db) == by_type(each)


async def test_a_rolled_back_call_leaves_nothing_behind(settings: Settings, db: Database) -> None:
    log = Log(settings)
    records = log.append(one_of_each())

    async def fail_after_counting() -> None:
        async with db.unit_of_work() as session:
            await record_batch(session, records)
            raise RuntimeError("handler after metrics failed")

    with pytest.raises(RuntimeError, match="handler after metrics failed"):
        await fail_after_counting()
    assert (await counts(db), await facts(db), await message_facts(db)) == ({}, {}, {})
    await record(db, records)
    assert await counts(db) == by_type(records)


# --- facts -------------------------------------------------------------------------------------------------


async def test_facts_fill_in_any_order(settings: Settings, db: Database) -> None:
    """Every order of the four fact events, each delivered alone and then all again, gives one full row,
    and each event counts once."""
    log = Log(settings)
    agent_id = uuid.uuid4()
    expected: dict[uuid.UUID, dict[str, Any]] = {}
    deliveries: list[Delivery[Payload]] = []
    for order in itertools.permutations(range(4)):
        cid = uuid.uuid4()
        opening = opened(cid, T0, Channel.EMAIL)
        events: list[Payload] = [
            opening,
            # The router's assigned event repeats the queued_at and queue its queued event gave.
            queued(cid, T0, queue="billing"),
            assigned(cid, agent_id, T0 + timedelta(seconds=3), queue="billing"),
            resolved(cid, T0 + timedelta(seconds=9)),
        ]
        deliveries += log.append([events[i] for i in order])
        expected[cid] = {
            "conversation_id": cid,
            "channel": "email",
            "agent_id": agent_id,
            "opened_at": T0,
            "queued": True,
            "queued_at": T0,
            "assigned_at": T0 + timedelta(seconds=3),
            "resolved_at": T0 + timedelta(seconds=9),
            "customer_id": opening.customer_id,
            "queue": "billing",
            "tags": [],
            "tags_at": T0,
            "channels": ["email"],
            "first_reply_at": None,
            "resolved_by": None,
            "first_reopened_at": None,
            "last_resolved_at": T0 + timedelta(seconds=9),
            "last_reopened_at": None,
        }
    await record(db, *([d] for d in deliveries))
    assert await stored_facts(db) == expected
    # The same events again, as new records: nothing changes, nothing counts.
    await record(db, log.append(d.payload for d in deliveries))
    assert await stored_facts(db) == expected
    assert await counts(db) == {
        "conversation.opened": 24,
        "conversation.queued": 24,
        "conversation.assigned": 24,
        "conversation.resolved": 24,
    }


async def test_an_assigned_conversation_never_queued_counts_no_queued_event(
    settings: Settings, db: Database
) -> None:
    log = Log(settings)
    cid = uuid.uuid4()
    await record(db, log.append([opened(cid), assigned(cid, uuid.uuid4(), T0)]))
    row = (await facts(db))[cid]
    assert (row["queued_at"], row["queued"]) == (T0, None)
    assert await counts(db) == {"conversation.opened": 1, "conversation.assigned": 1}
    # A conversation.queued arriving late still counts: its own column was unknown.
    await record(db, log.append([queued(cid)]))
    assert (await counts(db))["conversation.queued"] == 1


async def test_message_facts_fill_from_both_events_in_either_order(settings: Settings, db: Database) -> None:
    log = Log(settings)
    cid = uuid.uuid4()
    first_received, first_added, together = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    outbound = uuid.uuid4()
    await record(
        db,
        log.append([received(1, first_received)]),
        log.append([message_added(cid, first_added)]),
        log.append([message_added(cid, together), received(3, together)]),
        log.append([message_added(cid, first_received)]),
        log.append([received(2, first_added)]),
        log.append([message_added(cid, outbound, Direction.OUTBOUND)]),  # an agent's reply: never received
    )
    found = await message_facts(db)
    inbound = {
        "channel": "api",
        "direction": "inbound",
        "conversation_id": cid,
        "sent_at": T0 - timedelta(seconds=1),
        "received_at": T0,
        "agent_id": None,
        "automated": None,
    }
    assert found == {
        first_received: {"message_id": first_received, **inbound},
        first_added: {"message_id": first_added, **inbound},
        together: {"message_id": together, **inbound},
        outbound: {"message_id": outbound, **inbound, "direction": "outbound", "received_at": None},
    }
    assert await counts(db) == {"message.received": 3, "conversation.message_added": 4}


async def test_an_agents_reply_is_one_outbound_message_however_often_it_comes(
    settings: Settings, db: Database
) -> None:
    log = Log(settings)
    cid, reply, inbound = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    reply_event = outbound(cid, reply)
    first = log.append([reply_event, message_added(cid, inbound)])
    # Redelivered in the same poll, replayed, and republished by the relay at a new offset.
    await record(db, first + first, first, log.republish(first))
    found = await message_facts(db)
    assert found[reply] == {
        "message_id": reply,
        "channel": "email",
        "direction": "outbound",
        "conversation_id": cid,
        "sent_at": T0 + timedelta(seconds=30),
        "received_at": None,
        "agent_id": reply_event.agent_id,
        "automated": False,
    }
    assert await counts(db) == {"message.outbound": 1, "conversation.message_added": 1}


async def test_agent_status_changes_are_stored_once_each(settings: Settings, db: Database) -> None:
    log = Log(settings)
    agent = uuid.uuid4()
    changes = [status_changed(agent, T0 + timedelta(seconds=n)) for n in range(3)]
    first = log.append(changes[:2])
    await record(db, first, log.append(changes), log.republish(first))
    stored = await rows(db, "agent_status_changes", "changed_at")
    assert stored == {
        c.changed_at: {"agent_id": agent, "changed_at": c.changed_at, "status": "online", "capacity": None}
        for c in changes
    }
    assert await counts(db) == {"agent.status_changed": 3}


async def test_each_reopen_of_a_conversation_counts_once(settings: Settings, db: Database) -> None:
    log = Log(settings)
    cid, other = uuid.uuid4(), uuid.uuid4()
    first = log.append([reopened(cid, T0 + timedelta(hours=1)), reopened(other, T0)])
    again = log.append([reopened(cid, T0 + timedelta(hours=5))])
    # Redelivered, republished, and the later reopen alongside the first one again.
    await record(db, first, first, log.republish(first), again + log.republish(first))
    assert await rows(db, "conversation_reopens", "reopened_at") == {
        T0 + timedelta(hours=1): {"conversation_id": cid, "reopened_at": T0 + timedelta(hours=1)},
        T0 + timedelta(hours=5): {"conversation_id": cid, "reopened_at": T0 + timedelta(hours=5)},
        T0: {"conversation_id": other, "reopened_at": T0},
    }
    assert await counts(db) == {"conversation.reopened": 3}


async def test_each_requeue_of_a_conversation_counts_once(settings: Settings, db: Database) -> None:
    log = Log(settings)
    cid, agent = uuid.uuid4(), uuid.uuid4()
    first = log.append([requeued(cid, agent, T0 + timedelta(seconds=5))])
    again = log.append([requeued(cid, agent, T0 + timedelta(seconds=50))])
    await record(db, first, first, log.republish(first), again + log.republish(first))
    stored = await rows(db, "conversation_handoffs", "at")
    assert {at: (h["conversation_id"], h["kind"], h["agent_id"]) for at, h in stored.items()} == {
        T0 + timedelta(seconds=5): (cid, "requeued", agent),
        T0 + timedelta(seconds=50): (cid, "requeued", agent),
    }
    assert await counts(db) == {"conversation.requeued": 2}


async def test_a_conversation_is_open_until_resolved_and_again_when_reopened(
    settings: Settings, db: Database
) -> None:
    log = Log(settings)
    cid = uuid.uuid4()

    async def is_open() -> Any:
        return (await facts(db))[cid]["is_open"]

    await record(db, log.append([opened(cid)]))
    assert await is_open() is True
    await record(db, log.append([resolved(cid, T0 + timedelta(minutes=1))]))
    resolved_once = await is_open()
    await record(db, log.append([reopened(cid, T0 + timedelta(minutes=2))]))
    assert await is_open() is True
    await record(db, log.append([resolved(cid, T0 + timedelta(minutes=1))]))  # the first resolution, again
    assert await is_open() is True
    await record(db, log.append([resolved(cid, T0 + timedelta(minutes=3))]))
    resolved_again = await is_open()
    # Asserted last, so what works is checked even while the bug makes these NULL.
    assert (resolved_once, resolved_again) == (False, False)


async def test_a_batch_with_several_events_for_one_conversation(settings: Settings, db: Database) -> None:
    log = Log(settings)
    cid, other = uuid.uuid4(), uuid.uuid4()
    first_agent, second_agent = uuid.uuid4(), uuid.uuid4()
    batch = [
        *log.append([assigned(cid, first_agent, T0 + timedelta(seconds=2))], partition=2),
        *log.append(
            [opened(cid), opened(other), message_added(cid), resolved(cid, T0 + timedelta(seconds=5))], 2
        ),
        *log.append([queued(cid), assigned(cid, second_agent, T0 + timedelta(seconds=4))], partition=2),
    ]
    await record(db, batch)
    found = await facts(db)
    # The first value of a column in the batch wins, as it would against the stored row.
    assert subset(found[cid], FIRST_WINS) == {
        "channel": "api",
        "agent_id": first_agent,
        "opened_at": T0,
        "queued": True,
        "queued_at": T0,
        "assigned_at": T0 + timedelta(seconds=2),
        "resolved_at": T0 + timedelta(seconds=5),
    }
    assert found[other]["opened_at"] == T0
    assert found[other]["assigned_at"] is None
    # Yet each assignment is a handoff of its own: who held it when is kept for both.
    handoffs = await rows(db, "conversation_handoffs", "at")
    assert {at: (h["conversation_id"], h["kind"], h["agent_id"]) for at, h in handoffs.items()} == {
        T0 + timedelta(seconds=2): (cid, "assigned", first_agent),
        T0 + timedelta(seconds=4): (cid, "assigned", second_agent),
    }
    # Two assignments of one conversation: one natural key, one count.
    assert await counts(db) == by_type(batch) | {"conversation.opened": 2, "conversation.assigned": 1}


# --- constant-shape statements -----------------------------------------------------------------------------


async def test_statements_do_not_depend_on_the_batch_size(settings: Settings, db: Database) -> None:
    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    log = Log(settings)
    each = log.append(one_of_each())
    many: list[Delivery[Payload]] = []
    for n in range(30):
        many += log.append(one_of_each(), partition=n % 3)
    many = many[:200]
    assert len(many) == 200

    calls: dict[str, list[str]] = {}
    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        for name, batch in (("one of each", each), ("200", many), ("replay", many)):
            statements.clear()
            async with db.unit_of_work() as session:
                await record_batch(session, batch)
            calls[name] = list(statements)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)

    assert calls["one of each"] == calls["200"]  # the same statements, text for text (prepared once)
    # The before-image, the delivery reports' before-image, the stored messages of the conversations
    # touched (reply times), message and conversation facts, delivery facts, status
    # changes/reopens/handoffs/routing occurrences, rollup cells and counts: every statement a call can
    # make, and no more for 200 deliveries than for ten.
    assert len(calls["200"]) == 7
    # Nothing new: the before-images show it, and the insert-if-absent of status changes, reopens and
    # handoffs adds nothing; no thread is read, no fact is written, no cell moves and nothing is counted.
    assert calls["replay"] == [calls["200"][0], calls["200"][1], calls["200"][5]]
    assert await counts(db) == by_type(each + many)


# --- concurrent transactions -------------------------------------------------------------------------------


async def lock_waiters(db: Database) -> int:
    async with db.unit_of_work() as session:
        found = await session.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE '%metrics.%'"
            )
        )
        return int(found or 0)


class _RollBack(Exception):
    pass


async def run_concurrently(
    db: Database,
    first: Sequence[Delivery[Payload]],
    second: Sequence[Delivery[Payload]],
    *,
    commit: bool = True,
) -> None:
    """``first`` in a transaction kept open until ``second``, in another, waits on it; then ``first``
    commits (or rolls back) and ``second`` goes on."""

    async def run_second() -> None:
        async with db.unit_of_work() as session:
            await record_batch(session, second)

    task: asyncio.Task[None] | None = None
    try:
        async with db.unit_of_work() as session:
            await record_batch(session, first)
            task = asyncio.create_task(run_second())
            await eventually(lambda: lock_waiters(db), timeout=10, what="the second transaction to wait")
            if not commit:
                raise _RollBack
    except _RollBack:
        pass
    except BaseException:
        if task is not None:
            task.cancel()
        raise
    assert task is not None
    await asyncio.wait_for(task, 10)


async def test_concurrent_transactions_on_an_existing_conversation_count_each_transition_once(
    settings: Settings, db: Database
) -> None:
    """conversation.events and routing.events may be read by two replicas at once: the second transaction
    waits for the first, then sees what it stored."""
    log = Log(settings)
    cid, agent = uuid.uuid4(), uuid.uuid4()
    await record(db, log.append([opened(cid)]))
    routing = log.append([queued(cid), assigned(cid, agent, T0 + timedelta(seconds=2))], partition=1)
    conversation = log.append([resolved(cid, T0 + timedelta(seconds=9))], partition=2) + log.republish(
        routing[1:]
    )
    await run_concurrently(db, routing, conversation)
    assert await counts(db) == {
        "conversation.opened": 1,
        "conversation.queued": 1,
        "conversation.assigned": 1,
        "conversation.resolved": 1,
    }
    assert (await facts(db))[cid]["resolved_at"] == T0 + timedelta(seconds=9)


@pytest.mark.parametrize("commit", [True, False], ids=["first commits", "first rolls back"])
async def test_concurrent_transactions_creating_the_same_rows_count_them_once(
    settings: Settings, db: Database, commit: bool
) -> None:
    """A record handled by its old owner and its new one at once (a rebalance): rows neither has seen.
    The second waits; it counts nothing if the first commits, everything if it rolls back."""
    log = Log(settings)
    records = log.append(one_of_each())
    await run_concurrently(db, records, list(reversed(log.republish(records))), commit=commit)
    assert await counts(db) == by_type(records)


# --- through the consumer runner and the service -----------------------------------------------------------


Event = tuple[str, Payload, EventEnvelope]


def keyed(key: object, payload: Payload) -> Event:
    """An event to publish under ``key`` (the id its producer keys it by), in a fresh envelope."""
    return str(key), payload, EventEnvelope.wrap(payload, producer="test")


async def report_once_counted(client: httpx.AsyncClient, counted: Mapping[str, int]) -> dict[str, Any]:
    """``GET /v1/kpis`` once the service has counted these events (by type), read again after: each of a
    report's statements sees the commits made before it, so the read that saw the counts may have read
    the rollups just before they moved."""

    async def done() -> bool:
        body: dict[str, Any] = (await client.get("/v1/kpis", headers=bearer(ADMIN_KEY))).json()
        return all(body["events_by_type"].get(t) == n for t, n in counted.items())

    await eventually(done, timeout=30, what=f"metrics to count {dict(counted)}")
    report: dict[str, Any] = (await client.get("/v1/kpis", headers=bearer(ADMIN_KEY))).json()
    return report


async def publish(settings: Settings, envelopes: Iterable[Event]) -> None:
    publisher = EventPublisher(settings, client_id="test")
    await publisher.start()
    try:
        for key, payload, envelope in envelopes:
            await publisher.publish(payload.topic, key, envelope)
    finally:
        await publisher.stop()


def traffic(conversations: int, at: datetime = T0) -> list[tuple[str, Payload, EventEnvelope]]:
    """A few conversations' worth of events, keyed as their producers key them: all opened and queued
    ``at``, the n-th assigned n seconds later."""
    out: list[tuple[str, Payload]] = []
    agent_id = uuid.uuid4()
    for n in range(conversations):
        cid, mid = uuid.uuid4(), uuid.uuid4()
        out += [(f"api:cust-{n}", received(n, mid, at))]
        out += [(str(cid), e) for e in (opened(cid, at), message_added(cid, mid), queued(cid, at))]
        out += [(str(cid), assigned(cid, agent_id, at + timedelta(seconds=n), queued_at=at))]
    out += [(str(agent_id), status_changed(agent_id, at))]
    return [(key, p, EventEnvelope.wrap(p, producer="test")) for key, p in out]


async def test_records_replayed_or_republished_through_the_runner_count_once(
    settings: Settings, db: Database
) -> None:
    sent = traffic(6)
    # Each event published twice with its envelope (a relay's republish), the copies after the originals.
    await publish(settings, sent + sent)
    records = []
    for topic in sorted({p.topic for _, p, _ in sent}):
        records += await read_topic(settings, topic, 2 * sum(1 for _, p, _ in sent if p.topic == topic))
    assert len(records) == 2 * len(sent)
    publisher = EventPublisher(settings, client_id="test-dlq")
    await publisher.start()
    try:
        runner = ConsumerRunner(
            settings=settings,
            db=db,
            publisher=publisher,
            group_id=GROUP_ID,
            handlers=dict.fromkeys(counted_types(), record_batch),
        )
        poll = records[: len(records) // 2]
        await runner.process(poll)
        await runner.process(poll)  # the same poll again, as after a crash before the offset commit
        await runner.process(records)  # everything, the republished copies included
    finally:
        await publisher.stop()

    expected = {"message.received": 6, "conversation.opened": 6, "conversation.message_added": 6}
    expected |= {"conversation.queued": 6, "conversation.assigned": 6, "agent.status_changed": 1}
    assert await counts(db) == expected


async def consumed_everything(settings: Settings, topics: Iterable[str]) -> bool:
    """Whether the metrics group has committed every partition of ``topics`` up to its end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.group(GROUP_ID),
        enable_auto_commit=False,
    )
    await consumer.start()  # no subscription: nothing is joined
    try:
        await consumer.topics()  # loads the metadata partitions_for_topic reads
        partitions = [
            TopicPartition(settings.topic(t), p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(settings.topic(t)) or set())
        ]
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            if ends[tp] and (await consumer.committed(tp) or 0) < ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


async def test_the_service_counts_what_it_consumes_and_serves_the_kpis(settings: Settings) -> None:
    # Inside the default window (the last 15 minutes) whenever this test runs, and no event in the future
    # of the read (a cell is read when its minute has begun).
    sent = traffic(5, at=utcnow() - timedelta(seconds=10))
    async with serve(metrics_app(settings)) as client:
        # Each event twice, with the same envelope: the second copy counts nothing.
        await publish(settings, sent + sent)
        topics = {p.topic for _, p, _ in sent}
        await eventually(
            lambda: consumed_everything(settings, topics), timeout=60, what="metrics to consume every record"
        )
        response = await client.get("/v1/kpis", headers=bearer(ADMIN_KEY))
        assert response.status_code == 200, response.text
        snapshot = response.json()
        assert (await client.get("/v1/kpis")).status_code == 401

    # Waits of 0 (clamped to a millisecond), 1, 2, 3 and 4 seconds. Percentiles are read from a 1 % sketch
    # by its rank rule: the value at rank q * (n - 1), rounded down.
    wait = snapshot["times"]["wait"]
    assert wait["count"] == 5
    assert wait["mean"] == pytest.approx(2.0, abs=0.001)  # the exact sum of seconds over the count
    assert wait["p50"] == pytest.approx(2.0, rel=0.011)
    assert wait["p90"] == pytest.approx(3.0, rel=0.011)
    assert wait["p99"] == pytest.approx(3.0, rel=0.011)
    assert wait["max"] == pytest.approx(4.0, rel=0.011)
    volume = snapshot["volume"]
    assert (volume["messages_in"], volume["conversations_opened"], volume["conversations_assigned"]) == (
        5,
        5,
        5,
    )
    assert (volume["conversations_resolved"], volume["conversations_reopened"]) == (0, 0)
    assert snapshot["window"]["name"] == "live"
    assert (snapshot["waiting_now"], snapshot["longest_wait_seconds"]) == (0, None)
    [agent_id] = {p.agent_id for _, p, _ in sent if isinstance(p, ConversationAssigned)}
    assert [(a["agent_id"], a["assignments"], a["active_conversations"]) for a in snapshot["agents"]] == [
        (str(agent_id), 5, 5)
    ]
    assert snapshot["events_by_type"] == {
        "message.received": 5,
        "conversation.opened": 5,
        "conversation.message_added": 5,
        "conversation.queued": 5,
        "conversation.assigned": 5,
        "agent.status_changed": 1,
    }
