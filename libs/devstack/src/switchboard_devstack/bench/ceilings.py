"""Optional raw ceilings (``--ceilings``): an empty FastAPI endpoint and a bare produce -> consume."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from switchboard_common.settings import CommonSettings
from switchboard_devstack.bench import procstat, wrk
from switchboard_devstack.bench.generators import LeanGenerator, LoadResult, WrkGenerator, connections_for
from switchboard_devstack.bench.stats import summary_ms
from switchboard_devstack.ports import free_port, wait_for_port

REQUESTS = 5000
EMPTY_APP = """
from fastapi import FastAPI
app = FastAPI()

@app.post("/v1/messages", status_code=202)
async def accept(body: dict) -> dict:
    return {"status": "accepted"}
"""


def measure(args: argparse.Namespace, settings: CommonSettings) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        empty = asyncio.run(empty_endpoint(args, Path(tmp)))
    raw = asyncio.run(bare_broker(settings))
    return {"empty FastAPI POST": empty, "bare produce -> consume": raw}


async def empty_endpoint(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    (workdir / "bench_empty_app.py").write_text(EMPTY_APP)
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "bench_empty_app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(workdir)},
    )
    try:
        if not await asyncio.to_thread(wait_for_port, port, 30):
            raise TimeoutError("empty endpoint did not start")
        binary = wrk.wrk_path() if args.generator != "lean" else None
        before = procstat.read_stat(server.pid)
        result: LoadResult
        if binary is not None:
            gen = WrkGenerator(
                binary,
                port,
                prefix="e",
                quota=REQUESTS,
                threads=1,
                connections=connections_for(args.connections, 0.0),
                duration=60,
                auth="",
            )
            await gen.go()
            done_at, cpu, output = await gen.finish()
            result = await gen.result(done_at, cpu, output)
        else:
            lean = LeanGenerator(
                port,
                prefix="e",
                count=REQUESTS,
                rate=0.0,
                connections=connections_for(args.connections, 0.0),
                duration=60,
            )
            await lean.start()
            await lean.go()
            done_at, cpu = await lean.finish()
            result = await lean.result(done_at, cpu)
        after = procstat.read_stat(server.pid)
    finally:
        server.terminate()
        await server.wait()
    seconds = result.done_at - result.go_at
    server_cpu = (after.ticks - before.ticks) / procstat.CLK_TCK if before and after else float("nan")
    if result.wrk is not None:
        latency = result.wrk.latency_ms
    else:
        latency = summary_ms([a - s for a, s in zip(result.ack, result.send, strict=True)])
    rate = result.ok / max(seconds, 1e-9)
    return {
        "per_s": rate,
        "server_ms_per_request": server_cpu * 1000 / max(result.ok, 1),
        "latency_ms": latency,
        "summary": f"{rate:8.1f} req/s   server {server_cpu * 1000 / max(result.ok, 1):.3f} ms CPU/request   "
        f"p50 {latency.get('p50', float('nan')):.1f} ms  p99 {latency.get('p99', float('nan')):.1f} ms  "
        f"({result.generator})",
    }


async def bare_broker(settings: CommonSettings, count: int = REQUESTS) -> dict[str, Any]:
    topic = f"{settings.topic_prefix}bench-raw-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, settings.topic_partitions, settings.topic_replication_factor)]
        )
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5
    )
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
            while len(latencies) < count:
                for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                    now = time.monotonic()
                    latencies.extend(now - sent_at[r.key] for r in records if r.key in sent_at)

        reader = asyncio.create_task(consume())
        t0 = time.monotonic()
        pending = []
        for i in range(count):
            key = f"k{i}".encode()
            sent_at[key] = time.monotonic()
            pending.append(await producer.send(topic, b"x" * 600, key=key))
            if len(pending) >= 256:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await asyncio.wait_for(reader, 60)
        rate = count / (time.monotonic() - t0)
    finally:
        await producer.stop()
        await consumer.stop()
    latency = summary_ms(latencies)
    return {
        "per_s": rate,
        "latency_ms": latency,
        "summary": f"{rate:8.1f} rec/s   p50 {latency['p50']:.1f} ms  p99 {latency['p99']:.1f} ms  "
        "(aiokafka in the bench process, acks=all, 256 in flight)",
    }
