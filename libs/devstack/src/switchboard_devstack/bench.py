"""`make bench`: a private system on free ports, messages driven through ingest -> assignment at an offered
rate, and the same run's raw ceilings (an empty FastAPI endpoint, a bare produce/consume) for scale."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from switchboard_common import topics
from switchboard_common.events import EventEnvelope
from switchboard_common.settings import DEV_ADMIN_API_KEY, DEV_INGEST_API_KEY, Settings
from switchboard_devstack.ports import free_port, wait_for_port
from switchboard_devstack.stack import SERVICES, Infrastructure, ServiceProcesses, prepare, service_env

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_API_KEY}"}
INGEST = {"Authorization": f"Bearer {DEV_INGEST_API_KEY}"}
EMPTY_APP = """
from fastapi import FastAPI
app = FastAPI()

@app.post("/v1/messages", status_code=202)
async def accept(body: dict) -> dict:
    return {"status": "accepted"}
"""


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 0.5) * 1000:7.1f} ms  p99 {pct(values, 0.99) * 1000:7.1f} ms"


async def drive(
    count: int, rate: float, concurrency: int, request: Callable[[int], Awaitable[bool]]
) -> tuple[list[float], int, float]:
    """Open-loop load: request i is due at t0 + i/rate (rate <= 0: as fast as ``concurrency`` allows).
    Returns per-request latencies, failures and the wall time of the send window."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures = 0
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        nonlocal failures
        if rate > 0:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        async with gate:
            start = time.perf_counter()
            ok = await request(i)
            latencies.append(time.perf_counter() - start)
            failures += not ok

    await asyncio.gather(*(one(i) for i in range(count)))
    return latencies, failures, time.perf_counter() - t0


async def watch_assignments(
    settings: Settings, seen: dict[str, float], links: dict[str, str], stop: asyncio.Event
) -> None:
    """Record when each conversation's assignment is seen, and which conversation each message joined."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        names = [settings.topic(topics.ROUTING_EVENTS), settings.topic(topics.CONVERSATION_EVENTS)]
        consumer.assign([TopicPartition(n, p) for n in names for p in consumer.partitions_for_topic(n) or ()])
        await consumer.seek_to_beginning()
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=100, max_records=1000)).values():
                now = time.perf_counter()
                for record in records:
                    envelope = EventEnvelope.from_bytes(record.value)
                    if envelope.type == "conversation.assigned":
                        seen[envelope.payload["conversation_id"]] = now
                    elif envelope.type == "conversation.message_added":
                        links[envelope.payload["message_id"]] = envelope.payload["conversation_id"]
    finally:
        await consumer.stop()


async def bench_path(
    args: argparse.Namespace, settings: Settings, services: ServiceProcesses
) -> dict[str, Any]:
    agents = max(args.agents, math.ceil(args.messages / 99))
    capacity = min(100, math.ceil(args.messages / agents) + 1)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for i in range(agents):
            created = await client.post(
                f"{services.url('router')}/v1/agents",
                json={
                    "name": f"bench {i}",
                    "email": f"bench{i}@example.com",
                    "skills": ["general"],
                    "capacity": capacity,
                },
                headers=ADMIN,
            )
            created.raise_for_status()
            agent_id = created.json()["id"]
            online = await client.put(
                f"{services.url('router')}/v1/agents/{agent_id}/status",
                json={"status": "online"},
                headers=ADMIN,
            )
            online.raise_for_status()

        seen: dict[str, float] = {}
        links: dict[str, str] = {}
        acked: dict[str, float] = {}
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_assignments(settings, seen, links, stop))
        run = uuid.uuid4().hex[:8]

        async def send(i: int) -> bool:
            body = {
                "message_id": f"{run}-{i}",
                "customer": {"id": f"{run}-c{i}"},
                "text": "bench",
                "skills": ["general"],
            }
            response = await client.post(f"{services.url('ingest')}/v1/messages", json=body, headers=INGEST)
            if response.status_code == 202:
                acked[response.json()["message_id"]] = time.perf_counter()
                return True
            return False

        ack_latencies, failures, window = await drive(args.messages, args.rate, args.concurrency, send)
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline and sum(1 for m in acked if links.get(m) in seen) < len(acked):
            await asyncio.sleep(0.1)
        stop.set()
        await watcher
    to_assign = [seen[links[m]] - t for m, t in acked.items() if links.get(m) in seen]
    first_ack = min(acked.values(), default=0.0)
    last_assign = max((seen[links[m]] for m in acked if links.get(m) in seen), default=first_ack)
    return {
        "agents": agents,
        "capacity": capacity,
        "ack_latencies": ack_latencies,
        "failures": failures,
        "window": window,
        "acked": len(acked),
        "assigned": len(to_assign),
        "to_assign": to_assign,
        "sustained": len(to_assign) / max(last_assign - first_ack, 1e-9),
    }


async def bench_empty_endpoint(args: argparse.Namespace, workdir: Path) -> tuple[float, list[float]]:
    module = workdir / "bench_empty_app.py"
    module.write_text(EMPTY_APP)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench_empty_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(workdir)},
    )
    try:
        if not wait_for_port(port, 30):
            raise TimeoutError("empty endpoint did not start")
        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:

            async def post(i: int) -> bool:
                body = {
                    "message_id": f"e{i}",
                    "customer": {"id": f"c{i}"},
                    "text": "bench",
                    "skills": ["general"],
                }
                return (
                    await client.post(f"http://127.0.0.1:{port}/v1/messages", json=body)
                ).status_code == 202

            latencies, _, window = await drive(args.messages, 0, args.concurrency, post)
        return args.messages / window, latencies
    finally:
        server.terminate()
        server.wait(10)


async def bench_broker(args: argparse.Namespace, settings: Settings) -> tuple[float, list[float]]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, settings.topic_partitions, 1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=settings.producer_linger_ms
    )
    await consumer.start()
    await producer.start()
    sent_at: dict[bytes, float] = {}
    latencies: list[float] = []
    try:
        await consumer.topics()
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()])
        await consumer.seek_to_beginning()

        async def consume() -> None:
            while len(latencies) < args.messages:
                for records in (await consumer.getmany(timeout_ms=200, max_records=1000)).values():
                    now = time.perf_counter()
                    latencies.extend(now - sent_at[r.key] for r in records if r.key in sent_at)

        reader = asyncio.create_task(consume())
        t0 = time.perf_counter()

        async def produce(i: int) -> bool:
            key = f"k{i}".encode()
            sent_at[key] = time.perf_counter()
            await producer.send_and_wait(topic, b"x" * 600, key=key)
            return True

        await drive(args.messages, 0, args.concurrency, produce)
        await asyncio.wait_for(reader, 60)
        return args.messages / (time.perf_counter() - t0), latencies
    finally:
        await producer.stop()
        await consumer.stop()


def report(
    args: argparse.Namespace,
    path: dict[str, Any],
    empty: tuple[float, list[float]],
    raw: tuple[float, list[float]],
) -> None:
    ingest_rate = path["acked"] / path["window"]
    print(
        f"""
