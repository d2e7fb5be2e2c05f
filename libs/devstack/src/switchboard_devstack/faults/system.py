"""The system under fault: embedded PostgreSQL and broker and the four services as separate processes on
free ports, with the faults the suite injects (signals to one instance, a PostgreSQL crash, a broker
outage), the agents it needs, a memory sampler and a background resolver."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time
import uuid
from pathlib import Path

import httpx

from switchboard_common.settings import CommonSettings
from switchboard_devstack.agents import ADMIN, DRIVEN_ROUTER_ENV, create_online_agent
from switchboard_devstack.bench.procstat import memory_kib
from switchboard_devstack.faults import probe
from switchboard_devstack.ports import free_port
from switchboard_devstack.stack import SERVICES, Infrastructure, ServiceProcesses, prepare, service_env

AGENTS = 20
STOP_GRACE_S = 30.0  # Kubernetes' default terminationGracePeriodSeconds, as deploy/k8s uses


class System:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.infra = Infrastructure(
            workdir, database="switchboard_faults", pg_port=free_port(), broker_port=free_port()
        )
        self.services: ServiceProcesses | None = None
        self.replicas: dict[str, int] = {}
        self.settings: CommonSettings | None = None
        self.engine = probe.engine_for("postgresql+asyncpg://unused@127.0.0.1:1/none")
        self.client = httpx.AsyncClient(timeout=10)
        self.expected_down: set[str] = set()  # instances a scenario killed on purpose and left down
        self.problems: list[str] = []  # what went wrong in the current scenario besides the invariants

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.infra.embedded != ["postgresql", "broker"]:
            raise SystemExit(
                "the fault suite kills PostgreSQL and pauses the broker: it needs the embedded ones "
                "(unset SWITCHBOARD_DATABASE_URL and SWITCHBOARD_KAFKA_BOOTSTRAP)"
            )
        self.infra.start()
        env = self.infra.env()
        os.environ.update(env)
        self.settings = CommonSettings()
        prepare(self.settings)
        self.engine = probe.engine_for(self.infra.database_url)
        self._start_services({})

    def _start_services(self, replicas: dict[str, int]) -> None:
        self.services = ServiceProcesses(
            service_env({**self.infra.env(), **DRIVEN_ROUTER_ENV}),
            self.workdir / "logs",
            ports={s.name: free_port() for s in SERVICES},
            replicas=replicas,
        )
        self.replicas = dict(replicas)
        self.expected_down = set()
        self.services.start(timeout=120)

    def topology(self, replicas: dict[str, int]) -> None:
        """Run the services with ``replicas`` processes (a restart of all of them if that changes)."""
        if replicas == self.replicas and self.services is not None:
            return
        if self.services is not None:
            self.services.stop()
        self._start_services(replicas)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.engine.dispose()

    def stop(self) -> None:
        broker = self.infra.broker
        if broker is not None:
            broker.resume()  # a stopped process cannot act on SIGTERM
        if self.services is not None:
            self.services.stop()
        self.infra.stop()

    @property
    def procs(self) -> ServiceProcesses:
        assert self.services is not None
        return self.services

    @property
    def bootstrap(self) -> str:
        assert self.settings is not None
        return self.settings.kafka_bootstrap

    @property
    def topic_prefix(self) -> str:
        assert self.settings is not None
        return self.settings.topic_prefix

    def url(self, name: str) -> str:
        return self.procs.url(name)

    # -- readiness ----------------------------------------------------------------------------------------

    async def wait_ready(self, names: list[str], limit_s: float = 120) -> None:
        deadline = time.monotonic() + limit_s
        pending = set(names)
        while pending:
            for name in sorted(pending):
                if name in self.procs.exited():
                    raise RuntimeError(f"{name} exited; see {self.workdir / 'logs'}")
                with contextlib.suppress(httpx.HTTPError):
                    answer = await self.client.get(f"{self.procs.instance(name).url}/health/ready", timeout=2)
                    if answer.status_code == 200:
                        pending.discard(name)
            if pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {limit_s:.0f} s: {sorted(pending)}")
                await asyncio.sleep(0.25)

    def unexpectedly_down(self) -> list[str]:
        return [n for n in self.procs.exited() if n not in self.expected_down]

    async def revive(self) -> list[str]:
        """Restart every instance that died without a scenario meaning it to; returns their names."""
        dead = self.unexpectedly_down()
        for name in dead:
            self.procs.restart(name)
        await self.wait_ready(dead)
        return dead

    # -- faults -------------------------------------------------------------------------------------------

    async def signal_and_restart(self, name: str, signum: signal.Signals, down: float = 1.0) -> str:
        """Send ``signum`` to instance ``name``, wait for it to exit, start it again after ``down`` s and
        wait until it is ready; returns what happened, for the report."""
        t0 = time.monotonic()
        self.procs.signal(name, signum)
        code = await asyncio.to_thread(self.procs.wait_exit, name, STOP_GRACE_S)
        if code is None:
            # As an orchestrator would after its grace period; the scenario is marked failed.
            self.problems.append(f"{name} did not exit within {STOP_GRACE_S:g} s of {signum.name}")
            self.procs.signal(name, signal.SIGKILL)
            code = await asyncio.to_thread(self.procs.wait_exit, name, 10)
        exited = time.monotonic() - t0
        await asyncio.sleep(down)
        self.procs.restart(name)
        t1 = time.monotonic()
        await self.wait_ready([name])
        return (
            f"{signum.name} to {name}: exited with {code} after {exited:.1f} s; restarted after {down:g} s, "
            f"ready {time.monotonic() - t1:.1f} s later"
        )

    def kill(self, name: str) -> None:
        """SIGKILL an instance and leave it down."""
        self.procs.signal(name, signal.SIGKILL)
        self.procs.wait_exit(name, 10)
        self.expected_down.add(name)

    async def crash_postgres(self, down: float = 3.0) -> str:
        postgres = self.infra.postgres
        assert postgres is not None
        t0 = time.monotonic()
        orphans = postgres.kill()
        await asyncio.sleep(down)
        await asyncio.to_thread(postgres.restart_after_kill, orphans)
        return (
            f"postmaster SIGKILLed ({len(orphans)} backends orphaned), restarted on the same data dir: "
            f"accepting again {time.monotonic() - t0:.1f} s later"
        )

    async def broker_outage(self, seconds: float = 10.0) -> str:
        broker = self.infra.broker
        assert broker is not None
        broker.pause()
        try:
            await asyncio.sleep(seconds)
        finally:
            broker.resume()
        return f"broker SIGSTOPped for {seconds:g} s, then SIGCONT (its in-memory log kept)"

    # -- the scenario's environment -----------------------------------------------------------------------

    async def create_agents(self, conversations: int) -> tuple[int, int]:
        """Online agents with room for ``conversations`` at once (and a margin): capacity always allows
        every conversation to be assigned."""
        capacity = min(100, math.ceil(conversations * 1.2 / AGENTS) + 2)
        tag = uuid.uuid4().hex[:8]
        router = self.url("router")
        for i in range(AGENTS):
            await create_online_agent(
                self.client,
                router,
                name=f"Agent {i}",
                email=f"faults-{tag}-{i}@example.com",
                capacity=capacity,
            )
        return AGENTS, capacity


class RssSampler:
    """The largest VmRSS each service instance reached, sampled every ``interval`` s."""

    def __init__(self, services: ServiceProcesses, interval: float = 0.5) -> None:
        self.services = services
        self.interval = interval
        self.max_mib: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def sample(self) -> None:
        alive = set(self.services.alive())
        for name, pid in self.services.pids().items():
            if name in alive and (kib := memory_kib(pid, "VmRSS")) is not None:
                self.max_mib[name] = max(self.max_mib.get(name, 0.0), kib / 1024)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()


class Resolver:
    """Resolves a few assigned conversations every second through the conversation API (admin), so the
    release path runs under the faults too. Failures are expected while a fault lasts and are ignored:
    the invariants read what was committed."""

    def __init__(self, system: System, per_second: int = 3) -> None:
        self.system = system
        self.per_second = per_second
        self.resolved = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                for conversation_id in await probe.assigned_sample(self.system.engine, self.per_second):
                    answer = await self.system.client.post(
                        f"{self.system.url('conversation')}/v1/conversations/{conversation_id}/resolve",
                        headers=ADMIN,
                        timeout=5,
                    )
                    self.resolved += answer.is_success

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
