from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from switchboard_common.db.outbox import Outbox
from switchboard_common.http.app import create_service_app
from switchboard_common.runtime import ServiceRuntime
from switchboard_router.agents.endpoints import router as agents_router
from switchboard_router.consumer import GROUP_ID, handlers
from switchboard_router.hours.endpoints import router as hours_router
from switchboard_router.models import outbox_table
from switchboard_router.routing.service import RoutingConfig
from switchboard_router.rules.book import RuleBook
from switchboard_router.rules.endpoints import router as rules_router
from switchboard_router.settings import RouterSettings
from switchboard_router.skills.endpoints import router as skills_router
from switchboard_router.sweeper import queue_sweeper


def create_app(settings: RouterSettings | None = None) -> FastAPI:
    settings = settings or RouterSettings()
    sweep_interval_s = settings.router_sweep_interval_ms / 1000
    config = RoutingConfig(
        sticky_window=timedelta(seconds=settings.router_sticky_window_s),
        presence_timeout=timedelta(seconds=settings.router_presence_timeout_s),
        offline_grace=timedelta(seconds=settings.router_offline_grace_s),
        no_answer_timeout=timedelta(seconds=settings.router_no_answer_timeout_s),
        rules=RuleBook(
            settings.router_rules_refresh_s,
            settings.router_detect_languages,
            low_accuracy=settings.router_language_low_accuracy,
        ),
        handle_time_sample=settings.router_handle_time_sample,
        default_handle_time_s=settings.router_default_handle_time_s,
    )

    async def setup(runtime: ServiceRuntime, app: FastAPI) -> None:
        outbox = Outbox(outbox_table, runtime.settings)
        runtime.use_outbox(outbox)
        runtime.background.append(queue_sweeper(runtime.db, outbox, sweep_interval_s, config))
        runtime.add_consumer(GROUP_ID, handlers(outbox, config))

    return create_service_app(
        "router",
        settings,
        [agents_router, skills_router, rules_router, hours_router],
        setup=setup,
        description="Assigns conversations to agents by skill, proficiency, language and load: agents, "
        "teams, the skills catalogue, presence and heartbeats, capacity per workload, offers, and the queue.",
    )
