from __future__ import annotations

from fastapi import FastAPI

from switchboard_common.db.outbox import Outbox
from switchboard_common.http.app import create_service_app
from switchboard_common.runtime import ServiceRuntime
from switchboard_router.agents.endpoints import router as agents_router
from switchboard_router.consumer import GROUP_ID, handlers
from switchboard_router.models import outbox_table
from switchboard_router.settings import RouterSettings
from switchboard_router.sweeper import QueueSweeper


def create_app(settings: RouterSettings | None = None) -> FastAPI:
    settings = settings or RouterSettings()
    sweep_interval_s = settings.router_sweep_interval_ms / 1000

    async def setup(runtime: ServiceRuntime, app: FastAPI) -> None:
        outbox = Outbox(outbox_table, runtime.settings)
        runtime.use_outbox(outbox)
        runtime.background.append(QueueSweeper(runtime.db, outbox, sweep_interval_s))
        runtime.add_consumer(GROUP_ID, handlers(outbox))

    return create_service_app(
        "router",
        settings,
        [agents_router],
        setup=setup,
        description="Assigns conversations to agents by skill and load: agents, presence, capacity and the "
        "queue.",
    )
