"""Metrics on the real database and broker: each record counts once whatever the redelivery (offsets stored
per partition, no row per event), conversation facts fill in any order, and a call costs the same
statements for one delivery or two hundred."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from switchboard_common.db.database import Database
from switchboard_common.events import (
    AgentStatus,
    AgentStatusChanged,
    Channel,
    ConversationAssigned,
    ConversationMessageAdded,
    ConversationOpened,
    ConversationQueued,
    ConversationResolved,
    CustomerIdentity,
    Direction,
    EventEnvelope,
    IdentityKind,
    MessageReceived,
    Payload,
    registered,
    utcnow,
)
from switchboard_common.kafka.consumer import ConsumerRunner, Delivery
from switchboard_common.kafka.producer import EventPublisher
from switchboard_metrics.app import GROUP_ID
from switchboard_metrics.app import create_app as metrics_app
from switchboard_metrics.kpis.service import record_batch
from switchboard_metrics.offsets import forget_offsets_beyond_the_log
from tests.conftest import ADMIN_KEY, Settings
from tests.support import bearer, eventually, read_topic, serve

T0 = utcnow()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database.from_settings(settings)
    yield database
    await database.dispose()


# --- events ------------------------------------------------------------------------------------------------


def opened(cid: uuid.UUID, at: datetime = T0, channel: Channel = Channel.API) -> ConversationOpened:
    return ConversationOpened(
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=channel,
        required_skills=[],
        priority=0,
        opened_at=at,
    )


def queued(cid: uuid.UUID, at: datetime = T0) -> ConversationQueued:
    return ConversationQueued(conversation_id=cid, required_skills=[], priority=0, queued_at=at)


def assigned(cid: uuid.UUID, agent_id: uuid.UUID, at: datetime) -> ConversationAssigned:
    return ConversationAssigned(conversation_id=cid, agent_id=agent_id, queued_at=T0, assigned_at=at)


def resolved(cid: uuid.UUID, at: datetime) -> ConversationResolved:
    return ConversationResolved(conversation_id=cid, agent_id=None, resolved_at=at)


def received(n: int) -> MessageReceived:
    return MessageReceived(
        message_id=uuid.uuid4(),
        channel=Channel.API,
        external_id=f"m-{n}",
        sender=CustomerIdentity(kind=IdentityKind.API, value=f"cust-{n}"),
        text="hello",
        sent_at=T0,
        received_at=T0,
    )


def message_added(cid: uuid.UUID) -> ConversationMessageAdded:
    return ConversationMessageAdded(
        conversation_id=cid,
        message_id=uuid.uuid4(),
        channel=Channel.API,
        direction=Direction.INBOUND,
        sent_at=T0,
    )


def status_changed() -> AgentStatusChanged:
    return AgentStatusChanged(
        agent_id=uuid.uuid4(), status=AgentStatus.ONLINE, previous_status=AgentStatus.OFFLINE, changed_at=T0
    )


class Log:
    """Deliveries as the runner would hand them over: each payload appended to its topic's log (the
    partition picked by the caller), at the next offset of that partition."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._next: defaultdict[tuple[str, int], int] = defaultdict(int)

    def append(self, payloads: Iterable[Payload], partition: int = 0) -> list[Delivery[Payload]]:
        out: list[Delivery[Payload]] = []
        for payload in payloads:
            topic = self._settings.topic(payload.topic)
            offset = self._next[(topic, partition)]
            self._next[(topic, partition)] += 1
            envelope = EventEnvelope.wrap(payload, producer="test")
            out.append(Delivery(envelope, payload, topic, partition, offset))
        return out


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


async def facts(db: Database) -> dict[uuid.UUID, dict[str, Any]]:
    async with db.unit_of_work() as session:
        rows = (await session.execute(sa.text("SELECT * FROM metrics.conversation_facts"))).mappings()
        return {row["conversation_id"]: dict(row) for row in rows}


