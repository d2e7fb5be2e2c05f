"""The whole system on one machine: infrastructure (embedded unless configured), migrations, topics and
the four services as separate processes. Used by `make run`, the end-to-end tests and the benchmark."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from switchboard_common.db.migrations import upgrade
from switchboard_common.kafka.admin import ensure_topics
from switchboard_common.settings import CommonSettings
from switchboard_devstack.broker import EmbeddedBroker
from switchboard_devstack.ports import free_port
from switchboard_devstack.postgres import EmbeddedPostgres


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int

    @property
    def package(self) -> str:
        return f"switchboard_{self.name}"


SERVICES = (
    ServiceSpec("ingest", 8001),
    ServiceSpec("conversation", 8002),
    ServiceSpec("router", 8003),
    ServiceSpec("metrics", 8004),
)
# The services the metrics service's ops health view asks for their readiness (name -> base URL).
OPS_SERVICES_ENV = "SWITCHBOARD_METRICS_OPS_SERVICES"


class Infrastructure:
    """PostgreSQL and the broker: the ones SWITCHBOARD_DATABASE_URL / SWITCHBOARD_KAFKA_BOOTSTRAP name, or
    embedded ones started here."""

    def __init__(self, workdir: Path, *, database: str, pg_port: int, broker_port: int) -> None:
        self.workdir = workdir
        self.database = database
        self._postgres: EmbeddedPostgres | None = None
        self._broker: EmbeddedBroker | None = None
        self.database_url = os.environ.get("SWITCHBOARD_DATABASE_URL", "")
        self.kafka_bootstrap = os.environ.get("SWITCHBOARD_KAFKA_BOOTSTRAP", "")
        if not self.database_url:
            self._postgres = EmbeddedPostgres(workdir / "pgdata", pg_port)
        if not self.kafka_bootstrap:
            self._broker = EmbeddedBroker(broker_port, workdir / "logs" / "broker.log")

    @property
    def embedded(self) -> list[str]:
        return [n for n, p in (("postgresql", self._postgres), ("broker", self._broker)) if p is not None]

    def pids(self) -> dict[str, int]:
        """Process ids of the embedded servers that run (none for external ones)."""
        pids = {"postgresql": self._postgres.pid if self._postgres else None}
        pids["broker"] = self._broker.pid if self._broker else None
        return {name: pid for name, pid in pids.items() if pid is not None}

    def env(self) -> dict[str, str]:
        """The settings that point a service at this infrastructure."""
        return {
            "SWITCHBOARD_DATABASE_URL": self.database_url,
            "SWITCHBOARD_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
        }

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self._postgres is not None:
                self._postgres.start()
                self.database_url = asyncio.run(create_database(self._postgres.url, self.database))
            if self._broker is not None:
                self._broker.start()
                self.kafka_bootstrap = self._broker.bootstrap
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._broker is not None:
            self._broker.stop()
        if self._postgres is not None:
            self._postgres.stop()

    @property
    def postgres(self) -> EmbeddedPostgres | None:
        """The embedded PostgreSQL (None when an external server is used): the fault suite kills it."""
        return self._postgres

    @property
    def broker(self) -> EmbeddedBroker | None:
        """The embedded broker (None when an external one is used): the fault suite pauses it."""
        return self._broker


async def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url`` if missing; returns its URL."""
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not exists:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def prepare(settings: CommonSettings) -> None:
    """Apply every service's migrations and create the topics (both idempotent)."""
    for spec in SERVICES:
        upgrade(spec.package, spec.name, settings.database_url)
    asyncio.run(ensure_topics(settings))


def parse_replicas(text: str) -> dict[str, int]:
    """``NAME=N[,NAME=N]`` (e.g. ``conversation=2,router=2``) -> processes per service. Services not named
    keep one process; an empty text names none."""
    names = {s.name for s in SERVICES}
    replicas: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, count = (x.strip() for x in item.partition("="))
        if not sep or not name or not count:
            raise ValueError(f"{item!r}: expected NAME=N")
        if name not in names:
            raise ValueError(f"{name!r}: not a service (one of {', '.join(s.name for s in SERVICES)})")
        if name in replicas:
            raise ValueError(f"{name!r} given twice")
        try:
            replicas[name] = int(count)
        except ValueError:
            raise ValueError(f"{item!r}: N must be a whole number") from None
        if replicas[name] < 1:
            raise ValueError(f"{item!r}: N must be at least 1")
    return replicas


