"""Bounded retention on the real database: what is older than the cutoff goes, in batches; open
conversations with their handoffs, and each agent's latest status, stay whatever their age."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from switchboard_common.db import retention as batches
from switchboard_common.db.database import Database
from switchboard_common.events import (
    AgentStatus,
    AgentStatusChanged,
    Channel,
    ConversationAssigned,
    ConversationOpened,
    ConversationResolved,
    ConversationSlaBreached,
    DeliveryState,
    DeliveryStatusChanged,
    utcnow,
)
from switchboard_metrics.kpis import retention
from tests.conftest import Settings
from tests.integration.test_metrics_counting import Log, received, record

NOW = utcnow()
OLD = NOW - timedelta(days=40)
CUTOFF = NOW - timedelta(days=30)


async def _count(db: Database, table: str, where: str = "true") -> int:
    async with db.unit_of_work() as session:
        sql = f"SELECT count(*) FROM metrics.{table} WHERE {where}"  # noqa: S608 - the test's own
        return int((await session.execute(sa.text(sql))).scalar_one())


def _opened(cid: uuid.UUID, at: datetime) -> ConversationOpened:
    return ConversationOpened(
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=Channel.SMS,
        required_skills=[],
        priority=0,
        opened_at=at,
    )


async def test_old_rows_go_open_conversations_and_latest_statuses_stay(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Log(settings)
    agent, told = uuid.uuid4(), uuid.uuid4()
    closed_old, open_old, closed_new = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    old_message = received(1, at=OLD)
    await record(
        db,
        log.append(
            [
                _opened(closed_old, OLD),
                ConversationAssigned(
                    conversation_id=closed_old, agent_id=agent, queued_at=OLD, assigned_at=OLD
                ),
                ConversationResolved(conversation_id=closed_old, agent_id=agent, resolved_at=OLD),
                _opened(open_old, OLD),
                ConversationAssigned(
                    conversation_id=open_old, agent_id=agent, queued_at=OLD, assigned_at=OLD
                ),
                _opened(closed_new, NOW),
                ConversationResolved(conversation_id=closed_new, agent_id=None, resolved_at=NOW),
                old_message,
                received(2),
                AgentStatusChanged(
                    agent_id=agent,
                    status=AgentStatus.ONLINE,
                    previous_status=AgentStatus.OFFLINE,
                    changed_at=OLD,
                ),
                # Another agent: their capacity told when they came online, not when they went silent.
                AgentStatusChanged(
                    agent_id=told,
                    status=AgentStatus.ONLINE,
                    previous_status=AgentStatus.OFFLINE,
                    changed_at=OLD,
                    capacity=4,
                ),
                AgentStatusChanged(
                    agent_id=told,
                    status=AgentStatus.OFFLINE,
                    previous_status=AgentStatus.ONLINE,
                    changed_at=OLD + timedelta(hours=1),
                ),
                AgentStatusChanged(
                    agent_id=told,
                    status=AgentStatus.AWAY,
                    previous_status=AgentStatus.OFFLINE,
                    changed_at=OLD + timedelta(hours=2),
                ),
                # An old delivery (sent and delivered long ago) and one sent long ago but read today.
                DeliveryStatusChanged(
                    channel=Channel.SMS, external_id="old", status=DeliveryState.SENT, at=OLD
                ),
                DeliveryStatusChanged(
                    channel=Channel.SMS, external_id="old", status=DeliveryState.DELIVERED, at=OLD
                ),
                DeliveryStatusChanged(
                    channel=Channel.SMS, external_id="late", status=DeliveryState.SENT, at=OLD
                ),
                DeliveryStatusChanged(
                    channel=Channel.SMS, external_id="late", status=DeliveryState.READ, at=NOW
                ),
                AgentStatusChanged(
                    agent_id=agent,
                    status=AgentStatus.AWAY,
                    previous_status=AgentStatus.ONLINE,
                    changed_at=OLD + timedelta(hours=1),
                ),
                # An SLA breach long ago and one today.
                ConversationSlaBreached(
                    conversation_id=open_old,
                    queue="q",
                    sla_target_s=1,
                    queued_at=OLD,
                    breached_at=OLD,
                    priority=1,
                ),
                ConversationSlaBreached(
                    conversation_id=closed_new,
                    queue="q",
                    sla_target_s=1,
                    queued_at=NOW,
                    breached_at=NOW,
                    priority=1,
                ),
            ]
        ),
    )
    assert await _count(db, "kpi_cells", f"minute < '{CUTOFF.isoformat()}'") > 0
    # Small batches, so the loop has to come back for more.
    monkeypatch.setattr(batches, "BATCH", 2)

    deleted = await retention.purge(db, CUTOFF)

    assert await _count(db, "kpi_cells", f"minute < '{CUTOFF.isoformat()}'") == 0
    assert await _count(db, "kpi_cells") > 0  # this month's cells stay
    facts = await _count(db, "conversation_facts", f"conversation_id = '{closed_old}'")
    assert facts == 0
    assert await _count(db, "conversation_facts", f"conversation_id IN ('{open_old}', '{closed_new}')") == 2
    # The old, open conversation keeps its assignment: metrics still knows who holds it.
    assert await _count(db, "conversation_handoffs", f"conversation_id = '{open_old}'") == 1
    assert await _count(db, "conversation_handoffs", f"conversation_id = '{closed_old}'") == 0
    assert await _count(db, "message_facts") == 1
    # The agent's latest status stays, however old; the one before it goes.
    assert await _count(db, "agent_status_changes", f"agent_id = '{agent}'") == 1
    assert await _count(db, "agent_status_changes", f"status = 'away' AND agent_id = '{agent}'") == 1
    # The latest capacity told stays with the latest status; the change between them goes.
    assert await _count(db, "agent_status_changes", f"agent_id = '{told}' AND capacity = 4") == 1
    assert await _count(db, "agent_status_changes", f"agent_id = '{told}'") == 2
    assert deleted["conversation_facts"] == 1
    assert deleted["message_facts"] == 1
    # A delivery goes when its latest report is old.
    assert await _count(db, "delivery_facts", "subject = 'late'") == 1
    assert deleted["delivery_facts"] == 1
    assert await _count(db, "routing_occurrences", f"conversation_id = '{closed_new}'") == 1
    assert deleted["routing_occurrences"] == 1

    # Nothing left to delete: a second run deletes nothing.
    assert set((await retention.purge(db, CUTOFF)).values()) == {0}
