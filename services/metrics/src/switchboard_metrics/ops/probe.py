"""Asking every service for its readiness, concurrently, through one HTTP client the process keeps.

The client is opened when the service starts and closed when it stops (``OpsHealthChecker`` is a
background job of the runtime): connections to the services are reused from one request of the view to
the next instead of being opened and torn down each time.

The metrics service reads its own readiness in process rather than through a URL: the answer is then about
the replica serving the view (a load-balanced URL could answer for any replica), and it needs no URL of
itself, which a replica rarely knows. A configured entry with the service's own name is answered that way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from switchboard_common.http.health import readiness
from switchboard_common.runtime import ServiceRuntime
from switchboard_metrics.ops import service
from switchboard_metrics.ops.schemas import OpsHealth, ServiceHealth
from switchboard_metrics.settings import MetricsSettings

# A little longer than the 2 s a service's readiness gives its own database and broker probes: a service
# whose database hangs still answers in time, and shows as unavailable with its checks, not unreachable.
PROBE_TIMEOUT_S = 2.5
READY_PATH = "/health/ready"


class OpsHealthChecker:
    def __init__(
        self,
        services: Mapping[str, str],
        own_name: str,
        *,
        timeout: float = PROBE_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.services = dict(services)
        self.own_name = own_name
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._timeout, transport=self._transport)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def check(self, runtime: ServiceRuntime, own_url: str) -> OpsHealth:
        """Every configured service's readiness and this one's, at once."""
        probes = [self._probe(name, url) for name, url in self.services.items() if name != self.own_name]
        results = await asyncio.gather(self._own(runtime, own_url), *probes)
        return service.overall(results, datetime.now(UTC))

    async def _own(self, runtime: ServiceRuntime, url: str) -> ServiceHealth:
        started = time.perf_counter()
        healthy, body = await readiness(runtime)
        elapsed = (time.perf_counter() - started) * 1000
        return service.summarize(self.own_name, url, 200 if healthy else 503, body, elapsed)

    async def _probe(self, name: str, url: str) -> ServiceHealth:
        if self._client is None:
            raise RuntimeError("OpsHealthChecker.start() was not called")
        started = time.perf_counter()
        try:
            # The client's timeout bounds each phase; this bounds the whole exchange (a slow trickle).
            async with asyncio.timeout(self._timeout):
                response = await self._client.get(url.rstrip("/") + READY_PATH)
        except TimeoutError:
            elapsed = (time.perf_counter() - started) * 1000
            return service.unreachable(name, url, f"no answer within {self._timeout:g} s", elapsed)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # Refused, reset, unknown host, a URL that is not one: the service cannot be asked.
            elapsed = (time.perf_counter() - started) * 1000
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return service.unreachable(name, url, detail, elapsed)
        elapsed = (time.perf_counter() - started) * 1000
        try:
            body: object = response.json()
        except ValueError:
            body = None
        return service.summarize(name, url, response.status_code, body, elapsed)


def install_ops(runtime: ServiceRuntime, app: FastAPI) -> OpsHealthChecker:
    """Set up the ops health view in the metrics service's ``setup``: the checker runs as a background job
    of ``runtime`` (its client opens at start, closes at stop) and ``GET /v1/ops/health`` finds it on
    ``app.state``."""
    settings = runtime.settings
    if not isinstance(settings, MetricsSettings):
        raise TypeError("the ops health view needs the metrics service's settings")
    checker = OpsHealthChecker(settings.metrics_ops_services, runtime.name)
    runtime.background.append(checker)
    app.state.ops_health = checker
    return checker
