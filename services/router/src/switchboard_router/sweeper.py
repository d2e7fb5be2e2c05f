"""The router's clock. On every tick: lapsed offers return to the queue; silent agents go offline; the
conversations of agents offline past the grace period, or unanswered past the no-answer time, are
requeued; conversations waiting past their SLA target move up a priority; waiting ones reaching an
escalation step ask less of an agent; and the queue head is served with any free capacity, so no
conversation waits on a missed wake-up."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.background import Periodic
from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_router.routing import service

log = logging.getLogger(__name__)

Step = Callable[[AsyncSession, Outbox], Awaitable[int]]


def steps(config: service.RoutingConfig, memory: service.SweepMemory | None = None) -> list[tuple[str, Step]]:
    """A tick's steps, in order: capacity is put back and waiting conversations' priority and requirement
    brought up to date before the queue is served (with ``memory``, by the agents changed since the last
    pass, and all of them every ``full_every`` passes)."""
    return [
        ("offers timed out", service.expire_offers),
        ("agents silent, set offline", lambda s, o: service.silence_stale_agents(s, o, config)),
        ("conversations requeued from offline agents", lambda s, o: service.requeue_abandoned(s, o, config)),
        ("unanswered conversations requeued", lambda s, o: service.requeue_unanswered(s, o, config)),
        ("SLA breaches raised", service.mark_sla_breaches),
        ("escalation steps taken", service.escalate),
        ("waiting conversations placed", lambda s, o: service.sweep(s, o, memory)),
    ]


async def sweep_once(
    db: Database, outbox: Outbox, config: service.RoutingConfig, memory: service.SweepMemory | None = None
) -> None:
    """One tick. Each step is its own transaction, so one failing (a lock timeout, a bad row) does not
    hold back the steps before it, and the next tick runs them all again."""
    for what, step in steps(config, memory):
        async with db.unit_of_work() as session:
            n = await step(session, outbox)
        if n:
            log.info("sweeper: %s", what, extra={"count": n})


def queue_sweeper(db: Database, outbox: Outbox, interval_s: float, config: service.RoutingConfig) -> Periodic:
    memory = service.SweepMemory()
    return Periodic("queue-sweeper", lambda: sweep_once(db, outbox, config, memory), interval_s)
