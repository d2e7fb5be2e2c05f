"""Running a load generator as a separate process: the lean one (open or closed loop) or wrk."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from switchboard_devstack.bench import procstat, wrk
from switchboard_devstack.bench.watcher import message_id_for


@dataclass
class LoadResult:
    """What a generator did in one phase. Times are ``time.monotonic()`` seconds."""

    generator: str
    prefix: str
    rate: float  # offered requests per second; 0 for closed loop
    connections: int
    external_ids: list[str]  # every message sent, in order
    ok: int
    failed: int
    go_at: float
    done_at: float
    cpu_seconds: float
    # lean generator only: its start (request i is due at t0 + i / rate) and per request i = external_ids[i]
    t0: float = 0.0
    send: list[float] = field(default_factory=list)
    ack: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    unanswered: int = 0  # wrk: sent but never answered before the run ended (may still be accepted)
    reconnects: int = 0
    sample_body: str = ""
    # wrk only
    wrk: wrk.WrkResult | None = None
    channel: str = "api"  # the channel the messages came through (their ids depend on it)

    @property
    def sent(self) -> int:
        return len(self.external_ids)

    def acked_ids(self) -> dict[str, float]:
        """Switchboard message id -> time its 2xx arrived (lean generator only)."""
        return {
            message_id_for(ext, self.channel): self.ack[i]
            for i, ext in enumerate(self.external_ids)
            if 200 <= self.status[i] < 300
        }

    def all_ids(self) -> set[str]:
        return {message_id_for(ext, self.channel) for ext in self.external_ids}


def connections_for(given: int | None, rate: float) -> int:
    """Open loop: enough connections for half a second of requests (an answer slower than that makes due
    requests wait for a connection, which the send lag shows); closed loop: 64."""
    if given:
        return given
    return 64 if rate <= 0 else min(1000, max(32, math.ceil(rate * 0.5)))


def tick_for(given: float | None, rate: float) -> float:
    """The lean generator's open-loop tick in ms: three requests' worth, between 2 and 50 ms."""
    if given:
        return given
    return 10.0 if rate <= 0 else min(50.0, max(2.0, 3000.0 / rate))


def _cpu_seconds(pid: int) -> float:
    stat = procstat.read_stat(pid)
    return stat.ticks / procstat.CLK_TCK if stat is not None else 0.0


# How each channel's provider ids look for message i (loadgen.whatsapp_body: "wamid.<prefix><i>").
_EXTERNAL_PREFIX = {"api": "", "whatsapp": "wamid."}


class LeanGenerator:
    """``python -m switchboard_devstack.bench.loadgen`` in its own process; with several ports (ingest
    replicas) its connections are spread over them in turn."""

    def __init__(
        self,
        port: int | Sequence[int],
        *,
        prefix: str,
        count: int,
        rate: float,
        connections: int,
        duration: float = 0.0,
        tick_ms: float = 10.0,
        path: str = "/v1/messages",
        auth: str = "",
        channel: str = "api",
        secret: str = "",
    ) -> None:
        self.ports = [port] if isinstance(port, int) else list(port)
        self.channel = channel
        self.secret = secret
        self.tick_ms = tick_ms
        self.prefix = prefix
        self.count = count
        self.rate = rate
        self.connections = connections
        self.duration = duration
        self.path = path
        self.auth = auth
        self._dir = tempfile.TemporaryDirectory(prefix="switchboard-loadgen-")
        self._out = Path(self._dir.name) / "result.json"
        self._proc: asyncio.subprocess.Process | None = None
        self.pid = 0
        self.go_at = 0.0
        self._cpu_at_go = 0.0

    async def start(self) -> None:
        argv = [
            "-m",
            "switchboard_devstack.bench.loadgen",
            f"--port={','.join(map(str, self.ports))}",
            f"--path={self.path}",
            f"--prefix={self.prefix}",
            f"--count={self.count}",
            f"--rate={self.rate}",
            f"--connections={self.connections}",
            f"--duration={self.duration}",
            f"--tick-ms={self.tick_ms}",
            f"--out={self._out}",
        ]
        if self.auth:
            argv.append(f"--auth={self.auth}")
        if self.channel != "api":
            argv += [f"--channel={self.channel}", f"--secret={self.secret}"]
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self.pid = self._proc.pid
        if await self._line(60) != "ready":
            raise RuntimeError("the load generator did not get ready (could it connect?)")

    async def _line(self, timeout: float | None) -> str:  # noqa: ASYNC109 - a stdout read with a limit
        assert self._proc is not None
        assert self._proc.stdout is not None
        raw = await asyncio.wait_for(self._proc.stdout.readline(), timeout)
        return raw.decode().strip()

    async def _send(self, line: str) -> None:
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._proc.stdin.write(line.encode() + b"\n")
        await self._proc.stdin.drain()

    async def go(self) -> None:
        self._cpu_at_go = _cpu_seconds(self.pid)
        self.go_at = time.monotonic()
        await self._send("go")

    async def finish(self) -> tuple[float, float]:
        """Wait for ``done``; returns (monotonic time, generator CPU seconds since go)."""
        line = await self._line(None)
        done_at = time.monotonic()
        if not line.startswith("done"):
            raise RuntimeError(f"load generator: unexpected {line!r}")
        return done_at, _cpu_seconds(self.pid) - self._cpu_at_go

    async def result(self, done_at: float, cpu_seconds: float) -> LoadResult:
        await self._send("report")
        if await self._line(120) != "written":
            raise RuntimeError("the load generator did not write its results")
        assert self._proc is not None
        await self._proc.wait()
        data: dict[str, Any] = json.loads(self._out.read_text())
        self._dir.cleanup()
        return LoadResult(
            generator=f"lean, open loop, tick {self.tick_ms:g} ms" if self.rate > 0 else "lean, closed loop",
            prefix=self.prefix,
            rate=self.rate,
            connections=self.connections,
            external_ids=[f"{_EXTERNAL_PREFIX[self.channel]}{self.prefix}{i}" for i in range(data["sent"])],
            channel=self.channel,
            ok=data["ok"],
            failed=data["failed"],
            go_at=self.go_at,
            done_at=done_at,
            cpu_seconds=cpu_seconds,
            t0=data["t0"],
            send=data["send"],
            ack=data["ack"],
            status=data["status"],
            reconnects=data["reconnects"],
            sample_body=data["sample_body"],
        )

    async def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        self._dir.cleanup()


class WrkGenerator:
    """wrk, closed loop, ``quota`` messages per thread, stopped by SIGINT once every answer is in."""

    def __init__(
        self,
        binary: str,
        port: int,
        *,
        prefix: str,
        quota: int,
        threads: int,
        connections: int,
        duration: int,
        auth: str,
    ) -> None:
        self.binary = binary
        self.url = f"http://127.0.0.1:{port}/v1/messages"
        self.prefix = prefix
        self.threads = threads
        self.quota_per_thread = max(1, quota // threads)
        self.connections = max(connections, threads)
        self.duration = duration
        self.auth = auth
        self._dir = tempfile.TemporaryDirectory(prefix="switchboard-wrk-")
        self._proc: asyncio.subprocess.Process | None = None
        self.pid = 0
        self.go_at = 0.0

    async def go(self) -> None:
        script_file = Path(self._dir.name) / "bench.lua"
        script_file.write_text(wrk.script(self.prefix, self.quota_per_thread, "/v1/messages", self.auth))
        argv = wrk.command(
            self.binary,
            self.url,
            str(script_file),
            threads=self.threads,
            connections=self.connections,
            duration_s=self.duration,
        )
        self.go_at = time.monotonic()
        self._proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        self.pid = self._proc.pid

    async def finish(self) -> tuple[float, float, str]:
        """Wait until every thread has all its answers (or wrk's duration ran out), sample wrk's CPU, stop
        it; returns (monotonic time, wrk CPU seconds, its output)."""
        assert self._proc is not None
        assert self._proc.stdout is not None
        lines: list[str] = []
        reached = all_sent = 0
        all_sent_at = math.inf
        cpu = 0.0
        done_at = 0.0
        while True:
            if not done_at:  # wrk is running: sample it while it still exists
                cpu = max(cpu, _cpu_seconds(self.pid))
                if time.monotonic() > all_sent_at + wrk.TIMEOUT_S + 1:
                    # every request is sent but some never got an answer: stop waiting for them
                    done_at = all_sent_at
                    self._proc.send_signal(signal.SIGINT)
            try:
                raw = await asyncio.wait_for(self._proc.stdout.readline(), 0.25)
            except TimeoutError:
                continue
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            if ".lua:" in line and not done_at:  # a script error: wrk would send junk for its whole run
                self._proc.kill()
                await self._proc.wait()
                raise RuntimeError(f"wrk's script failed: {line}")
            if line.strip() == wrk.ALL_SENT:
                all_sent += 1
                if all_sent == self.threads:
                    all_sent_at = time.monotonic()
            if line.strip() == wrk.QUOTA_REACHED and not done_at:
                reached += 1
                if reached == self.threads:
                    done_at = time.monotonic()
                    cpu = max(cpu, _cpu_seconds(self.pid))
                    self._proc.send_signal(signal.SIGINT)
        await self._proc.wait()
        return done_at or time.monotonic(), cpu, "\n".join(lines)

    async def result(self, done_at: float, cpu_seconds: float, output: str) -> LoadResult:
        parsed = wrk.parse_output(output)
        self._dir.cleanup()
        if not parsed.threads:
            raise RuntimeError(f"could not read wrk's output:\n{output}")
        return LoadResult(
            generator=f"wrk (-t{self.threads} -c{self.connections}, closed loop)",
            prefix=self.prefix,
            rate=0.0,
            connections=self.connections,
            external_ids=wrk.message_ids(self.prefix, parsed.threads),
            ok=parsed.acked,
            failed=parsed.failed,
            unanswered=max(0, parsed.sent - parsed.acked - parsed.failed),
            go_at=self.go_at,
            done_at=done_at,
            cpu_seconds=cpu_seconds,
            wrk=parsed,
        )

    async def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        self._dir.cleanup()
