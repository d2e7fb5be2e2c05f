"""`make bench`: a private system on free ports, driven through ingest -> assignment, measured per process.

Order of a run: infrastructure, migrations, topics and the four services start; agents are created and set
online; the assignment watcher starts; a warm-up phase runs (not measured) and is waited for; an idle
window measures what every process burns doing nothing; then the measured phase: CPU and /metrics are
sampled, the load generator goes, the bench waits until every accepted message is seen assigned, lets the
system settle, and samples again. Optionally a burst phase and the raw ceilings follow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import REGISTRY, generate_latest

from switchboard_common.instrumentation import instrument_kafka
from switchboard_common.settings import DEV_INGEST_API_KEY, CommonSettings
from switchboard_devstack.agents import DRIVEN_ROUTER_ENV, create_online_agent
from switchboard_devstack.bench import ceilings, procstat, promscrape, report, wrk
from switchboard_devstack.bench.generators import (
    LeanGenerator,
    LoadResult,
    WrkGenerator,
    connections_for,
    tick_for,
)
from switchboard_devstack.bench.stats import rate_between, steady_rate, summary_ms
from switchboard_devstack.bench.watcher import AssignmentWatcher, message_id_for
from switchboard_devstack.ports import free_port
from switchboard_devstack.stack import (
    SERVICES,
    Infrastructure,
    ServiceProcesses,
    parse_replicas,
    prepare,
    service_env,
)

INGEST_AUTH = f"Bearer {DEV_INGEST_API_KEY}"
BENCH_APP_SECRET = "bench-whatsapp-app-secret"  # noqa: S105 - configured on the benchmarked ingest only
WEBHOOK_PATHS = {"api": "/v1/messages", "whatsapp": "/webhooks/whatsapp"}
SERVICE_NAMES = [s.name for s in SERVICES]
GENERATOR = "load generator"
BENCH_SELF = "bench watcher"


class _HelpFormatter(argparse.HelpFormatter):
    """Shows a default only where one is worth showing (not None, False or empty)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _replicas(text: str) -> dict[str, int]:
    try:
        return parse_replicas(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = _HelpFormatter
    mode = parser.add_argument_group("mode (fixed offered rate unless --saturate)")
    mode.add_argument("--rate", type=float, default=100.0, help="messages per second offered (open loop)")
    mode.add_argument(
        "--messages", type=int, default=None, help="messages in the measured phase (2000; --saturate: 10000)"
    )
    mode.add_argument(
        "--saturate", action="store_true", help="offer as fast as possible; report max sustained throughput"
    )
    mode.add_argument(
        "--burst",
        action="store_true",
        help="after the fixed-rate phase, offer 10x the rate for --burst-seconds",
    )
    mode.add_argument("--burst-seconds", type=float, default=2.0, help="length of the burst")
    mode.add_argument(
        "--ceilings",
        action="store_true",
        help="also measure an empty FastAPI endpoint and a bare produce->consume",
    )
    load = parser.add_argument_group("load")
    load.add_argument(
        "--connections",
        type=int,
        default=None,
        help="HTTP connections of the load generator (open loop: enough for 0.5 s of requests, at least 32; "
        "--saturate: 64)",
    )
    load.add_argument(
        "--tick-ms",
        type=float,
        default=None,
        help="open loop: the lean generator wakes at most this often and sends what is due within half a "
        "tick (default 3 requests' worth, 2..50 ms: each wake-up costs ~0.2 ms CPU on a VM like this)",
    )
    load.add_argument(
        "--generator",
        choices=["auto", "lean", "wrk"],
        default="auto",
        help="--saturate only (a fixed rate always uses the lean open-loop generator): auto takes wrk when "
        "it is on PATH",
    )
    load.add_argument(
        "--channel",
        choices=["api", "whatsapp"],
        default="api",
        help="the way in: the generic API channel, or WhatsApp Cloud API webhooks (each body signed with "
        "X-Hub-Signature-256, as Meta does; always the lean generator, since wrk cannot sign)",
    )
    load.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (-t)")
    load.add_argument("--duration", type=int, default=120, help="--saturate: stop offering after this many s")
    load.add_argument("--warmup", type=int, default=200, help="messages sent (and assigned) before measuring")
    load.add_argument(
        "--agents", type=int, default=50, help="agents online at least (more if capacity needs it)"
    )
    measure = parser.add_argument_group("measurement")
    measure.add_argument(
        "--idle-seconds", type=float, default=2.0, help="idle window sampled before the load"
    )
    measure.add_argument(
        "--settle", type=float, default=1.0, help="s after the last assignment before sampling"
    )
    measure.add_argument(
        "--assign-timeout",
        type=float,
        default=15.0,
        help="give up waiting for assignments after this many s without progress (the CPU window then "
        "includes the wait)",
    )
    measure.add_argument(
        "--watch-wait-ms",
        type=int,
        default=None,
        help="the watcher's fetch_max_wait_ms: the embedded broker may hold a fetch this long after data "
        "arrived, so it bounds the error of each assignment time (default 10; --saturate: 50, as only "
        "throughput is measured there). Each fetch costs the broker and the bench CPU",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    output.add_argument(
        "--compare", type=Path, default=None, help="print deltas against an earlier --json file"
    )
    parser.add_argument(
        "--replicas",
        type=_replicas,
        default=None,
        metavar="NAME=N[,NAME=N]",
        help="processes per service (1 each unless named), e.g. conversation=2,router=2: the replicas of a "
        "service join one consumer group and share its partitions; ingest replicas share the load "
        "generator's connections (lean generator only)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the services (repeatable)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(".devstack/bench"), help="data and logs (emptied first)"
    )


@dataclass
class Stack:
    services: ServiceProcesses
    roots: dict[str, int]  # process name (a service, or a replica: "router#2") -> pid whose tree is sampled
    bootstrap: str
    topic_prefix: str

    def processes(self, name: str) -> list[str]:
        """The sampled processes that make up ``name``: a service's replicas, or ``name`` itself."""
        if name in self.services.replicas:
            return [i.name for i in self.services.of(name)]
        return [name]


@dataclass
class Window:
    """Samples at the start and end of a measured window."""

    cpu_start: dict[str, procstat.TreeSample]
    cpu_end: dict[str, procstat.TreeSample]
    self_start: float
    self_end: float
    metrics_start: dict[str, promscrape.Samples]
    metrics_end: dict[str, promscrape.Samples]
    own_kafka_start: promscrape.Samples
    own_kafka_end: promscrape.Samples
    start: float
    end: float


def _self_cpu() -> float:
    stat = procstat.read_stat(os.getpid())
    return stat.own_ticks / procstat.CLK_TCK if stat is not None else 0.0


def _own_kafka() -> promscrape.Samples:
    return promscrape.parse(generate_latest(REGISTRY).decode(), [promscrape.KAFKA_REQUESTS])


class Bench:
    def __init__(self, args: argparse.Namespace, stack: Stack) -> None:
        self.args = args
        self.stack = stack
        self.run_id = uuid.uuid4().hex[:6]
        self.watch_wait_ms = args.watch_wait_ms or (50 if args.saturate else 10)
        self.watcher = AssignmentWatcher(stack.bootstrap, stack.topic_prefix, self.watch_wait_ms)
        self.client = httpx.AsyncClient(timeout=30)
        self.consumer_lag: dict[str, dict[str, float]] = {}

    def url(self, service: str) -> str:
        return self.stack.services.url(service)

    @property
    def ingest_ports(self) -> list[int]:
        return [i.port for i in self.stack.services.of("ingest")]

    # -- setup --------------------------------------------------------------------------------------------

    async def create_agents(self, messages: int) -> tuple[int, int]:
        agents = max(self.args.agents, math.ceil(messages / 99))
        capacity = min(100, math.ceil(messages / agents) + 1)
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with gate:
                await create_online_agent(
                    self.client,
                    self.url("router"),
                    name=f"bench {i}",
                    email=f"bench-{self.run_id}-{i}@example.com",
                    capacity=capacity,
                )

        await asyncio.gather(*(one(i) for i in range(agents)))
        return agents, capacity

    # -- sampling -----------------------------------------------------------------------------------------

    async def sample(
        self, *, end: bool
    ) -> tuple[
        dict[str, procstat.TreeSample], float, dict[str, promscrape.Samples], promscrape.Samples, float
    ]:
        """CPU of every process and the services' counters. The scrapes lie outside the CPU window: at its
        start they come first, at its end last."""
        urls = {i.name: i.url for i in self.stack.services.instances}
        metrics = {} if end else await promscrape.scrape(self.client, urls)
        own_kafka = _own_kafka()
        cpu = procstat.snapshot(self.stack.roots)
        at = time.monotonic()
        own = _self_cpu()
        if end:
            own_kafka = _own_kafka()
            metrics = await promscrape.scrape(self.client, urls)
        return cpu, own, metrics, own_kafka, at

    async def idle_rates(self) -> dict[str, float]:
        """CPU ms per second that each process burns with no load and the watcher paused."""
        self.watcher.pause()
        try:
            return await self._idle_rates()
        finally:
            self.watcher.resume()

    async def _idle_rates(self) -> dict[str, float]:
        """CPU ms per second that each process burns with no load."""
        before = procstat.snapshot(self.stack.roots)
        own_before, t0 = _self_cpu(), time.monotonic()
        await asyncio.sleep(self.args.idle_seconds)
        after = procstat.snapshot(self.stack.roots)
        own_after, elapsed = _self_cpu(), time.monotonic() - t0
        rates = {
            name: procstat.delta(before[name], after[name]).cpu_seconds * 1000 / elapsed for name in after
        }
        rates[BENCH_SELF] = (own_after - own_before) * 1000 / elapsed
        return rates

    # -- phases -------------------------------------------------------------------------------------------

    def _use_wrk(self, saturate: bool) -> str | None:
        """wrk drives closed-loop (saturation) phases only: a fixed offered rate needs the open loop. It
        cannot sign webhook bodies (an HMAC per body), so webhook channels use the lean generator."""
        if self.args.channel != "api":
            if self.args.generator == "wrk":
                raise SystemExit("--generator wrk cannot sign webhook bodies: use --generator lean")
            return None
        if not saturate or self.args.generator == "lean":
            return None
        if len(self.ingest_ports) > 1:
            if self.args.generator == "wrk":
                raise SystemExit("--generator wrk drives one URL: with ingest replicas use --generator lean")
            return None
        binary = wrk.wrk_path()
        if binary is None and self.args.generator == "wrk":
            raise SystemExit("--generator wrk: wrk is not on PATH (apt-get install wrk)")
        return binary

    async def drive(
        self, name: str, *, count: int, rate: float, saturate: bool = False, measured: bool = True
    ) -> tuple[LoadResult, Window | None, float]:
        """One phase: returns the generator's result, the window samples (``measured``), and the monotonic
        time of the last assignment seen."""
        prefix = f"b{self.run_id}{name[0]}-"
        binary = self._use_wrk(saturate)
        generator: LeanGenerator | WrkGenerator
        if binary is not None:
            generator = WrkGenerator(
                binary,
                self.ingest_ports[0],
                prefix=prefix,
                quota=count,
                threads=self.args.wrk_threads,
                connections=connections_for(self.args.connections, 0.0),
                duration=self.args.duration,
                auth=INGEST_AUTH,
            )
        else:
            generator = LeanGenerator(
                self.ingest_ports,
                prefix=prefix,
                count=count,
                rate=rate,
                connections=connections_for(self.args.connections, rate),
                duration=self.args.duration if rate <= 0 else 0.0,
                tick_ms=tick_for(self.args.tick_ms, rate),
                auth=INGEST_AUTH,
                path=WEBHOOK_PATHS[self.args.channel],
                channel=self.args.channel,
                secret=BENCH_APP_SECRET,
            )
        try:
            if isinstance(generator, LeanGenerator):
                await generator.start()
            start = await self.sample(end=False) if measured else None
            lag = promscrape.LagSampler(self.client, {i.name: i.url for i in self.stack.services.instances})
            if measured:
                lag.start()
            await generator.go()
            if isinstance(generator, WrkGenerator):
                done_at, gen_cpu, output = await generator.finish()
                result = await generator.result(done_at, gen_cpu, output)
            else:
                done_at, gen_cpu = await generator.finish()
                result = await generator.result(done_at, gen_cpu)
        except BaseException:
            await generator.kill()
            await lag.stop()
            raise
        accepted = _accepted_ids(result)
        assigned = await self.watcher.wait_assigned(
            accepted, target=result.ok, idle_timeout=self.args.assign_timeout, deadline=time.monotonic() + 900
        )
        self.consumer_lag = await lag.stop()
        times = self.watcher.message_assigned_at
        last = max((times[m] for m in accepted if m in times), default=done_at)
        if assigned < result.ok:
            print(f"  {name}: {result.ok - assigned} accepted messages not seen assigned", flush=True)
        window = None
        if start is not None:
            await asyncio.sleep(self.args.settle)
            end = await self.sample(end=True)
            window = Window(
                cpu_start=start[0],
                cpu_end=end[0],
                self_start=start[1],
                self_end=end[1],
                metrics_start=start[2],
                metrics_end=end[2],
                own_kafka_start=start[3],
                own_kafka_end=end[3],
                start=start[4],
                end=end[4],
            )
        return result, window, last

    # -- the whole run ------------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        args = self.args
        messages = args.messages or (10_000 if args.saturate else 2000)
        burst_count = (
            math.ceil(args.rate * 10 * args.burst_seconds) if args.burst and not args.saturate else 0
        )
        total = args.warmup + messages + burst_count
        print("Creating agents ...", flush=True)
        agents, capacity = await self.create_agents(total)
        await self.watcher.start()
        try:
            if args.warmup:
                print(f"Warm-up: {args.warmup} messages ...", flush=True)
                await self.drive("warmup", count=args.warmup, rate=min(args.rate, 200.0), measured=False)
            print(f"Idle windows: 2 x {args.idle_seconds:g} s ...", flush=True)
            idle = await self.idle_rates()
            watched = await self._idle_rates()
            idle["broker_with_watcher"] = watched.get("broker", math.nan)
            idle[BENCH_SELF] = watched[BENCH_SELF]
            label = "saturation" if args.saturate else f"{messages} messages at {args.rate:g}/s"
            print(f"Measured phase: {label} ...", flush=True)
            result, window, last = await self.drive(
                "measured", count=messages, rate=0.0 if args.saturate else args.rate, saturate=args.saturate
            )
            assert window is not None
            doc = self.document(result, window, last, idle, messages, agents, capacity)
            doc["consumer_lag"] = self.consumer_lag
            if burst_count:
                print(f"Burst: {burst_count} messages at {args.rate * 10:g}/s ...", flush=True)
                burst, _, burst_last = await self.drive(
                    "burst", count=burst_count, rate=args.rate * 10, measured=False
                )
                doc["burst"] = self.latency_section(burst, burst_last)
            doc["memory"] = memory(self.stack.roots)
        finally:
            await self.watcher.stop()
            await self.client.aclose()
        return doc

    # -- figures ------------------------------------------------------------------------------------------

    def latency_section(self, result: LoadResult, last_assigned: float) -> dict[str, Any]:
        assigned_at = self.watcher.message_assigned_at
        section: dict[str, Any] = {
            "generator": result.generator,
            "offered_per_s": result.rate or None,
            "connections": result.connections,
            "sent": result.sent,
            "accepted": result.ok,
            "failed": result.failed,
            "unanswered": result.unanswered,
            "load_seconds": result.done_at - result.go_at,
            "accepted_per_s": result.ok / max(result.done_at - result.go_at, 1e-9),
        }
        ids = [message_id_for(e, result.channel) for e in result.external_ids]
        times = [assigned_at[m] for m in ids if m in assigned_at]
        section["assigned"] = len(times)
        section["drain_seconds"] = max(0.0, last_assigned - result.done_at)
        section["end_to_end_per_s"] = len(times) / max(last_assigned - result.go_at, 1e-9)
        section["assigned_steady_per_s"] = steady_rate(times)
        section["assigned_during_load_per_s"] = rate_between(
            times, result.go_at + 0.2 * (result.done_at - result.go_at), result.done_at
        )
        latency: dict[str, Any] = {}
        if result.wrk is not None:
            latency["ack (wrk, closed loop)"] = result.wrk.latency_ms
            section["wrk_errors"] = result.wrk.errors
        else:
            ok = [i for i, s in enumerate(result.status) if 200 <= s < 300]
            interval = 1.0 / result.rate if result.rate > 0 else 0.0
            due = [result.t0 + i * interval for i in range(result.sent)] if interval else result.send
            latency["ack"] = summary_ms([result.ack[i] - result.send[i] for i in ok])
            latency["ack -> assigned"] = summary_ms(
                [assigned_at[ids[i]] - result.ack[i] for i in ok if ids[i] in assigned_at]
            )
            latency["due -> assigned"] = summary_ms(
                [assigned_at[ids[i]] - due[i] for i in ok if ids[i] in assigned_at]
            )
            if interval:
                latency["send lag (sent - due)"] = summary_ms(
                    [result.send[i] - due[i] for i in range(result.sent)]
                )
            section["reconnects"] = result.reconnects
            if result.sample_body and result.channel == "api":  # webhooks answer counts, not ids
                section["message_id_check"] = _check_sample(result)
        section["latency_ms"] = latency
        return section

    def document(
        self,
        result: LoadResult,
        window: Window,
        last: float,
        idle: dict[str, float],
        messages: int,
        agents: int,
        capacity: int,
    ) -> dict[str, Any]:
        args = self.args
        per = max(result.ok, 1)
        seconds = window.end - window.start
        cpu: dict[str, dict[str, Any]] = {}
        for name in [*SERVICE_NAMES, "postgresql", "broker"]:
            parts = self.stack.processes(name)
            if any(p not in window.cpu_end for p in parts):
                cpu[name] = {"external": True}
                continue
            deltas = {p: procstat.delta(window.cpu_start[p], window.cpu_end[p]) for p in parts}
            cpu[name] = _cpu_row(procstat.total(deltas.values()), _idle_total(idle, parts), per, seconds)
            if len(parts) > 1:
                # the service's row is the sum over its replicas; each replica's own row is kept too
                cpu[name]["replicas"] = {
                    p: _cpu_row(d, idle.get(p, math.nan), per, seconds) for p, d in deltas.items()
                }
        if "ms_per_msg" in cpu["broker"]:
            # The watcher's polling keeps the broker busy too; estimated from the two idle windows.
            extra = idle.get("broker_with_watcher", math.nan) - idle.get("broker", math.nan)
            cpu["broker"]["watcher_idle_ms_per_s"] = extra
            cpu["broker"]["watcher_ms_per_msg"] = extra * seconds / per
        system = sum(row.get("cpu_seconds", 0.0) for row in cpu.values())
        cpu[GENERATOR] = {
            "cpu_seconds": result.cpu_seconds,
            "ms_per_msg": result.cpu_seconds * 1000 / max(result.sent, 1),
            "cores": result.cpu_seconds / max(result.done_at - result.go_at, 1e-9),
        }
        own = window.self_end - window.self_start
        cpu[BENCH_SELF] = {
            "cpu_seconds": own,
            "ms_per_msg": own * 1000 / per,
            "cores": own / seconds,
            "idle_ms_per_s": idle.get(BENCH_SELF),
            "above_idle_ms_per_msg": (own * 1000 - idle.get(BENCH_SELF, math.nan) * seconds) / per,
        }
        counters: dict[str, dict[str, Any]] = {}
        for name in SERVICE_NAMES:
            # summed over the replicas that answered at both ends of the window
            parts = self.stack.processes(name)
            answered = [p for p in parts if window.metrics_start.get(p) and window.metrics_end.get(p)]
            scraped = promscrape.combine(
                promscrape.delta(window.metrics_start[p], window.metrics_end[p]) for p in answered
            )
            counters[name] = _counter_row(scraped, per, bool(answered))
            if len(parts) > 1 and answered:
                counters[name]["replicas"] = len(parts)
                counters[name]["replicas_scraped"] = len(answered)
        counters[BENCH_SELF] = _counter_row(
            promscrape.delta(window.own_kafka_start, window.own_kafka_end), per, True
        )
        counters[BENCH_SELF]["sql_statements"] = None
        counters[BENCH_SELF]["sql_transactions"] = None
        return {
            "version": 1,
            "config": {
                "mode": "saturate" if args.saturate else "fixed-rate",
                "messages": messages,
                "rate": None if args.saturate else args.rate,
                "connections": result.connections,
                "generator": result.generator,
                "channel": args.channel,
                "agents": agents,
                "capacity": capacity,
                "warmup": args.warmup,
                "settle_s": args.settle,
                "watch_wait_ms": self.watch_wait_ms,
                "env": args.env,
                "replicas": dict(self.stack.services.replicas),
                "cpus": os.cpu_count(),
                "clk_tck": procstat.CLK_TCK,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            "window_seconds": seconds,
            "throughput": self.latency_section(result, last),
            "cpu": cpu,
            "cpu_total_system_ms_per_msg": system * 1000 / per,
            "cpu_total_ms_per_msg": (system + result.cpu_seconds) * 1000 / per,
            "generator_ms_per_request": result.cpu_seconds * 1000 / max(result.sent, 1),
            "counters": counters,
        }


def _accepted_ids(result: LoadResult) -> set[str]:
    if result.wrk is not None:
        # wrk does not say which requests were answered 2xx: wait for all it sent, minus the failures.
        return result.all_ids()
    return set(result.acked_ids())


def _check_sample(result: LoadResult) -> str:
    """Does ingest's answer carry the message id the bench derives (uuid5 of the external id)?"""
    try:
        returned = json.loads(result.sample_body).get("message_id")
    except ValueError:
        return "unreadable answer"
    derived = {message_id_for(e, result.channel) for e in result.external_ids}
    return "ok" if returned in derived else f"MISMATCH: ingest returned {returned}"


def _idle_total(idle: dict[str, float], parts: list[str]) -> float:
    """What ``parts`` (a service's replicas) burn idle together, in ms per second."""
    return sum(idle.get(p, math.nan) for p in parts)


def _cpu_row(d: procstat.TreeDelta, idle_rate: float, per: int, seconds: float) -> dict[str, Any]:
    return {
        "cpu_seconds": d.cpu_seconds,
        "ms_per_msg": d.cpu_seconds * 1000 / per,
        "above_idle_ms_per_msg": (d.cpu_seconds * 1000 - idle_rate * seconds) / per,
        "cores": d.cpu_seconds / seconds,
        "idle_ms_per_s": idle_rate,
        "processes": d.processes,
        "started": d.started,
        "exited": d.exited,
    }


def _counter_row(d: promscrape.Samples, per: int, scraped: bool) -> dict[str, Any]:
    if not scraped:
        return {"scraped": False}
    return {
        # absolute, not per message: any JoinGroup inside the window means a consumer group rebalanced
        "group_joins": promscrape.by_label(d, promscrape.KAFKA_REQUESTS, "api").get("JoinGroupRequest", 0.0),
        "sql_statements": promscrape.total(d, promscrape.SQL_STATEMENTS) / per,
        "sql_transactions": promscrape.total(d, promscrape.SQL_TRANSACTIONS) / per,
        "kafka_requests": promscrape.total(d, promscrape.KAFKA_REQUESTS) / per,
        "sql_by_verb": {
            k: v / per for k, v in promscrape.by_label(d, promscrape.SQL_STATEMENTS, "verb").items()
        },
        "sql_by_outcome": {
            k: v / per for k, v in promscrape.by_label(d, promscrape.SQL_TRANSACTIONS, "outcome").items()
        },
        "kafka_by_api": {
            k: v / per for k, v in promscrape.by_label(d, promscrape.KAFKA_REQUESTS, "api").items()
        },
    }


def memory(roots: dict[str, int]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, pid in roots.items():
        if name == "postgresql":
            pss, procs = procstat.tree_pss_kib(pid)
            total = sum(
                procstat.memory_kib(p.pid, "VmRSS") or 0 for p in procstat.tree(pid, procstat.all_stats())
            )
            out[name] = {
                "pid": pid,
                "processes": procs,
                "pss_mib": pss / 1024 if pss is not None else None,
                "rss_mib": total / 1024,
            }
        else:
            rss, hwm = procstat.memory_kib(pid, "VmRSS"), procstat.memory_kib(pid, "VmHWM")
            out[name] = {
                "pid": pid,
                "rss_mib": rss / 1024 if rss is not None else None,
                "hwm_mib": hwm / 1024 if hwm is not None else None,
            }
    return out


def _service_env(args: argparse.Namespace, base: dict[str, str]) -> dict[str, str]:
    env = service_env(base) | DRIVEN_ROUTER_ENV
    if args.channel == "whatsapp":
        # Inbound only: replies are not benchmarked, so the access token is never used.
        env |= {
            "SWITCHBOARD_WHATSAPP_APP_SECRET": BENCH_APP_SECRET,
            "SWITCHBOARD_WHATSAPP_VERIFY_TOKEN": "bench-verify-token",
            "SWITCHBOARD_WHATSAPP_ACCESS_TOKEN": "bench-access-token",
            "SWITCHBOARD_WHATSAPP_PHONE_NUMBER_ID": "bench-number",
        }
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    return env


def run_bench(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir.resolve()
    # Comparable runs start from an empty database; the logs are this run's only.
    shutil.rmtree(workdir / "pgdata", ignore_errors=True)
    shutil.rmtree(workdir / "logs", ignore_errors=True)
    for var in ("SWITCHBOARD_ENVIRONMENT", "SWITCHBOARD_TOPIC_PREFIX"):
        os.environ.pop(var, None)
    instrument_kafka()  # the watcher's own Kafka requests are reported too
    infra = Infrastructure(
        workdir, database="switchboard_bench", pg_port=free_port(), broker_port=free_port()
    )
    print(f"Starting infrastructure ({', '.join(infra.embedded) or 'external'}) ...", flush=True)
    infra.start()
    services: ServiceProcesses | None = None
    try:
        env = infra.env()
        if "broker" not in infra.embedded:
            env["SWITCHBOARD_TOPIC_PREFIX"] = f"bench-{uuid.uuid4().hex[:6]}."
        os.environ.update(env)
        settings = CommonSettings()
        prepare(settings)
        services = ServiceProcesses(
            _service_env(args, env),
            workdir / "logs",
            ports={s.name: free_port() for s in SERVICES},
            replicas=args.replicas,
        )
        scaled = ", ".join(f"{n} x{k}" for n, k in services.replicas.items() if k > 1)
        print(f"Starting services{f' ({scaled})' if scaled else ''} ...", flush=True)
        services.start()
        stack = Stack(
            services=services,
            roots={**services.pids(), **infra.pids()},
            bootstrap=settings.kafka_bootstrap,
            topic_prefix=settings.topic_prefix,
        )
        doc = _run_async(Bench(args, stack).run())
        if args.ceilings:
            print("Raw ceilings ...", flush=True)
            try:
                doc["ceilings"] = ceilings.measure(args, settings)
            except Exception as exc:  # the main figures are worth printing all the same
                doc["ceilings"] = {"failed": {"summary": f"{type(exc).__name__}: {exc}"}}
        dead = services.exited()
        if dead:
            doc["services_exited"] = dead
    finally:
        if services is not None:
            services.stop()
        infra.stop()
    print(report.render(doc))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        print(f"figures written to {args.json}")
    if args.compare is not None:
        print(report.compare(json.loads(args.compare.read_text()), doc))
    throughput = doc["throughput"]
    ok = throughput["failed"] == 0 and throughput["assigned"] >= throughput["accepted"] > 0
    return 0 if ok else 1


def _run_async(coro: Any) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        result: dict[str, Any] = asyncio.run(coro)
        return result
    return uvloop.run(coro)
