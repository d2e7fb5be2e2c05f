"""Ingest's retention on the real database: receipts, finished replies, expired web chat sessions, old web
chat replies and ended rate-limit windows go once past their retention, in batches; pending replies and
recent rows stay."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from switchboard_common.db import retention as batches
from switchboard_common.db.database import Database
from switchboard_common.events import utcnow
from switchboard_ingest import retention
from tests.conftest import Settings

NOW = utcnow()


async def _insert(db: Database, sql: str, rows: list[dict[str, object]]) -> None:
    async with db.unit_of_work() as session:
        for row in rows:
            await session.execute(sa.text(sql), row)


async def _left(db: Database, table: str, column: str) -> list[str]:
    async with db.unit_of_work() as session:
        sql = f"SELECT {column} FROM ingest.{table} ORDER BY 1"  # noqa: S608 - the test's own
        return [str(v) for v in (await session.scalars(sa.text(sql))).all()]


def _days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def test_rows_past_their_retention_go_and_the_rest_stay(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    receipts = [("old-1", 31), ("old-2", 45), ("old-3", 90), ("recent", 29)]
    await _insert(
        db,
        "INSERT INTO ingest.receipts (channel, external_id, message_id, content_digest, received_at) "
        "VALUES ('sms', :id, :message, 'd', :at)",
        [{"id": i, "message": uuid.uuid4(), "at": _days_ago(d)} for i, d in receipts],
    )
    replies = [
        ("sent-old", "sent", 8),
        ("dead-old", "dead", 30),
        ("pending-old", "pending", 30),
        ("sent-new", "sent", 6),
    ]
    await _insert(
        db,
        "INSERT INTO ingest.outbound_deliveries (message_id, conversation_id, channel, text, envelope, state, "
        "next_attempt_at, updated_at) VALUES (:message, :conversation, 'sms', :text, '{}', :state, :at, :at)",
        [
            {"message": uuid.uuid4(), "conversation": uuid.uuid4(), "text": t, "state": s, "at": _days_ago(d)}
            for t, s, d in replies
        ],
    )
    await _insert(
        db,
        "INSERT INTO ingest.webchat_sessions (session_id, identity, expires_at) VALUES (:id, :identity, :at)",
        [
            {"id": uuid.uuid4(), "identity": "expired", "at": _days_ago(0.01)},
            {"id": uuid.uuid4(), "identity": "live", "at": NOW + timedelta(days=1)},
        ],
    )
    await _insert(
        db,
        "INSERT INTO ingest.webchat_outbox (identity, message_id, text, created_at) "
        "VALUES ('v', :message, :text, :at)",
        [{"message": uuid.uuid4(), "text": t, "at": _days_ago(d)} for t, d in (("old", 8), ("new", 6))],
    )
    await _insert(
        db,
        "INSERT INTO ingest.webchat_rate_counters (key, window_end, hits) VALUES (:key, :at, 1)",
        [{"key": "ended", "at": _days_ago(0.001)}, {"key": "open", "at": NOW + timedelta(seconds=30)}],
    )

    # Batches of 2 rows: the three old receipts take two of them.
    monkeypatch.setattr(batches, "BATCH", 2)
    deleted = await retention.purge(db, settings, NOW)

    assert deleted == {
        "receipts": 3,
        "outbound_deliveries": 2,
        "webchat_sessions": 1,
        "webchat_outbox": 1,
        "webchat_rate_counters": 1,
    }
    assert await _left(db, "receipts", "external_id") == ["recent"]
    assert await _left(db, "outbound_deliveries", "text") == ["pending-old", "sent-new"]
    assert await _left(db, "webchat_sessions", "identity") == ["live"]
    assert await _left(db, "webchat_outbox", "text") == ["new"]
    assert await _left(db, "webchat_rate_counters", "key") == ["open"]
    assert set((await retention.purge(db, settings, NOW)).values()) == {0}
