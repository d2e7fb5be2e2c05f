"""Bounded retention of ingest's own rows, deleted in the background in small batches.

- **Receipts** are the dedup keys of providers' retries: kept ``SWITCHBOARD_INGEST_RECEIPT_RETENTION_DAYS``
  (30), far beyond any provider's retry schedule (Meta retries for up to 7 days). A retry arriving
  later than that would be taken as a new message.
- **Replies** the dispatcher is done with (sent, failed or dead-lettered) are kept
  ``SWITCHBOARD_INGEST_DELIVERY_RETENTION_DAYS`` (7); a pending reply is never deleted. Providers' later
  status callbacks do not need the row (they travel by the provider's id).
- **Web chat**: expired session records go at once (tokens carry their own expiry); replies kept for
  visitors' streams go after ``SWITCHBOARD_WEBCHAT_HISTORY_DAYS`` (7): a stream resuming from an older
  event id gets what is left, the conversation itself keeps the whole thread. Rate-limit counters go
  once their window has ended (a key's next hit opens a new window anyway).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from switchboard_common.background import Periodic
from switchboard_common.db.database import Database
from switchboard_common.db.retention import delete_in_batches
from switchboard_common.db.sql import statement
from switchboard_common.events import utcnow
from switchboard_ingest.settings import IngestSettings

log = logging.getLogger(__name__)

_CUTOFF: dict[str, sa.types.TypeEngine[Any]] = {"cutoff": sa.DateTime(timezone=True), "batch": sa.Integer()}


def _delete(table: str, past: str) -> sa.TextClause:
    return statement(
        f"""
        DELETE FROM ingest.{table} WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM ingest.{table} WHERE {past} LIMIT :batch))
        """,  # noqa: S608 - our own table names and predicates, no input
        **_CUTOFF,
    )


_RECEIPTS = _delete("receipts", "received_at < :cutoff")
_DELIVERIES = _delete("outbound_deliveries", "state <> 'pending' AND updated_at < :cutoff")
_SESSIONS = _delete("webchat_sessions", "expires_at < :cutoff")
_WEBCHAT_REPLIES = _delete("webchat_outbox", "created_at < :cutoff")
_RATE_COUNTERS = _delete("webchat_rate_counters", "window_end < :cutoff")


async def purge(db: Database, settings: IngestSettings, now: datetime) -> dict[str, int]:
    """Delete every row past its retention at ``now``; returns the rows deleted per table."""
    days = timedelta(days=1)
    return await delete_in_batches(
        db,
        [
            ("receipts", _RECEIPTS, {"cutoff": now - settings.ingest_receipt_retention_days * days}),
            (
                "outbound_deliveries",
                _DELIVERIES,
                {"cutoff": now - settings.ingest_delivery_retention_days * days},
            ),
            ("webchat_sessions", _SESSIONS, {"cutoff": now}),
            ("webchat_outbox", _WEBCHAT_REPLIES, {"cutoff": now - settings.webchat_history_days * days}),
            ("webchat_rate_counters", _RATE_COUNTERS, {"cutoff": now}),
        ],
    )


def retention_job(db: Database, settings: IngestSettings) -> Periodic:
    async def tick() -> None:
        deleted = await purge(db, settings, utcnow())
        if any(deleted.values()):
            log.info("ingest retention", extra={"deleted": deleted})

    interval = settings.ingest_retention_interval_s
    return Periodic("ingest-retention", tick, interval, first_delay_s=min(60.0, interval))
