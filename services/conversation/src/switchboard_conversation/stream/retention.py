"""Deleting feed items past their retention, every few minutes, in one statement.

Every replica runs it: a second delete of the same rows finds nothing (it waits for the first), so no
leader is needed.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from switchboard_common.background import Periodic
from switchboard_common.db.database import Database
from switchboard_conversation.stream import repository

log = logging.getLogger(__name__)


def feed_retention(db: Database, keep: timedelta, interval_s: float) -> Periodic:
    """A background job deleting items older than ``keep``: at start, then every ``interval_s``."""

    async def purge() -> None:
        async with db.unit_of_work() as session:
            deleted = await repository.purge(session, keep)
        if deleted:
            log.info("agent feed items deleted past retention", extra={"deleted": deleted})

    return Periodic("agent-feed-retention", purge, interval_s, first_delay_s=0)
