"""The benchmark's pure helpers: statistics, /proc parsing, wrk's script and output, the lean generator's
HTTP parsing, Prometheus deltas, the report, and the cost counters."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from typing import Any

import httpx
import pytest

from switchboard_common.events import Channel
from switchboard_devstack.bench import loadgen, procstat, promscrape, report, stats, wrk
from switchboard_devstack.bench.generators import connections_for, tick_for
from switchboard_devstack.bench.watcher import message_id_for
from switchboard_ingest.channels.base import WebhookRequest
from switchboard_ingest.channels.whatsapp import WhatsAppChannel
from switchboard_ingest.messages.service import message_id_for as ingest_message_id_for


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 0.5) == 50
    assert stats.percentile(values, 0.99) == 99
    assert stats.percentile(values, 1.0) == 100
    assert stats.percentile(values, 0.0) == 1
    assert stats.percentile([3.0, 1.0, 2.0], 0.5) == 2
    assert math.isnan(stats.percentile([], 0.5))


def test_summary_is_in_milliseconds() -> None:
    summary = stats.summary_ms([0.001, 0.002, 0.003, 0.004])
    assert summary["p50"] == pytest.approx(2.0)
    assert summary["max"] == pytest.approx(4.0)
    assert summary["mean"] == pytest.approx(2.5)
    assert stats.summary_ms([]) == {}


def test_rates() -> None:
    times = [i / 100 for i in range(1000)]  # 100 per second for 10 s
    assert stats.rate_between(times, 2.0, 4.0) == pytest.approx(100)
    assert stats.steady_rate(times) == pytest.approx(100, rel=0.01)
    assert math.isnan(stats.steady_rate(times[:5]))


def _stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, cutime: int, cstime: int) -> str:
    # fields 3.. of proc(5): state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
    # stime cutime cstime priority nice num_threads itrealvalue starttime ...
    rest = f"S {ppid} 1 1 0 -1 4194304 10 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0 777 1000 10"
    return f"{pid} ({comm}) {rest}"


def test_parse_stat_handles_spaces_and_parentheses_in_the_name() -> None:
    stat = procstat.parse_stat(_stat_line(42, "postgres: (walwriter) x", 7, 11, 5, 100, 50))
    assert (stat.pid, stat.comm, stat.ppid) == (42, "postgres: (walwriter) x", 7)
    assert (stat.utime, stat.stime, stat.cutime, stat.cstime, stat.starttime) == (11, 5, 100, 50, 777)
    assert stat.own_ticks == 16
    assert stat.ticks == 166


def test_tree_cpu_keeps_the_cpu_of_children_that_exited() -> None:
    def stats_of(*lines: str) -> dict[int, procstat.ProcStat]:
        parsed = [procstat.parse_stat(line) for line in lines]
        return {s.pid: s for s in parsed}

    before = stats_of(
        _stat_line(10, "postgres", 1, 5, 5, 0, 0),
        _stat_line(11, "postgres", 10, 20, 10, 0, 0),
        _stat_line(12, "postgres", 10, 30, 0, 0, 0),
        _stat_line(99, "other", 1, 1000, 0, 0, 0),
    )
    # backend 12 exited (reaped: its 40 ticks moved into the postmaster's cutime/cstime), 13 started
    after = stats_of(
        _stat_line(10, "postgres", 1, 6, 5, 35, 5),
        _stat_line(11, "postgres", 10, 25, 10, 0, 0),
        _stat_line(13, "postgres", 10, 3, 0, 0, 0),
        _stat_line(99, "other", 1, 2000, 0, 0, 0),
    )
    assert [p.pid for p in procstat.tree(10, before)] == [10, 12, 11]
    delta = procstat.delta(procstat.TreeSample.of(10, before), procstat.TreeSample.of(10, after))
    # 1 (postmaster) + 5 (backend 11) + 10 (backend 12 after the first sample) + 3 (backend 13)
    assert delta.cpu_seconds == pytest.approx(19 / procstat.CLK_TCK)
    assert (delta.processes, delta.started, delta.exited) == (3, 1, 1)
    assert procstat.tree(12, after) == []


def test_parse_status_kib() -> None:
    text = "Name:\tpython\nVmHWM:\t  120000 kB\nVmRSS:\t  100000 kB\n"
    assert procstat.parse_status_kib(text, "VmRSS") == 100000
    assert procstat.parse_status_kib(text, "VmHWM") == 120000
    assert procstat.parse_status_kib(text, "Pss") is None


def test_own_process_can_be_read() -> None:
    import os

    stat = procstat.read_stat(os.getpid())
    assert stat is not None
    assert stat.pid == os.getpid()
    assert procstat.memory_kib(os.getpid(), "VmRSS")


WRK_OUTPUT = """Running 2m test @ http://127.0.0.1:8001/v1/messages
  1 threads and 64 connections
