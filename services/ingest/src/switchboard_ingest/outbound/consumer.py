"""The dispatcher's consumer: ``message.outbound`` events become scheduled deliveries. It never calls a
provider itself (a slow one would stall the partition); the dispatcher sends from the schedule."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.database import after_commit
from switchboard_common.events import MessageOutbound
from switchboard_common.kafka.consumer import Delivery, Handlers
from switchboard_ingest.outbound import service
from switchboard_ingest.outbound.dispatcher import Dispatcher

GROUP_ID = "ingest-dispatcher"


def handlers(dispatcher: Dispatcher) -> Handlers:
    async def on_outbound(session: AsyncSession, deliveries: Sequence[Delivery[MessageOutbound]]) -> None:
        await service.schedule(session, [(d.envelope, d.payload) for d in deliveries])
        after_commit(session, dispatcher.wake)

    return {MessageOutbound: on_outbound}
