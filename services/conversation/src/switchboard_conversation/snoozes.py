"""Wakes snoozed conversations when their time comes: one statement per tick whatever their number, each
tick its own transaction, so a failing tick (the database away) only delays the next."""

from __future__ import annotations

import logging

from switchboard_common.background import Periodic
from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import utcnow
from switchboard_conversation.conversations import service

log = logging.getLogger(__name__)


def snooze_waker(db: Database, outbox: Outbox, interval_s: float) -> Periodic:
    async def wake() -> None:
        async with db.unit_of_work() as session:
            woke = await service.wake_due(session, outbox, utcnow())
        if woke:
            log.info("snoozed conversations woke", extra={"count": woke})

    return Periodic("snooze-waker", wake, interval_s)