SWITCHBOARD all-sent
SWITCHBOARD quota-reached
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    93.10ms   40.00ms 255.50ms   70.00%
  5000 requests in 8.00s, 1.00MB read
Requests/sec:    625.00
SWITCHBOARD summary duration_us=8000000 requests=5000 connect=0 read=2 write=0 status=3 timeout=1 \
p50_us=92900 p90_us=149700 p99_us=244100 max_us=255500
SWITCHBOARD thread tid=0 sent=2500 acked=2497 failed=3
SWITCHBOARD thread tid=1 sent=2500 acked=2500 failed=0
"""


def test_wrk_output_is_read_from_the_scripts_summary_lines() -> None:
    result = wrk.parse_output(WRK_OUTPUT)
    assert result.duration_s == 8.0
    assert result.requests == 5000
    assert result.errors == {"connect": 0, "read": 2, "write": 0, "status": 3, "timeout": 1}
    assert result.latency_ms == {"p50": 92.9, "p90": 149.7, "p99": 244.1, "max": 255.5}
    assert (result.sent, result.acked, result.failed) == (5000, 4997, 3)
    ids = wrk.message_ids("bx-", result.threads)
    assert len(set(ids)) == 5000
    assert ids[0] == "bx-0-0"
    assert ids[-1] == "bx-1-2499"


def test_wrk_script_carries_the_run_and_escapes_its_newlines() -> None:
    script = wrk.script("bench-", 123, "/v1/messages", "Bearer dev-ingest-key")
    assert 'local prefix = "bench-"' in script
    assert "local quota = 123" in script
    assert 'wrk.headers["Authorization"] = "Bearer dev-ingest-key"' in script
    # Lua needs the two characters backslash-n inside its string literals, never a raw newline.
    assert f'io.write("{wrk.QUOTA_REACHED}\\n")' in script
    assert f'io.write("{wrk.ALL_SENT}\\n")' in script
    assert "%" not in script.replace("%d", "")
    command = wrk.command("wrk", "http://h/x", "s.lua", threads=2, connections=64, duration_s=60)
    assert command[:4] == ["wrk", "-t2", "-c64", "-d60s"]


def test_lean_generator_http_parsing() -> None:
    head = b"HTTP/1.1 202 Accepted\r\ndate: x\r\nContent-Length: 87\r\ncontent-type: application/json"
    assert loadgen.parse_head(head) == (202, 87)
    assert loadgen.parse_head(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0") == (503, 0)
    assert loadgen.parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked") == (200, -1)
    body = json.loads(loadgen.message_body("run1-", 7))
    assert body == {
        "message_id": "run1-7",
        "customer": {"id": "run1-7"},
        "text": "bench",
        "skills": ["general"],
    }


def test_lean_generator_arguments() -> None:
    args = loadgen.parse_args(["--port", "8001", "--prefix", "p-", "--count", "10", "--out", "out.json"])
    assert (args.rate, args.connections, args.tick_ms) == (0.0, 64, 10.0)


def test_message_ids_match_ingest() -> None:
    for external in ("bench-0", "b1234m-99", "x"):
        assert message_id_for(external) == str(ingest_message_id_for(Channel.API, external))
        uuid.UUID(message_id_for(external))


def test_generator_sizing() -> None:
    assert connections_for(None, 0.0) == 64
    assert connections_for(None, 100.0) == 50
    assert connections_for(None, 10.0) == 32
    assert connections_for(None, 100_000.0) == 1000
    assert connections_for(8, 100.0) == 8
    assert tick_for(None, 100.0) == 30.0
    assert tick_for(None, 10.0) == 50.0
    assert tick_for(None, 10_000.0) == 2.0
    assert tick_for(5.0, 100.0) == 5.0


METRICS_BEFORE = """# HELP switchboard_sql_statements_total SQL statements
# TYPE switchboard_sql_statements_total counter
switchboard_sql_statements_total{verb="select"} 10.0
switchboard_sql_statements_total{verb="insert"} 5.0
# TYPE switchboard_kafka_requests_total counter
switchboard_kafka_requests_total{api="FetchRequest"} 100.0
# TYPE switchboard_http_requests_total counter
switchboard_http_requests_total{method="GET",route="/x",status="200"} 3.0
"""
METRICS_AFTER = METRICS_BEFORE.replace("} 10.0", "} 30.0").replace("} 100.0", "} 160.0") + (
    'switchboard_kafka_requests_total{api="ProduceRequest"} 20.0\n'
)


def test_prometheus_deltas() -> None:
    before, after = promscrape.parse(METRICS_BEFORE), promscrape.parse(METRICS_AFTER)
    assert all(name != "switchboard_http_requests_total" for name, _ in after)
    delta = promscrape.delta(before, after)
    assert promscrape.total(delta, promscrape.SQL_STATEMENTS) == 20
    assert promscrape.by_label(delta, promscrape.SQL_STATEMENTS, "verb") == {"select": 20}
    assert promscrape.by_label(delta, promscrape.KAFKA_REQUESTS, "api") == {
        "FetchRequest": 60,
        "ProduceRequest": 20,
    }


def _doc(ms: float) -> dict[str, Any]:
    cpu_row = {
        "cpu_seconds": 1.0,
        "ms_per_msg": ms,
        "above_idle_ms_per_msg": ms / 2,
        "cores": 0.5,
        "idle_ms_per_s": 10.0,
        "processes": 1,
        "started": 0,
        "exited": 0,
    }
    counters = {
        "sql_statements": 2.0,
        "sql_transactions": 1.0,
        "kafka_requests": 1.5,
        "sql_by_verb": {"insert": 1.0, "select": 1.0},
        "sql_by_outcome": {"commit": 1.0},
        "kafka_by_api": {"ProduceRequest": 1.0, "FetchRequest": 0.5},
    }
    return {
        "config": {
            "mode": "fixed-rate",
            "messages": 100,
            "rate": 50.0,
            "connections": 32,
            "agents": 2,
            "capacity": 51,
            "warmup": 10,
            "watch_wait_ms": 5,
            "env": [],
            "cpus": 2,
            "started_at": "2026-01-01T00:00:00+00:00",
        },
        "window_seconds": 2.0,
        "throughput": {
            "generator": "lean, open loop, tick 50 ms",
            "offered_per_s": 50.0,
            "sent": 100,
            "accepted": 100,
            "failed": 0,
            "assigned": 100,
            "load_seconds": 2.0,
            "accepted_per_s": 50.0,
            "assigned_during_load_per_s": 50.0,
            "assigned_steady_per_s": 50.0,
            "end_to_end_per_s": 48.0,
            "drain_seconds": 0.1,
            "latency_ms": {"ack": stats.summary_ms([0.01, 0.02]), "ack -> assigned": {}},
        },
        "cpu": {
            **{name: dict(cpu_row) for name in report.SYSTEM},
            "load generator": {"cpu_seconds": 0.01, "ms_per_msg": 0.05, "cores": 0.01},
            "bench watcher": dict(cpu_row),
        },
        "cpu_total_system_ms_per_msg": ms * 6,
        "cpu_total_ms_per_msg": ms * 6 + 0.05,
        "generator_ms_per_request": 0.05,
        "counters": {"ingest": counters, "metrics": {"scraped": False}},
        "memory": {
            "ingest": {"pid": 1, "rss_mib": 90.0, "hwm_mib": 91.0},
            "postgresql": {"pid": 2, "processes": 5, "pss_mib": None, "rss_mib": 300.0},
        },
    }


def test_report_renders_every_section() -> None:
    doc = _doc(1.0)
    doc["consumer_lag"] = {
        "metrics": {
            "max": 37.0,
            "mean": 13.7,
            "samples": 14.0,
            "rate": 740.0,
            "max_s": 0.05,
            "mean_s": 0.019,
        },
        "router": {"max": 3.0, "mean": 1.0, "samples": 2.0},  # no records handled while sampled: no rate
    }
    text = report.render(doc)
    for expected in (
        "consumer lag during the load",
        "metrics                          37       13.7      740    0.050    0.019        14",
        "router                            3        1.0        -        -        -         2",
        "fixed offered rate: 100 messages at 50/s",
        "CPU per message",
        "total (system)",
        "load generator",
        "round trips per message",
        "Produce 1.00, Fetch 0.50; insert 1.00, select 1.00",
        "no /metrics",
        "memory at the end",
    ):
        assert expected in text
    assert "WARNING" not in text


def test_compare_shows_relative_changes() -> None:
    text = report.compare(_doc(1.0), _doc(1.5))
    line = next(line for line in text.splitlines() if "cpu_ms_per_msg.ingest" in line)
    assert line.split()[-1] == "+50.0%"
    assert "per_msg.ingest.sql_statements" in text


async def test_kafka_instrumentation_counts_requests_once_installed_twice() -> None:
    from aiokafka.conn import AIOKafkaConnection
    from aiokafka.errors import KafkaConnectionError
    from aiokafka.protocol.metadata import MetadataRequest
    from prometheus_client import REGISTRY

    from switchboard_common.instrumentation import instrument_kafka

    def count() -> float:
        labels = {"api": "MetadataRequest"}
        return REGISTRY.get_sample_value("switchboard_kafka_requests_total", labels) or 0.0

    instrument_kafka()
    instrument_kafka()
    conn = AIOKafkaConnection("127.0.0.1", 1)  # never connected: send() fails after being counted
    before = count()
    with pytest.raises(KafkaConnectionError):
        conn.send(MetadataRequest([]))
    assert count() == before + 1


def test_sql_verbs() -> None:
    from switchboard_common.instrumentation import _verb

    assert _verb("SELECT 1") == "select"
    assert _verb("  insert into x values (1)") == "insert"
    assert _verb("WITH a AS (SELECT 1) SELECT * FROM a") == "with"
    assert _verb("LISTEN outbox") == "other"
    assert _verb("") == "other"


def test_replicas_flag_is_parsed() -> None:
    from switchboard_devstack.stack import parse_replicas

    assert parse_replicas("conversation=2,router=2") == {"conversation": 2, "router": 2}
    assert parse_replicas(" router = 3 , ") == {"router": 3}
    assert parse_replicas("ingest=1") == {"ingest": 1}
    assert parse_replicas("") == {}
    for bad, why in (
        ("conversation", "expected NAME=N"),
        ("conversation=", "expected NAME=N"),
        ("=2", "expected NAME=N"),
        ("billing=2", "not a service"),
        ("router=two", "whole number"),
        ("router=0", "at least 1"),
        ("router=-1", "at least 1"),
        ("router=2,router=3", "given twice"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_replicas(bad)


def test_replicas_option_of_the_bench() -> None:
    import argparse

    from switchboard_devstack.bench.runner import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).replicas is None
    args = parser.parse_args(["--replicas", "conversation=2,router=2"])
    assert args.replicas == {"conversation": 2, "router": 2}
    with pytest.raises(SystemExit):
        parser.parse_args(["--replicas", "router=0"])


def test_service_processes_name_and_place_their_replicas(tmp_path: Any) -> None:
    from switchboard_devstack.stack import SERVICES, ServiceProcesses

    default = ServiceProcesses({}, tmp_path)
    assert [(i.name, i.port, i.log_name) for i in default.instances] == [
        (s.name, s.port, f"{s.name}.log") for s in SERVICES
    ]
    ports = {"ingest": 9001, "conversation": 9002, "router": 9003, "metrics": 9004}
    scaled = ServiceProcesses({}, tmp_path, ports=ports, replicas={"conversation": 2, "router": 3})
    assert scaled.replicas == {"ingest": 1, "conversation": 2, "router": 3, "metrics": 1}
    names = [i.name for i in scaled.instances]
    assert names == [
        "ingest",
        "conversation#1",
        "conversation#2",
        "router#1",
        "router#2",
        "router#3",
        "metrics",
    ]
    assert scaled.of("conversation")[0].port == 9002
    assert len({i.port for i in scaled.instances}) == len(names)
    assert scaled.url("router") == "http://127.0.0.1:9003"  # a service's name: its first replica
    assert scaled.url("router#2") == scaled.of("router")[1].url
    assert scaled.of("router")[2].log_name == "router-3.log"
    with pytest.raises(ValueError, match="unknown"):
        ServiceProcesses({}, tmp_path, replicas={"billing": 2})
    with pytest.raises(ValueError, match="at least one"):
        ServiceProcesses({}, tmp_path, replicas={"router": 0})


def test_replica_figures_add_up() -> None:
    before = promscrape.parse(METRICS_BEFORE)
    after = promscrape.parse(METRICS_AFTER)
    one = promscrape.delta(before, after)
    both = promscrape.combine([one, one])
    assert promscrape.total(both, promscrape.SQL_STATEMENTS) == 40
    assert promscrape.by_label(both, promscrape.KAFKA_REQUESTS, "api") == {
        "FetchRequest": 120,
        "ProduceRequest": 40,
    }
    assert promscrape.combine([]) == {}
    total = procstat.total(
        [procstat.TreeDelta(1.5, 1, 0, 0), procstat.TreeDelta(0.5, 2, 1, 1)],
    )
    assert total == procstat.TreeDelta(2.0, 3, 1, 1)


def test_lean_generator_spreads_connections_over_ports() -> None:
    assert loadgen.parse_ports("8001") == [8001]
    assert loadgen.parse_ports("8001,8005") == [8001, 8005]
    with pytest.raises(ValueError, match="not a port list"):
        loadgen.parse_ports("0")
    args = loadgen.parse_args(["--port", "8001,8005", "--prefix", "p-", "--count", "1", "--out", "o"])
    assert args.port == [8001, 8005]


def test_report_shows_each_replica_and_their_sum() -> None:
    doc = _doc(1.0)
    doc["config"]["replicas"] = {"ingest": 1, "conversation": 2, "router": 1, "metrics": 1}
    replica = dict(doc["cpu"]["conversation"], ms_per_msg=0.5, cores=0.25)
    doc["cpu"]["conversation"]["replicas"] = {"conversation#2": replica, "conversation#1": replica}
    doc["counters"]["conversation"] = dict(doc["counters"]["ingest"], replicas=2, replicas_scraped=2)
    doc["memory"]["conversation#2"] = {"pid": 4, "rss_mib": 80.0, "hwm_mib": 81.0}
    doc["memory"]["conversation#1"] = {"pid": 3, "rss_mib": 80.0, "hwm_mib": 81.0}
    text = report.render(doc)
    lines = text.splitlines()
    assert "replicas: conversation x2 (in one consumer group each); every other service 1" in text
    at = next(i for i, line in enumerate(lines) if line.startswith("  conversation ") and "sum of 2" in line)
    assert lines[at + 1].split()[:2] == ["conversation#1", "0.500"]
    assert lines[at + 2].split()[:2] == ["conversation#2", "0.500"]
    assert "[sum of 2 replicas]" in text
    memory = [line.split()[0] for line in lines[lines.index("memory at the end") + 2 :] if line.strip()]
    assert memory[:4] == ["ingest", "conversation#1", "conversation#2", "postgresql"]
    assert "WARNING" not in text
    assert "cpu_ms_per_msg.conversation#1" in report.compare(doc, doc)

    doc["counters"]["conversation"]["group_joins"] = 2.0
    assert "WARNING: consumer groups rebalanced inside the measured window (JoinGroup requests: " in (
        report.render(doc)
    )


def test_the_whatsapp_bench_sends_what_ingest_verifies_and_parses() -> None:
    args = loadgen.parse_args(
        ["--port=1", "--prefix=b1x-", "--count=3", "--channel=whatsapp", "--secret=s3cret", "--out=/dev/null"]
    )
    head, _, body = loadgen.Generator(args).request(2).partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    assert "Authorization" not in headers and int(headers["Content-Length"]) == len(body)
    channel = WhatsAppChannel(
        app_secret="s3cret",
        verify_token="v",
        access_token="a",
        phone_number_id="bench-number",
        api_base="http://x",
    )
    request = WebhookRequest(body=body, headers={k.lower(): v for k, v in headers.items()}, url="http://x/")
    channel.verify(request)
    [message] = channel.parse(request).messages
    assert message.external_id == "wamid.b1x-2"
    assert message.sender.value == "+" + loadgen.phone_for("b1x-", 2)
    assert loadgen.phone_for("b1x-", 2) != loadgen.phone_for("b1x-", 3)


async def test_the_lag_sampler_gives_each_groups_lag_in_seconds_of_its_own_input() -> None:
    # Two groups, equally many records behind; "metrics" handles four times the records per second, so
    # it is a quarter as far behind in time.
    handled = {"metrics": 0.0, "router": 0.0}
    enough = asyncio.Event()

    def metrics_text(request: httpx.Request) -> httpx.Response:
        handled["metrics"] += 400.0
        handled["router"] += 100.0
        if handled["metrics"] >= 2000:
            enough.set()
        lines = [
            f'switchboard_consumer_lag{{group="{g}",topic="t",partition="0"}} 100.0' for g in handled
        ] + [
            f'switchboard_events_consumed_total{{group="{g}",topic="t",outcome="ok"}} {n}'
            for g, n in handled.items()
        ]
        return httpx.Response(200, text="\n".join(lines) + "\n")

    async with httpx.AsyncClient(transport=httpx.MockTransport(metrics_text)) as client:
        sampler = promscrape.LagSampler(client, {"svc": "http://svc"}, interval_s=0.05)
        sampler.start()
        await asyncio.wait_for(enough.wait(), 10)
        lags = await sampler.stop()
    assert lags["metrics"]["mean"] == lags["router"]["mean"] == 100.0
    assert lags["metrics"]["rate"] == pytest.approx(4 * lags["router"]["rate"])
    assert lags["router"]["mean_s"] == pytest.approx(4 * lags["metrics"]["mean_s"])
    assert lags["metrics"]["max_s"] == pytest.approx(100.0 / lags["metrics"]["rate"])
