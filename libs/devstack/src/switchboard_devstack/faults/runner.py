"""`make faults`: one private system on free ports; each scenario resets the data, creates agents, drives
provider-like load while injecting its fault, waits until the system is quiescent, and checks the
invariants on what PostgreSQL and the broker hold. Prints scenario x invariant; exits 1 if any failed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path

from switchboard_common import topics
from switchboard_devstack.faults import probe
from switchboard_devstack.faults.invariants import Snapshot, evaluate, progress_key, settled
from switchboard_devstack.faults.load import Outcome, Provider
from switchboard_devstack.faults.report import ScenarioResult, render
from switchboard_devstack.faults.scenarios import SCENARIOS, Context, Scenario, by_name, customers
from switchboard_devstack.faults.system import Resolver, RssSampler, System

# How long the system may make no progress at all before the checks are made on what it has (a consumer
# rejoining its group after a restart can take several seconds with the embedded broker).
IDLE_LIMIT_S = 30.0
SETTLE_LIMIT_S = 180.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="run only these scenarios (repeatable); --list names them",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--quick", action="store_true", help="SIGKILL only (no SIGTERM scenarios), shorter load phases"
    )
    parser.add_argument("--rate", type=float, default=30.0, help="steady messages per second (default 30)")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds of load per scenario (default 20; --quick: 12)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(".devstack/faults"), help="data and logs (emptied first)"
    )


def selected(args: argparse.Namespace) -> list[Scenario]:
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    if names:
        return by_name(names)
    return [s for s in SCENARIOS if s.quick or not args.quick]


def run_faults(args: argparse.Namespace) -> int:
    if args.list:
        for s in SCENARIOS:
            print(f"  {s.name:<22} {s.summary}{'' if s.quick else '  (not in --quick)'}")
        return 0
    try:
        scenarios = selected(args)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    duration = args.duration or (12.0 if args.quick else 20.0)
    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir / "pgdata", ignore_errors=True)
    shutil.rmtree(workdir / "logs", ignore_errors=True)
    for var in ("SWITCHBOARD_ENVIRONMENT", "SWITCHBOARD_TOPIC_PREFIX"):
        os.environ.pop(var, None)
    started = time.monotonic()
    system = System(workdir)
    print(f"Starting PostgreSQL, the broker and the services (workdir {workdir}) ...", flush=True)
    try:
        system.start()
        results = asyncio.run(_run_all(system, scenarios, args.rate, duration))
    finally:
        print("Stopping ...", flush=True)
        system.stop()
    print()
    print(render(results, time.monotonic() - started))
    print(f"\nlogs: {workdir / 'logs'}  (PostgreSQL's: {workdir / 'pgdata' / 'server.log'})")
    return 0 if all(r.ok for r in results) else 1


async def _run_all(
    system: System, scenarios: list[Scenario], rate: float, duration: float
) -> list[ScenarioResult]:
    run = uuid.uuid4().hex[:6]
    results = []
    try:
        for n, scenario in enumerate(scenarios, 1):
            print(f"[{n}/{len(scenarios)}] {scenario.name}: {scenario.summary} ...", flush=True)
            result = ScenarioResult(scenario.name)
            t0 = time.monotonic()
            try:
                await _run_one(system, scenario, Context(system, _no_provider(), run, rate, duration), result)
            except Exception as exc:
                result.error = f"{type(exc).__name__}: {exc}"
            result.seconds = time.monotonic() - t0
            failed = [c.invariant for c in result.checks if not c.ok]
            verdict = "ok" if result.ok else f"FAILED {', '.join(failed)} {result.error or ''}".rstrip()
            print(f"      {verdict} ({result.seconds:.0f} s)", flush=True)
            results.append(result)
    finally:
        await system.aclose()
    return results


def _no_provider() -> Provider:
    return Provider("http://127.0.0.1:1")  # replaced once the scenario's topology is up


async def _run_one(system: System, scenario: Scenario, ctx: Context, result: ScenarioResult) -> None:
    system.problems = []
    await asyncio.to_thread(system.topology, scenario.replicas)
    if revived := await system.revive():
        result.notes.append(f"restarted first (they had exited): {', '.join(revived)}")
    await probe.with_retries(lambda: probe.reset(system.engine))
    dlqs = probe.dlq_topics(system.topic_prefix)
    dlq_before = await probe.with_retries(lambda: probe.end_offsets(system.bootstrap, dlqs))
    agents, capacity = await system.create_agents(customers(scenario.messages(ctx)) + 100)
    await ctx.provider.close()
    ctx.provider = Provider(system.url("ingest"))
    rss = RssSampler(system.procs)
    resolver = Resolver(system)
    rss.start()
    resolver.start()
    try:
        try:
            outcomes = await scenario.drive(ctx, scenario.name)
        finally:
            await resolver.stop()
            await ctx.provider.close()
        snap, quiet, waited = await _settle(system, outcomes)
    finally:
        await rss.stop()
    snap.dlq_records = {
        t: n - dlq_before.get(t, 0)
        for t, n in (await probe.with_retries(lambda: probe.end_offsets(system.bootstrap, dlqs))).items()
    }
    snap.assigned_events = await probe.with_retries(
        lambda: probe.assigned_events(system.bootstrap, f"{system.topic_prefix}{topics.ROUTING_EVENTS}")
    )
    snap.max_rss_mib = dict(rss.max_mib)
    result.notes = ctx.notes + result.notes
    result.notes.append(
        f"{agents} agents x capacity {capacity}; {resolver.resolved} conversations resolved meanwhile"
    )
    result.notes.append(
        f"quiescent {waited:.1f} s after the load"
        if quiet
        else f"NOT quiescent: gave up after {waited:.1f} s"
    )
    if down := system.unexpectedly_down():
        system.problems.append(f"exited on their own: {', '.join(down)} (see their logs)")
    if system.problems:
        result.error = "; ".join(system.problems)
    result.checks = evaluate(outcomes, snap)


async def _settle(system: System, outcomes: list[Outcome]) -> tuple[Snapshot, bool, float]:
    """Poll PostgreSQL until the work the load caused has all arrived, or nothing moved for
    IDLE_LIMIT_S (then the checks show what is missing)."""
    acked = [o.external_id for o in outcomes if o.acked]
    start = last_change = time.monotonic()
    last_key: tuple[object, ...] | None = None
    snap: Snapshot | None = None
    while True:
        # PostgreSQL may still be recovering: then poll again
        with contextlib.suppress(Exception):
            snap = await probe.db_snapshot(system.engine, acked)
        now = time.monotonic()
        if snap is not None:
            if settled(outcomes, snap):
                return snap, True, now - start
            key = progress_key(snap)
            if key != last_key:
                last_key, last_change = key, now
        if now - last_change > IDLE_LIMIT_S or now - start > SETTLE_LIMIT_S:
            if snap is None:
                raise RuntimeError("PostgreSQL did not answer after the load")
            return snap, False, now - start
        await asyncio.sleep(1.0)