async def offsets(db: Database) -> dict[tuple[str, int], int]:
    async with db.unit_of_work() as session:
        rows = await session.execute(
            sa.text("SELECT topic, partition, next_offset FROM metrics.partition_offsets")
        )
        return {(topic, partition): int(n) for topic, partition, n in rows}


def by_type(deliveries: Iterable[Delivery[Payload]]) -> dict[str, int]:
    out: defaultdict[str, int] = defaultdict(int)
    for d in deliveries:
        out[d.payload.event_type] += 1
    return dict(out)


# --- exactly-once counting ---------------------------------------------------------------------------------


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
    topic = settings.topic
    assert await offsets(db) == {
        (topic("conversation.events"), 1): 3,
        (topic("messages.inbound"), 0): 5,
        (topic("messages.inbound"), 2): 3,
        (topic("routing.events"), 1): 1,
    }
    async with db.unit_of_work() as session:
        tables = set(
            await session.scalars(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'metrics'"))
        )
    assert "processed_events" not in tables


async def test_a_replay_overlapping_a_counted_poll_counts_only_the_new_records(
    settings: Settings, db: Database
) -> None:
    log = Log(settings)
    records = log.append([received(n) for n in range(8)])
    await record(db, records[:5], records[3:])
    assert await counts(db) == {"message.received": 8}
    assert await offsets(db) == {(settings.topic("messages.inbound"), 0): 8}


async def test_several_calls_in_one_transaction_see_each_others_offsets(
    settings: Settings, db: Database
) -> None:
    log = Log(settings)
    records = log.append([received(n) for n in range(6)]) + log.append([received(n) for n in range(6, 9)], 1)
    async with db.unit_of_work() as session:
        await record_batch(session, records[:4])
        await record_batch(session, records[4:])
        await record_batch(session, records)
        await record_batch(session, records[2:3])
    assert await counts(db) == {"message.received": 9}


async def test_the_same_record_or_event_twice_in_one_call_counts_once(
    settings: Settings, db: Database
) -> None:
    log = Log(settings)
    [first, second] = log.append([received(1), received(2)])
    # The same event at another offset in the same poll: a producer's retry, written twice to the log.
    retried = Delivery(first.envelope, first.payload, first.topic, first.partition, second.offset + 1)
    await record(db, [first, second, first, retried])
    assert await counts(db) == {"message.received": 2}
    # Replayed, the retry is still behind the stored offset, alone or with its poll.
    await record(db, [retried], [first, second, retried])
    assert await counts(db) == {"message.received": 2}
    assert await offsets(db) == {(first.topic, 0): 3}


async def test_a_rolled_back_call_leaves_nothing_behind(settings: Settings, db: Database) -> None:
    log = Log(settings)
    records = log.append([received(n) for n in range(3)])

    async def fail_after_counting() -> None:
        async with db.unit_of_work() as session:
            await record_batch(session, records)
            raise RuntimeError("handler after metrics failed")

    with pytest.raises(RuntimeError, match="handler after metrics failed"):
        await fail_after_counting()
    assert await offsets(db) == {}
    await record(db, records)
    assert await counts(db) == {"message.received": 3}


# --- conversation facts ------------------------------------------------------------------------------------


async def test_facts_fill_in_any_order(settings: Settings, db: Database) -> None:
    """Every order of the four fact events, each delivered alone and then all again, gives one full row."""
    log = Log(settings)
    agent_id = uuid.uuid4()
    expected: dict[uuid.UUID, dict[str, Any]] = {}
    deliveries: list[Delivery[Payload]] = []
    for order in itertools.permutations(range(4)):
        cid = uuid.uuid4()
        events: list[Payload] = [
            opened(cid, T0, Channel.EMAIL),
            queued(cid, T0),  # the router's assigned event repeats the queued_at its queued event gave
            assigned(cid, agent_id, T0 + timedelta(seconds=3)),
            resolved(cid, T0 + timedelta(seconds=9)),
        ]
        deliveries += log.append([events[i] for i in order])
        expected[cid] = {
            "conversation_id": cid,
            "channel": "email",
            "agent_id": agent_id,
            "opened_at": T0,
            "queued_at": T0,
            "assigned_at": T0 + timedelta(seconds=3),
            "resolved_at": T0 + timedelta(seconds=9),
        }
    await record(db, *([d] for d in deliveries))
    assert await facts(db) == expected
    # Facts are idempotent by their key: applying them again changes nothing.
    await record(db, log.append(d.payload for d in deliveries))
    assert await facts(db) == expected
    assert await counts(db) == {
        "conversation.opened": 48,
        "conversation.queued": 48,
        "conversation.assigned": 48,
        "conversation.resolved": 48,
    }


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
    rows = await facts(db)
    # The first value of a column in the batch wins, as it would against the stored row.
    assert rows[cid] == {
        "conversation_id": cid,
        "channel": "api",
        "agent_id": first_agent,
        "opened_at": T0,
        "queued_at": T0,
        "assigned_at": T0 + timedelta(seconds=2),
        "resolved_at": T0 + timedelta(seconds=5),
    }
    assert rows[other]["opened_at"] == T0
    assert rows[other]["assigned_at"] is None
    assert await counts(db) == by_type(batch)


# --- constant-shape statements -----------------------------------------------------------------------------


async def test_statements_do_not_depend_on_the_batch_size(settings: Settings, db: Database) -> None:
    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    log = Log(settings)
    one = log.append([opened(uuid.uuid4())])
    many: list[Delivery[Payload]] = []
    for n in range(40):
        cid = uuid.uuid4()
        many += log.append([opened(cid), message_added(cid), resolved(cid, T0)], partition=n % 3)
        many += log.append([queued(cid), assigned(cid, uuid.uuid4(), T0)], partition=n % 3)
        many += log.append([received(n), status_changed()], partition=n % 3)
    many = many[:200]
    assert len(many) == 200

    sizes: dict[int, list[str]] = {}
    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        for batch in (one, many):
            statements.clear()
            async with db.unit_of_work() as session:
                await record_batch(session, batch)
            sizes[len(batch)] = list(statements)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)

    assert sizes[1] == sizes[200]  # the same statements, text for text (prepared once)
    assert len(sizes[200]) <= 4
    assert await counts(db) == by_type(one + many)


