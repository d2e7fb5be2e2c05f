"""Clients that behave like providers: a request left unanswered (timeout, refused or dropped connection)
or answered 5xx is sent again, with the same message id and content, until it is answered or the client
gives up; 2xx and 4xx are final. Twilio, Meta and Mailgun all retry this way."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from switchboard_common.settings import DEV_INGEST_API_KEY

INGEST_AUTH = {"Authorization": f"Bearer {DEV_INGEST_API_KEY}"}


@dataclass
class Outcome:
    """What became of one send of a message (which may take several attempts)."""

    external_id: str
    status: int | None = None  # the final answer's status; None: the client gave up
    message_id: str | None = None  # Switchboard's id, from a 2xx answer
    accept: str | None = None  # "accepted" or "duplicate" (2xx only)
    attempts: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # "503", "timeout", "connect", ...

    @property
    def acked(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def message_body(scenario: str, run: str, i: int, customers: int) -> dict[str, Any]:
    """Message ``i`` of a scenario: customers take turns, so some messages join an open conversation and
    some open one. The content is fixed by ``i``, so a resend is the same message."""
    customer = i % customers
    return {
        "message_id": f"{run}-{scenario}-{i}",
        "customer": {
            "id": f"{run}-{scenario}-c{customer}",
            "name": f"Customer {customer}",
            "email": f"{run}-{scenario}-c{customer}@example.com",
        },
        "text": f"message {i} of {scenario}",
        "skills": ["general"],
    }


class Provider:
    """Sends messages to ingest and retries like a provider does."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        give_up_after: float = 120.0,
        max_connections: int = 400,
    ) -> None:
        self.url = f"{url}/v1/messages"
        self.give_up_after = give_up_after
        self.client = httpx.AsyncClient(
            # pool=None: waiting for a free connection is the client's queue, not a failed attempt
            timeout=httpx.Timeout(timeout, pool=None),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=64),
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def send(self, body: dict[str, Any], outcome: Outcome | None = None) -> Outcome:
        outcome = outcome if outcome is not None else Outcome(str(body["message_id"]))
        give_up_at = time.monotonic() + self.give_up_after
        backoff = 0.25
        while True:
            outcome.attempts += 1
            try:
                answer = await self.client.post(self.url, json=body, headers=INGEST_AUTH)
            except httpx.TimeoutException:
                outcome.failures["timeout"] += 1
            except httpx.TransportError:
                outcome.failures["connect"] += 1
            else:
                if answer.status_code < 500:
                    outcome.status = answer.status_code
                    if answer.is_success:
                        data = answer.json()
                        outcome.message_id = str(data.get("message_id"))
                        outcome.accept = str(data.get("status"))
                    return outcome
                outcome.failures[str(answer.status_code)] += 1
            if time.monotonic() + backoff > give_up_at:
                return outcome
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, 2.0)


def steady(bodies: Sequence[dict[str, Any]], rate: float, start: float = 0.0) -> list[Scheduled]:
    """``bodies`` at ``rate`` per second from ``start`` s."""
    return [(start + i / rate, body) for i, body in enumerate(bodies)]


Scheduled = tuple[float, dict[str, Any]]  # (seconds after the load starts, message)


async def send_on_schedule(
    provider: Provider, schedule: Sequence[Scheduled], outcomes: list[Outcome] | None = None
) -> list[Outcome]:
    """Open loop: send each message at its time whatever the answers so far (a provider does not slow
    down because Switchboard does), then wait for every send to end. Each send's Outcome is appended to
    ``outcomes`` when it starts, so a caller may watch them while this runs."""
    out = outcomes if outcomes is not None else []
    start = time.monotonic()
    tasks: list[asyncio.Task[Outcome]] = []
    for at, body in sorted(schedule, key=lambda item: item[0]):
        delay = start + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        outcome = Outcome(str(body["message_id"]))
        out.append(outcome)
        tasks.append(asyncio.create_task(provider.send(body, outcome)))
    await asyncio.gather(*tasks)
    return out