@dataclass(frozen=True)
class Instance:
    """One process of a service: replica ``replica`` (from 1) of ``replicas``."""

    service: str
    replica: int
    replicas: int
    port: int

    @property
    def name(self) -> str:
        """The service's name when it runs alone, else ``<service>#<replica>``."""
        return self.service if self.replicas == 1 else f"{self.service}#{self.replica}"

    @property
    def log_name(self) -> str:
        return f"{self.service}.log" if self.replicas == 1 else f"{self.service}-{self.replica}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class ServiceProcesses:
    """The four services, each one or more separate `python -m switchboard_<name> serve` processes.

    ``ports`` gives the first replica's port of a service (default: its well-known one); further replicas
    take free ports. ``replicas`` maps a service to its number of processes (default 1): replicas share
    the database and join the same consumer groups, so a topic's partitions are split between them."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        ports: dict[str, int] | None = None,
        replicas: dict[str, int] | None = None,
    ) -> None:
        self.env = env
        self.log_dir = log_dir
        unknown = set(replicas or {}) - {s.name for s in SERVICES}
        if unknown:
            raise ValueError(f"replicas of unknown services: {sorted(unknown)}")
        self.replicas = {s.name: (replicas or {}).get(s.name, 1) for s in SERVICES}
        if any(n < 1 for n in self.replicas.values()):
            raise ValueError(f"every service needs at least one process: {self.replicas}")
        self.ports = {s.name: (ports or {}).get(s.name, s.port) for s in SERVICES}
        self.instances = [
            Instance(s.name, i, n, self.ports[s.name] if i == 1 else free_port())
            for s in SERVICES
            for n in [self.replicas[s.name]]
            for i in range(1, n + 1)
        ]
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, name: str) -> str:
        """A service's first replica, or the instance of that name (``conversation#2``)."""
        for instance in self.instances:
            if instance.name == name:
                return instance.url
        return f"http://127.0.0.1:{self.ports[name]}"

    def of(self, service: str) -> list[Instance]:
        return [i for i in self.instances if i.service == service]

    def ops_services(self) -> dict[str, str]:
        """What the metrics service's ops view probes: every service, at its first replica."""
        return {s.name: self.of(s.name)[0].url for s in SERVICES}

    def env_of(self, instance: Instance) -> dict[str, str]:
        """The environment of ``instance``'s process: the stack's, and for metrics where the others are
        (unless the caller's environment says it already)."""
        if instance.service != "metrics" or OPS_SERVICES_ENV in self.env:
            return self.env
        return {**self.env, OPS_SERVICES_ENV: json.dumps(self.ops_services())}

    def start(self, timeout: float = 90) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for instance in self.instances:
            self._spawn(instance)
        self.wait_ready(timeout)

    def _spawn(self, instance: Instance) -> None:
        with (self.log_dir / instance.log_name).open("ab") as log:  # the child keeps its own descriptor
            self._processes[instance.name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    f"switchboard_{instance.service}",
                    "serve",
                    "--port",
                    str(instance.port),
                ],
                env=self.env_of(instance),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def instance(self, name: str) -> Instance:
        """The instance called ``name`` (``router``, or ``router#2`` with replicas)."""
        for instance in self.instances:
            if instance.name == name:
                return instance
        raise KeyError(name)

    def signal(self, name: str, signum: int) -> None:
        """Send ``signum`` to one instance's process, if it runs (the fault suite's SIGKILL/SIGTERM)."""
        process = self._processes[name]
        if process.poll() is None:
            process.send_signal(signum)

    def wait_exit(self, name: str, timeout: float) -> int | None:
        """One instance's exit code, waiting up to ``timeout`` s; None if it still runs."""
        try:
            return self._processes[name].wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def restart(self, name: str) -> None:
        """Start a stopped instance again on its port, its log appended to (readiness is the caller's)."""
        if self._processes[name].poll() is None:
            raise RuntimeError(f"{name} is still running")
        self._spawn(self.instance(name))

    def wait_ready(self, timeout: float) -> None:
        """Until every process answers /health/ready with 200 (a consumer is ready once it holds an
        assignment)."""
        deadline = time.monotonic() + timeout
        instances = {i.name: i for i in self.instances}
        pending = set(self._processes)
        with httpx.Client(timeout=2) as client:
            while pending:
                for name in sorted(pending):
                    if self._processes[name].poll() is not None:
                        raise RuntimeError(f"{name} exited; see {self.log_dir / instances[name].log_name}")
                    try:
                        if client.get(f"{instances[name].url}/health/ready").status_code == 200:
                            pending.discard(name)
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout:.0f} s: {sorted(pending)}")
                if pending:
                    time.sleep(0.2)

    def stop(self, timeout: float = 30) -> dict[str, int]:
        """SIGTERM every process (they finish in-flight work and leave their groups); returns exit codes."""
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for name, process in self._processes.items():
            try:
                codes[name] = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        return codes

    def pids(self) -> dict[str, int]:
        """Instance name -> process id."""
        return {name: process.pid for name, process in self._processes.items()}

    def alive(self) -> list[str]:
        return [n for n, p in self._processes.items() if p.poll() is None]

    def exited(self) -> list[str]:
        """The instances that are no longer running."""
        return [n for n, p in self._processes.items() if p.poll() is not None]


def service_env(settings_env: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings_env)
    env["PYTHONUNBUFFERED"] = "1"
    return env