Switchboard benchmark: {args.messages} messages offered at {args.rate:g}/s, concurrency {args.concurrency},
{path["agents"]} agents online (capacity {path["capacity"]} each), {os.cpu_count()} CPUs, everything on this machine.

message path (ingest POST -> conversation -> router assignment)
  accepted (202)          {path["acked"]:>8}   failed requests {path["failures"]}
  assigned                {path["assigned"]:>8}   not assigned within 60 s: {path["acked"] - path["assigned"]}
  ingest throughput       {ingest_rate:8.1f} msg/s   ack latency          {ms(path["ack_latencies"])}
  sustained (ack->assign) {path["sustained"]:8.1f} msg/s   ack -> assigned       {ms(path["to_assign"])}
                                                 ack -> assigned p90 {pct(path["to_assign"], 0.9) * 1000:.1f} ms, max {max(path["to_assign"], default=float("nan")) * 1000:.1f} ms

raw ceilings (same machine, same run)
  empty FastAPI POST      {empty[0]:8.1f} req/s   {ms(empty[1])}
  bare produce->consume   {raw[0]:8.1f} rec/s   {ms(raw[1])}

ratios
  ingest throughput / empty endpoint     {ingest_rate / empty[0] * 100:5.1f} %   (offered rate caps this: raise --rate to probe the ceiling)
  sustained path / bare broker           {path["sustained"] / raw[0] * 100:5.1f} %
"""
    )


def run_bench(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir / "pgdata", ignore_errors=True)  # comparable runs start from an empty database
    for var in ("SWITCHBOARD_ENVIRONMENT", "SWITCHBOARD_TOPIC_PREFIX"):
        os.environ.pop(var, None)
    infra = Infrastructure(
        workdir, database="switchboard_bench", pg_port=free_port(), broker_port=free_port()
    )
    infra.start()
    services: ServiceProcesses | None = None
    try:
        env = infra.env()
        if "broker" not in infra.embedded:
            env["SWITCHBOARD_TOPIC_PREFIX"] = f"bench-{uuid.uuid4().hex[:6]}."
        os.environ.update(env)
        settings = Settings()
        prepare(settings)
        services = ServiceProcesses(
            service_env(env), workdir / "logs", ports={s.name: free_port() for s in SERVICES}
        )
        services.start()
        path = asyncio.run(bench_path(args, settings, services))
        with tempfile.TemporaryDirectory() as tmp:
            empty = asyncio.run(bench_empty_endpoint(args, Path(tmp)))
        raw = asyncio.run(bench_broker(args, settings))
        report(args, path, empty, raw)
        return 0 if path["assigned"] == args.messages and path["failures"] == 0 else 1
    finally:
        if services is not None:
            services.stop()
        infra.stop()
