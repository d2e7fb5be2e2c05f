"""Bounded retention: rollup cells and facts older than ``SWITCHBOARD_METRICS_RETENTION_DAYS`` are deleted
in the background, in small batches (short transactions that never hold up the consumer for long).

What is kept: open conversations whatever their age, with their handoffs (who holds them now is read from
those), and each agent's latest status change (their status now) and latest told capacity. A fact deleted
here and then met again in a replay of topics older than the retention counts again: retention is the
horizon of exactness too.
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

log = logging.getLogger(__name__)

_CUTOFF: dict[str, sa.types.TypeEngine[Any]] = {"cutoff": sa.DateTime(timezone=True), "batch": sa.Integer()}
_DELETES: list[tuple[str, sa.TextClause]] = [
    (
        "kpi_cells",
        statement(
            """
            DELETE FROM metrics.kpi_cells WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM metrics.kpi_cells WHERE minute < :cutoff OR count = 0 LIMIT :batch))
            """,
            **_CUTOFF,
        ),
    ),
    (
        "message_facts",
        statement(
            """
            DELETE FROM metrics.message_facts WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM metrics.message_facts
                WHERE coalesce(received_at, sent_at) < :cutoff LIMIT :batch))
            """,
            **_CUTOFF,
        ),
    ),
    (
        "conversation_handoffs",
        statement(
            """
            DELETE FROM metrics.conversation_handoffs WHERE ctid = ANY(ARRAY(
                SELECT h.ctid FROM metrics.conversation_handoffs h
                WHERE h.at < :cutoff AND NOT EXISTS (
                    SELECT 1 FROM metrics.conversation_facts f
                    WHERE f.conversation_id = h.conversation_id AND f.is_open)
                LIMIT :batch))
            """,
            **_CUTOFF,
        ),
    ),
    (
        "survey_answers",
        statement(
            """
            DELETE FROM metrics.survey_answers WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM metrics.survey_answers WHERE answered_at < :cutoff LIMIT :batch))
            """,
            **_CUTOFF,
        ),
    ),
    (
        # A delivery is old when its latest report is (greatest ignores the states never reported).
        "delivery_facts",
        statement(
            """
            DELETE FROM metrics.delivery_facts WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM metrics.delivery_facts
                WHERE greatest(accepted_at, delivered_at, read_at, failed_at) < :cutoff LIMIT :batch))
            """,
            **_CUTOFF,
        ),
    ),
    (
        # History only: the tags a conversation carries now are in its facts.
        "conversation_retags",
        statement(
            """
            DELETE FROM metrics.conversation_retags WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM metrics.conversation_retags WHERE changed_at < :cutoff LIMIT :batch))
            """,
            **_CUTOFF,
        ),
    ),
    (
        "routing_occurrences",
        statement(
            """
            DELETE FROM metrics.routing_occurrences WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM metrics.routing_occurrences WHERE at < :cutoff LIMIT :batch))
            """,
            **_CUTOFF,
        ),
    ),
    (
        "conversation_reopens",
        statement(
            """
            DELETE FROM metrics.conversation_reopens WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM metrics.conversation_reopens WHERE reopened_at < :cutoff LIMIT :batch))
            """,
            **_CUTOFF,
        ),
    ),
    (
        "conversation_facts",
        statement(
            """
            DELETE FROM metrics.conversation_facts WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM metrics.conversation_facts
                WHERE NOT is_open AND greatest(opened_at, last_resolved_at, last_reopened_at) < :cutoff
                LIMIT :batch))
            """,
            **_CUTOFF,
        ),
    ),
    (
        "agent_status_changes",
        statement(
            """
            DELETE FROM metrics.agent_status_changes WHERE ctid = ANY(ARRAY(
                SELECT s.ctid FROM metrics.agent_status_changes s
                WHERE s.changed_at < :cutoff AND EXISTS (
                    SELECT 1 FROM metrics.agent_status_changes later
                    WHERE later.agent_id = s.agent_id AND later.changed_at > s.changed_at)
                -- and the latest capacity told stays too, when later changes did not tell one
                AND (s.capacity IS NULL OR EXISTS (
                    SELECT 1 FROM metrics.agent_status_changes later
                    WHERE later.agent_id = s.agent_id AND later.changed_at > s.changed_at
                      AND later.capacity IS NOT NULL))
                LIMIT :batch))
            """,
            **_CUTOFF,
        ),
    ),
]


async def purge(db: Database, cutoff: datetime) -> dict[str, int]:
    """Delete what is older than ``cutoff``, batch by batch; returns the rows deleted per table."""
    return await delete_in_batches(db, [(table, delete, {"cutoff": cutoff}) for table, delete in _DELETES])


def retention_job(db: Database, retention: timedelta, interval: timedelta) -> Periodic:
    """Runs ``purge`` a minute after start (or one interval, if shorter), then every ``interval``."""

    async def tick() -> None:
        deleted = await purge(db, utcnow() - retention)
        if any(deleted.values()):
            log.info("metrics retention", extra={"deleted": deleted})

    seconds = interval.total_seconds()
    return Periodic("metrics-retention", tick, seconds, first_delay_s=min(60.0, seconds))