# --- through the consumer runner and the service -----------------------------------------------------------


async def publish(settings: Settings, payloads: Iterable[tuple[str, Payload]]) -> None:
    publisher = EventPublisher(settings, client_id="test")
    await publisher.start()
    try:
        for key, payload in payloads:
            await publisher.publish(payload.topic, key, EventEnvelope.wrap(payload, producer="test"))
    finally:
        await publisher.stop()


def traffic(conversations: int) -> list[tuple[str, Payload]]:
    """A few conversations' worth of events, keyed as their producers key them."""
    out: list[tuple[str, Payload]] = []
    agent_id = uuid.uuid4()
    for n in range(conversations):
        cid = uuid.uuid4()
        out += [(f"api:cust-{n}", received(n))]
        out += [(str(cid), e) for e in (opened(cid), message_added(cid), queued(cid))]
        out += [(str(cid), assigned(cid, agent_id, T0 + timedelta(seconds=n)))]
    out += [(str(agent_id), status_changed())]
    return out


async def test_records_replayed_through_the_runner_count_once(settings: Settings, db: Database) -> None:
    sent = traffic(6)
    await publish(settings, sent)
    records = []
    for topic in sorted({p.topic for _, p in sent}):
        records += await read_topic(settings, topic, sum(1 for _, p in sent if p.topic == topic))
    publisher = EventPublisher(settings, client_id="test-dlq")
    await publisher.start()
    try:
        runner = ConsumerRunner(
            settings=settings,
            db=db,
            publisher=publisher,
            group_id=GROUP_ID,
            handlers=dict.fromkeys(registered(), record_batch),
        )
        await runner.process(records)  # the poll
        await runner.process(records)  # the same poll again, as after a crash before the offset commit
        await runner.process(records[len(records) // 2 :])
    finally:
        await publisher.stop()

    expected = {"message.received": 6, "conversation.opened": 6, "conversation.message_added": 6}
    expected |= {"conversation.queued": 6, "conversation.assigned": 6, "agent.status_changed": 1}
    assert await counts(db) == expected
    last: dict[tuple[str, int], int] = {}
    for r in records:
        last[(r.topic, r.partition)] = max(last.get((r.topic, r.partition), 0), r.offset + 1)
    assert await offsets(db) == last


async def test_the_service_counts_what_it_consumes_and_serves_the_kpis(settings: Settings) -> None:
    sent = traffic(5)
    async with serve(metrics_app(settings)) as client:
        await publish(settings, sent)

        async def all_counted() -> dict[str, Any] | None:
            response = await client.get("/v1/kpis", headers=bearer(ADMIN_KEY))
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body if body["conversations_assigned"] == 5 and body["messages_received"] == 5 else None

        snapshot = await eventually(all_counted, timeout=60, what="metrics to count every event")
        assert (await client.get("/v1/kpis")).status_code == 401

    assert snapshot == {
        "messages_received": 5,
        "conversations_opened": 5,
        "conversations_assigned": 5,
        "conversations_resolved": 0,
        "waiting_now": 0,
        "longest_wait_seconds": None,
        "time_to_assign_seconds": {"count": 5, "avg": 2.0, "p50": 2.0, "p90": 3.6, "p99": 3.96, "max": 4.0},
        "events_by_type": {
            "message.received": 5,
            "conversation.opened": 5,
            "conversation.message_added": 5,
            "conversation.queued": 5,
            "conversation.assigned": 5,
            "agent.status_changed": 1,
        },
    }


async def test_offsets_beyond_the_end_of_a_recreated_log_are_forgotten(
    settings: Settings, db: Database
) -> None:
    """After the broker lost its topics (the embedded one keeps them in memory) while PostgreSQL kept the
    offsets, the old offsets must not hide the new records."""
    topic = settings.topic("messages.inbound")
    await publish(settings, [("api:cust-1", received(1)), ("api:cust-1", received(2))])
    [first, *_] = await read_topic(settings, "messages.inbound", 2)
    other = (first.partition + 1) % settings.topic_partitions
    async with db.unit_of_work() as session:
        await session.execute(
            sa.text(
                "INSERT INTO metrics.partition_offsets VALUES (:t, :p1, 1000), (:t, :p2, 0), ('gone', 0, 7)"
            ),
            {"t": topic, "p1": first.partition, "p2": other},
        )
    await forget_offsets_beyond_the_log(db, settings)
    assert await offsets(db) == {(topic, other): 0, ("gone", 0): 7}


async def test_a_concurrent_transaction_on_the_same_partitions_waits_and_counts_nothing_twice(
    settings: Settings, db: Database
) -> None:
    """A consumer that lost its partitions in a rebalance may still finish its poll while the new owner
    replays it: the second waits for the first's commit, then sees its offsets (even on a partition never
    seen before, which has no row yet)."""
    log = Log(settings)
    records = log.append([received(n) for n in range(4)]) + log.append([received(n) for n in range(4, 6)], 1)
    async with db.unit_of_work() as first:
        await record_batch(first, records)

        async def second() -> None:
            async with db.unit_of_work() as session:
                await record_batch(session, list(reversed(records)))

        replay = asyncio.create_task(second())
        await asyncio.sleep(0.5)
        assert not replay.done()  # blocked on the partitions' rows
    await asyncio.wait_for(replay, 10)
    assert await counts(db) == {"message.received": 6}
