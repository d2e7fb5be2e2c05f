"""The scenarios: each drives provider-like load through ingest while it injects one fault, and returns
every send's outcome. The runner (``faults.runner``) resets the data before and checks the invariants
after each one."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from switchboard_devstack.faults.load import (
    Outcome,
    Provider,
    Scheduled,
    message_body,
    send_on_schedule,
    steady,
)
from switchboard_devstack.faults.system import System


@dataclass
class Context:
    system: System
    provider: Provider
    run: str
    rate: float
    duration: float
    notes: list[str] = field(default_factory=list)

    def bodies(self, scenario: str, count: int, first: int = 0) -> list[dict[str, Any]]:
        return [message_body(scenario, self.run, i, customers(count)) for i in range(first, first + count)]


def customers(messages: int) -> int:
    """Customers take turns: about three messages each, so conversations both open and grow."""
    return max(1, messages // 3)


Drive = Callable[[Context, str], Awaitable[list[Outcome]]]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    drive: Drive
    replicas: dict[str, int] = field(default_factory=dict)
    quick: bool = True  # part of --quick
    messages: Callable[[Context], int] = lambda ctx: int(ctx.rate * ctx.duration)


async def _under_load(
    ctx: Context, name: str, fault: Callable[[], Awaitable[str]], at: float
) -> list[Outcome]:
    """Steady load for the scenario's duration, with ``fault`` injected ``at`` s in (it may take a while:
    the load goes on meanwhile)."""
    schedule = steady(ctx.bodies(name, int(ctx.rate * ctx.duration)), ctx.rate)
    outcomes: list[Outcome] = []
    load = asyncio.create_task(send_on_schedule(ctx.provider, schedule, outcomes))
    try:
        await asyncio.sleep(at)
        ctx.notes.append(f"at {at:g} s: " + await fault())
        await load
    finally:
        if not load.done():
            load.cancel()
    ctx.notes.insert(0, f"{len(schedule)} messages at {ctx.rate:g}/s, {customers(len(schedule))} customers")
    return outcomes


def _signal_scenario(service: str, signum: signal.Signals) -> Scenario:
    async def drive(ctx: Context, name: str) -> list[Outcome]:
        return await _under_load(
            ctx, name, lambda: ctx.system.signal_and_restart(service, signum), at=ctx.duration * 0.25
        )

    verb = "killed" if signum == signal.SIGKILL else "stopped"
    return Scenario(
        f"{signum.name.lower()}-{service}",
        f"{service} {verb} by {signum.name} under load, then restarted",
        drive,
        quick=signum == signal.SIGKILL,
    )


async def _postgres(ctx: Context, name: str) -> list[Outcome]:
    return await _under_load(ctx, name, lambda: ctx.system.crash_postgres(down=3.0), at=ctx.duration * 0.25)


async def _broker(ctx: Context, name: str) -> list[Outcome]:
    return await _under_load(ctx, name, lambda: ctx.system.broker_outage(10.0), at=ctx.duration * 0.2)


async def _replicas(ctx: Context, name: str) -> list[Outcome]:
    async def kill_one_of_each() -> str:
        for instance in ("conversation#2", "router#2"):
            ctx.system.kill(instance)
        return "SIGKILL to conversation#2 and router#2 (left down: their partitions move to #1)"

    return await _under_load(ctx, name, kill_one_of_each, at=ctx.duration * 0.4)


DUPLICATE_IDS = 10
DUPLICATE_COPIES = 20
TWICE = 500


async def _duplicates(ctx: Context, name: str) -> list[Outcome]:
    """The same message 20x at once (for 10 ids), then 500 messages each sent twice, shuffled, at twice
    the steady rate (the steady rate of distinct messages)."""
    same = ctx.bodies(f"{name}-same", DUPLICATE_IDS)
    outcomes: list[Outcome] = []
    for body in same:
        outcomes += await send_on_schedule(ctx.provider, [(0.0, body)] * DUPLICATE_COPIES)
    twice = ctx.bodies(f"{name}-twice", TWICE) * 2
    random.Random(6).shuffle(twice)
    outcomes += await send_on_schedule(ctx.provider, steady(twice, ctx.rate * 2))
    answers = Counter((o.external_id, o.accept) for o in outcomes if o.acked)
    accepted_twice = sum(1 for (_, accept), n in answers.items() if accept == "accepted" and n > 1)
    ctx.notes.append(
        f"{DUPLICATE_IDS} ids x {DUPLICATE_COPIES} at once, then {TWICE} ids x 2 shuffled "
        f"at {ctx.rate * 2:g}/s: "
        f"{sum(o.accept == 'accepted' for o in outcomes)} answered accepted, "
        f"{sum(o.accept == 'duplicate' for o in outcomes)} duplicate, {accepted_twice} ids accepted twice"
    )
    return outcomes


BURST_SECONDS = 2.0


async def _burst(ctx: Context, name: str) -> list[Outcome]:
    """Steady rate, then 10x it for 2 s, then steady again."""
    calm = max(3.0, (ctx.duration - BURST_SECONDS) / 2)
    before = int(ctx.rate * calm)
    burst = int(ctx.rate * 10 * BURST_SECONDS)
    total = before * 2 + burst
    bodies = [message_body(name, ctx.run, i, customers(total)) for i in range(total)]
    schedule: list[Scheduled] = steady(bodies[:before], ctx.rate)
    schedule += steady(bodies[before : before + burst], ctx.rate * 10, start=calm)
    schedule += steady(bodies[before + burst :], ctx.rate, start=calm + BURST_SECONDS)
    outcomes = await send_on_schedule(ctx.provider, schedule)
    ctx.notes.append(
        f"{before} at {ctx.rate:g}/s, {burst} at {ctx.rate * 10:g}/s for {BURST_SECONDS:g} s, {before} at "
        f"{ctx.rate:g}/s"
    )
    return outcomes


def _burst_messages(ctx: Context) -> int:
    calm = max(3.0, (ctx.duration - BURST_SECONDS) / 2)
    return int(ctx.rate * calm) * 2 + int(ctx.rate * 10 * BURST_SECONDS)


SCENARIOS: list[Scenario] = [
    *(
        _signal_scenario(service, signum)
        for service in ("ingest", "conversation", "router", "metrics")
        for signum in (signal.SIGKILL, signal.SIGTERM)
    ),
    Scenario("postgres-kill", "PostgreSQL's postmaster SIGKILLed under load, restarted 3 s later", _postgres),
    Scenario("broker-outage", "the broker SIGSTOPped for 10 s under load, then SIGCONT", _broker),
    Scenario(
        "duplicates",
        "one message id 20x at once (10 ids); 500 messages each sent twice, shuffled",
        _duplicates,
        messages=lambda ctx: DUPLICATE_IDS + TWICE,
    ),
    Scenario(
        "burst", "10x the steady rate for 2 s between two steady phases", _burst, messages=_burst_messages
    ),
    Scenario(
        "replicas",
        "two conversation and two router replicas, one of each SIGKILLed midway and left down",
        _replicas,
        replicas={"conversation": 2, "router": 2},
    ),
]


def by_name(names: list[str]) -> list[Scenario]:
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(known)}")
    return [s for s in SCENARIOS if s.name in names]
