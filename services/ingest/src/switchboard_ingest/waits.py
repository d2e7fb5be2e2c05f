"""The router's estimate of a queue's wait, for the voice greeting.

Twilio waits up to 15 s for the call's TwiML, and the caller hears silence meanwhile, so the router gets a
short total budget (``voice_wait_timeout_ms``): slow, unreachable, refusing or answering nonsense, it
costs the greeting its figure, never the call.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger(__name__)


class _Estimate(BaseModel):
    # The one field the greeting needs, of the router's QueueEstimate (extra fields ignored).
    estimated_wait_seconds: int | None = Field(ge=0)


class QueueWaits:
    """Asks the router (``GET /v1/queues/{queue}/estimate`` with a service key) on one client per app."""

    def __init__(self, client: httpx.AsyncClient, service_key: str, timeout_s: float) -> None:
        self._client = client
        self._auth = {"Authorization": f"Bearer {service_key}"}
        self._timeout_s = timeout_s

    async def expected_wait_s(self, queue: str) -> int | None:
        """The expected wait of a conversation arriving now in ``queue``; None when the router does not say
        in time (or says no online agent can serve the queue)."""
        url = f"/v1/queues/{quote(queue, safe='')}/estimate"
        try:
            # httpx's timeout bounds each phase (connect, each read); this bounds the whole exchange.
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.get(url, headers=self._auth)
        except (TimeoutError, httpx.HTTPError) as exc:
            log.warning("queue estimate unavailable", extra={"queue": queue, "error": repr(exc)})
            return None
        if response.status_code != 200:
            log.warning("queue estimate refused", extra={"queue": queue, "status": response.status_code})
            return None
        try:
            return _Estimate.model_validate_json(response.content).estimated_wait_seconds
        except ValidationError:
            log.warning("queue estimate unreadable", extra={"queue": queue})
            return None
