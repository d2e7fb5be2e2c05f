from __future__ import annotations

from fastapi import FastAPI

from switchboard_common import topics
from switchboard_common.db.outbox import Outbox
from switchboard_common.http.app import create_service_app
from switchboard_common.kafka.consumer import per_event
from switchboard_common.runtime import ServiceRuntime
from switchboard_common.settings import Settings
from switchboard_router.agents.endpoints import router as agents_router
from switchboard_router.consumer import GROUP_ID, RoutingEventHandler
from switchboard_router.models import outbox_table
from switchboard_router.sweeper import QueueSweeper


async def _setup(runtime: ServiceRuntime, app: FastAPI) -> None:
    outbox = Outbox(outbox_table, runtime.settings)
    runtime.use_outbox(outbox)
    runtime.background.append(
        QueueSweeper(runtime.db, outbox, runtime.settings.router_sweep_interval_ms / 1000)
    )
    runtime.add_consumer(GROUP_ID, [topics.CONVERSATION_EVENTS], per_event(RoutingEventHandler(outbox)))


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        "router",
        settings or Settings(),
        [agents_router],
        setup=_setup,
        description="Assigns conversations to agents by skill and load: agents, presence, capacity and the "
        "queue.",
    )
