"""What one service process owns while it runs; created in the app's lifespan, closed on exit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox, OutboxRelay
from switchboard_common.kafka.consumer import ConsumerRunner, Handlers
from switchboard_common.kafka.producer import EventPublisher
from switchboard_common.settings import CommonSettings


@dataclass
class ServiceRuntime:
    name: str
    settings: CommonSettings
    db: Database
    publisher: EventPublisher
    consumers: list[ConsumerRunner] = field(default_factory=list)
    relays: list[OutboxRelay] = field(default_factory=list)
    background: list[Background] = field(default_factory=list)
    outbox_: Outbox | None = None
    # Consumer groups reported by /health/ready without deciding it: work beside the service's purpose (a
    # stuck reply dispatcher must not take ingest's webhooks out of the load balancer).
    advisory_groups: set[str] = field(default_factory=set)

    @property
    def outbox(self) -> Outbox:
        """The service's outbox (only services that emit events from DB changes have one)."""
        if self.outbox_ is None:
            raise RuntimeError(f"service {self.name} has no outbox")
        return self.outbox_

    def add_consumer(
        self,
        group_id: str,
        handlers: Handlers,
        *,
        fetch_max_wait_ms: int | None = None,
        advisory: bool = False,
    ) -> None:
        """Consume, in ``group_id``, the topics that carry the handled payload types, for the life of the
        process. ``handlers`` maps each payload type to its batch handler, in causal order.
        ``fetch_max_wait_ms`` overrides the service's fetch wait for a consumer off the hot path;
        ``advisory``: its health is reported but does not decide readiness."""
        if advisory:
            self.advisory_groups.add(group_id)
        settings = self.settings
        if fetch_max_wait_ms is not None:
            settings = settings.model_copy(update={"consumer_fetch_max_wait_ms": fetch_max_wait_ms})
        self.consumers.append(
            ConsumerRunner(
                settings=settings,
                db=self.db,
                publisher=self.publisher,
                group_id=group_id,
                handlers=handlers,
            )
        )

    def use_outbox(self, outbox: Outbox) -> None:
        """Adopt ``outbox`` and run its relay for the life of the process."""
        self.outbox_ = outbox
        self.relays.append(OutboxRelay(self.db, outbox, self.publisher, self.settings))


class Background(Protocol):
    """A job a service runs beside its consumers (e.g. the router's queue sweeper)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
