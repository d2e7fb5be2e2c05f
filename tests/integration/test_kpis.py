"""The KPI report on the real database, through the real HTTP app: scripted histories whose answers are
worked out by hand, recorded by ``record_batch`` as the consumer does, then read from ``GET /v1/kpis`` (and
its SSE stream). Percentiles come from a 1 % sketch (compared within 1.1 %); counts, means and rates are
exact."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from switchboard_common.db.database import Database
from switchboard_common.events import (
    AgentStatus,
    AgentStatusChanged,
    Channel,
    ConversationAssigned,
    ConversationMessageAdded,
    ConversationOpened,
    ConversationQueued,
    ConversationRequeued,
    ConversationResolved,
    Direction,
    MessageOutbound,
    Payload,
    RequeueReason,
    utcnow,
)
from switchboard_devstack.ports import free_port
from switchboard_metrics.app import create_app as metrics_app
from tests.conftest import ADMIN_KEY, Settings, truncate_all
from tests.integration.test_metrics_counting import Log, received, record, reopened
from tests.support import bearer, eventually, serve

# Email is judged against a minute; every other channel against the default 20 s.
TARGETS = {"metrics_service_level_default_s": 20, "metrics_service_level_targets_s": {"email": 60}}


def kpi_settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(update={**TARGETS, **overrides})


# --- a scripted history ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """Four conversations two hours ago (minute-aligned ``base``), with their answers worked out by hand:

    c1 webchat, queue sales, tags vip: waits 10 s for agent x, x replies at 30 s, x resolves at 100 s.
    c2 webchat, sales, vip+billing, same customer as c1: waits 40 s for y; an automatic reply at 5 s; y's
       replies at 90 s (told first) and 60 s (told later: the first response); still open, held by y.
    c3 webchat, sales: resolved at 20 s by nobody, never assigned: abandoned.
    c4 email, support, billing: the customer also writes on whatsapp; waits 50 s for x, x resolves at
       200 s, and the customer comes back at 300 s (a reopen: no first contact resolution), waiting again.
    Agent x online from base, away from base + 600 s; y online from base + 1200 s.
    """

    base: datetime
    c1: uuid.UUID
    c2: uuid.UUID
    c3: uuid.UUID
    c4: uuid.UUID
    x: uuid.UUID
    y: uuid.UUID
    events: list[Payload]

    def at(self, seconds: float) -> datetime:
        return self.base + timedelta(seconds=seconds)


def _opened(cid: uuid.UUID, customer: uuid.UUID, at: datetime, channel: Channel, tags: list[str]) -> Payload:
    return ConversationOpened(
        conversation_id=cid,
        customer_id=customer,
        channel=channel,
        required_skills=[],
        priority=0,
        opened_at=at,
        tags=tags,
    )


def _queued(cid: uuid.UUID, at: datetime, queue: str) -> Payload:
    return ConversationQueued(conversation_id=cid, required_skills=[], priority=0, queued_at=at, queue=queue)


def _assigned(cid: uuid.UUID, agent: uuid.UUID, queued_at: datetime, at: datetime, queue: str) -> Payload:
    return ConversationAssigned(
        conversation_id=cid, agent_id=agent, queued_at=queued_at, assigned_at=at, queue=queue
    )


def _reply(cid: uuid.UUID, agent: uuid.UUID, at: datetime, *, automated: bool = False) -> Payload:
    return MessageOutbound(
        message_id=uuid.uuid4(),
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=Channel.WEBCHAT,
        agent_id=agent,
        text="hello",
        sent_at=at,
        automated=automated,
    )


def _resolved(cid: uuid.UUID, agent: uuid.UUID | None, at: datetime) -> Payload:
    return ConversationResolved(conversation_id=cid, agent_id=agent, resolved_at=at)


def _requeued(cid: uuid.UUID, agent: uuid.UUID, at: datetime) -> Payload:
    return ConversationRequeued(
        conversation_id=cid, agent_id=agent, reason=RequeueReason.AGENT_OFFLINE, queued_at=at, requeued_at=at
    )


def _status(agent: uuid.UUID, status: AgentStatus, at: datetime) -> Payload:
    return AgentStatusChanged(
        agent_id=agent, status=status, previous_status=AgentStatus.OFFLINE, changed_at=at
    )


def history() -> History:
    base = (utcnow() - timedelta(hours=2)).replace(second=0, microsecond=0)
    c1, c2, c3, c4, x, y = (uuid.uuid4() for _ in range(6))
    k1, k2, k3 = (uuid.uuid4() for _ in range(3))

    def at(seconds: float) -> datetime:
        return base + timedelta(seconds=seconds)

    events: list[Payload] = [
        _opened(c1, k1, base, Channel.WEBCHAT, ["vip"]),
        _queued(c1, base, "sales"),
        received(1, at=at(1)).model_copy(update={"channel": Channel.WEBCHAT}),
        _assigned(c1, x, base, at(10), "sales"),
        _reply(c1, x, at(30)),
        _resolved(c1, x, at(100)),
        _opened(c2, k1, base, Channel.WEBCHAT, ["vip", "billing"]),
        _queued(c2, base, "sales"),
        received(2, at=at(1)).model_copy(update={"channel": Channel.WEBCHAT}),
        _reply(c2, y, at(5), automated=True),
        _assigned(c2, y, base, at(40), "sales"),
        _reply(c2, y, at(90)),
        _reply(c2, y, at(60)),
        _opened(c3, k2, base, Channel.WEBCHAT, []),
        _queued(c3, base, "sales"),
        _resolved(c3, None, at(20)),
        _opened(c4, k3, base, Channel.EMAIL, ["billing"]),
        _queued(c4, base, "support"),
        ConversationMessageAdded(
            conversation_id=c4,
            message_id=uuid.uuid4(),
            channel=Channel.WHATSAPP,
            direction=Direction.INBOUND,
            sent_at=at(2),
        ),
        _assigned(c4, x, base, at(50), "support"),
        _resolved(c4, x, at(200)),
        reopened(c4, at(300)),
        _status(x, AgentStatus.ONLINE, base),
        _status(x, AgentStatus.AWAY, at(600)),
        _status(y, AgentStatus.ONLINE, at(1200)),
    ]
    return History(base, c1, c2, c3, c4, x, y, events)


def range_of(h: History) -> dict[str, str]:
    """A range holding the whole history: from its minute to an hour later (long ago enough to be past)."""
    return {"window": "range", "start": h.base.isoformat(), "end": h.at(3600).isoformat()}


async def kpis(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/kpis", params=params, headers=bearer(ADMIN_KEY))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def approx(value: float) -> Any:
    return pytest.approx(value, rel=0.011)


# --- the figures ---------------------------------------------------------------------------------------------


async def test_a_scripted_history_gives_the_figures_worked_out_by_hand(
    settings: Settings, db: Database
) -> None:
    h = history()
    log = Log(settings)
    await record(db, log.append(h.events))
    async with serve(metrics_app(kpi_settings(settings))) as client:
        r = await kpis(client, **range_of(h))

    v = r["volume"]
    assert v == {
        "messages_in": 2,
        "messages_out": 4,  # the automatic reply is a message sent
        "conversations_opened": 4,
        "conversations_assigned": 3,
        "conversations_resolved": 3,
        "conversations_reopened": 1,
        "conversations_abandoned": 1,
        "customers": 3,
        "conversations_per_customer": round(4 / 3, 4),
        "multichannel_share": 0.25,  # c4: email and whatsapp
    }
    t = r["times"]
    # First response: c1 30 s, c2 60 s (its automatic reply excluded, its earliest human reply told late).
    assert (t["first_response"]["count"], t["first_response"]["mean"]) == (2, 45.0)
    assert t["first_response"]["p50"] == approx(30.0)  # rank 0.5 of two: the lower one
    assert t["first_response"]["max"] == approx(60.0)
    assert (t["wait"]["count"], t["wait"]["mean"]) == (3, round(100 / 3, 3))  # 10, 40, 50
    assert (t["wait"]["p50"], t["wait"]["p90"]) == (approx(40.0), approx(40.0))
    assert (t["resolution"]["count"], t["resolution"]["mean"]) == (3, round(320 / 3, 3))  # 100, 20, 200
    assert t["resolution"]["p50"] == approx(100.0)
    assert (t["handle"]["count"], t["handle"]["mean"]) == (2, 120.0)  # c1 90, c4 150; c3 was never handled
    assert t["handle"]["p50"] == approx(90.0)

    assert r["rates"] == {
        # c1 10 s within 20 s, c2 40 s not, c4 (email) 50 s within 60 s; c3 abandoned counts as missed.
        "service_level": 0.5,
        "service_level_met": 2,
        "abandonment_rate": 0.25,  # 1 / (1 + 3)
        "resolution_rate": 0.75,
        "first_contact_resolution": round(2 / 3, 4),  # c1 and c3; c4 came back
        "reopen_rate": round(1 / 3, 4),
    }

    queues = {q["queue"]: q for q in r["queues"]}
    assert sorted(queues) == ["sales", "support"]
    sales, support = queues["sales"], queues["support"]
    assert (sales["conversations_opened"], sales["wait"]["count"], sales["waiting_now"]) == (3, 2, 0)
    assert (sales["rates"]["service_level"], sales["rates"]["abandonment_rate"]) == (
        round(1 / 3, 4),
        round(1 / 3, 4),
    )
    assert (support["conversations_opened"], support["wait"]["count"], support["waiting_now"]) == (1, 1, 1)
    assert support["rates"]["service_level"] == 1.0
    assert support["longest_wait_seconds"] >= 2 * 3600 - 300 - 60  # waiting since its reopen, ~2 h ago
    assert r["waiting_now"] == 1

    agents = {uuid.UUID(a["agent_id"]): a for a in r["agents"]}
    assert set(agents) == {h.x, h.y}
    x, y = agents[h.x], agents[h.y]
    assert (x["assignments"], x["assignment_share"], y["assignments"], y["assignment_share"]) == (
        2,
        round(2 / 3, 4),
        1,
        round(1 / 3, 4),
    )
    assert (x["handled"], x["handle"]["count"], x["handle"]["mean"], y["handled"]) == (2, 2, 120.0, 0)
    assert x["status_seconds"] == {"online": 600.0, "away": 3000.0}
    assert y["status_seconds"] == {"online": 2400.0}
    assert (x["status"], y["status"]) == ("away", "online")
    assert (x["occupancy"], y["occupancy"]) == (0.4, 0.0)  # 240 s handled / 600 s online
    assert (x["active_conversations"], y["active_conversations"]) == (0, 1)  # c4 waits again since its reopen

    by_tag = {b["key"]: (b["conversations_opened"], b["conversations_resolved"]) for b in r["by_tag"]}
    assert by_tag == {"billing": (2, 1), "vip": (2, 1)}
    by_channel = {b["key"]: (b["conversations_opened"], b["messages_in"]) for b in r["by_channel"]}
    assert by_channel == {"webchat": (3, 2), "email": (1, 0)}
    assert sum(p["conversations_opened"] for p in r["series"]) == 4


# Per filter: (opened, wait count, messages_in); messages have only a channel, so the other filters keep
# them all.
FILTERS: list[tuple[dict[str, str], tuple[int, int, int]]] = [
    ({"channel": "email"}, (1, 1, 0)),
    ({"channel": "webchat"}, (3, 2, 2)),
    ({"queue": "sales"}, (3, 2, 2)),
    ({"queue": "nowhere"}, (0, 0, 2)),
    ({"tag": "vip"}, (2, 2, 2)),
    ({"tag": "billing"}, (2, 2, 2)),
    ({"agent": "x"}, (2, 2, 2)),
    ({"agent": "y"}, (1, 1, 2)),
]


async def test_each_filter_narrows_the_report(settings: Settings, db: Database) -> None:
    h = history()
    await record(db, Log(settings).append(h.events))
    async with serve(metrics_app(kpi_settings(settings))) as client:
        for given, expected in FILTERS:
            filters = given
            if "agent" in given:
                filters = {"agent_id": str(h.x if given["agent"] == "x" else h.y)}
            r = await kpis(client, **range_of(h), **filters)
            assert r["filters"] == {"channel": None, "queue": None, "agent_id": None, "tag": None} | filters
            figures = (
                r["volume"]["conversations_opened"],
                r["times"]["wait"]["count"],
                r["volume"]["messages_in"],
            )
            assert figures == expected, given
            if "agent_id" in filters:
                assert [a["agent_id"] for a in r["agents"]] == [filters["agent_id"]]


async def test_a_requeue_moves_a_held_conversation_back_to_waiting(settings: Settings, db: Database) -> None:
    h = history()
    log = Log(settings)
    await record(db, log.append(h.events))
    async with serve(metrics_app(kpi_settings(settings))) as client:
        before = await kpis(client, **range_of(h))
        await record(db, log.append([_requeued(h.c2, h.y, h.at(400))]))
        after = await kpis(client, **range_of(h))
        # Assigned again (to x), after the requeue: held by x now.
        await record(db, log.append([_assigned(h.c2, h.x, h.at(400), h.at(500), "sales")]))
        again = await kpis(client, **range_of(h))

    def held(r: dict[str, Any]) -> dict[uuid.UUID, int]:
        return {uuid.UUID(a["agent_id"]): a["active_conversations"] for a in r["agents"]}

    assert (before["waiting_now"], held(before)) == (1, {h.x: 0, h.y: 1})
    assert (after["waiting_now"], held(after)) == (2, {h.x: 0, h.y: 0})
    assert {q["queue"]: q["waiting_now"] for q in after["queues"]} == {"sales": 1, "support": 1}
    assert (again["waiting_now"], held(again)) == (1, {h.x: 1, h.y: 0})
    # The second assignment is an assignment of x's, but the conversation was assigned (and waited) once.
    x = next(a for a in again["agents"] if a["agent_id"] == str(h.x))
    assert (x["assignments"], again["volume"]["conversations_assigned"], again["times"]["wait"]["count"]) == (
        3,
        3,
        3,
    )


# --- windows and bad queries ---------------------------------------------------------------------------------


async def test_hours_old_events_are_outside_the_live_window_but_inside_a_range(
    settings: Settings, db: Database
) -> None:
    h = history()
    now = utcnow() - timedelta(seconds=5)
    await record(
        db, Log(settings).append([*h.events, _opened(uuid.uuid4(), uuid.uuid4(), now, Channel.SMS, [])])
    )
    async with serve(metrics_app(kpi_settings(settings))) as client:
        live = await kpis(client)
        hour = await kpis(client, window="hour")
        ranged = await kpis(client, **range_of(h))
        everything = await kpis(
            client,
            window="range",
            start=h.at(-60).isoformat(),
            end=(utcnow() + timedelta(minutes=1)).isoformat(),
        )
    assert live["window"]["name"] == "live"
    assert (live["volume"]["conversations_opened"], hour["volume"]["conversations_opened"]) == (1, 1)
    assert ranged["volume"]["conversations_opened"] == 4
    assert everything["volume"]["conversations_opened"] == 5


BAD_QUERIES: list[tuple[str, dict[str, str]]] = [
    ("no end", {"window": "range", "start": "TODAYT10:00:00Z"}),
    ("no start", {"window": "range", "end": "TODAYT10:00:00Z"}),
    ("end = start", {"window": "range", "start": "TODAYT10:00:00Z", "end": "TODAYT10:00:00Z"}),
    ("end < start", {"window": "range", "start": "TODAYT10:00:00Z", "end": "TODAYT09:00:00Z"}),
    ("naive", {"window": "range", "start": "TODAYT09:00:00", "end": "TODAYT10:00:00"}),
    ("start without range", {"window": "live", "start": "TODAYT09:00:00Z"}),
    ("beyond retention", {"window": "range", "start": "2000-01-01T00:00:00Z", "end": "2000-01-02T00:00:00Z"}),
    ("unknown window", {"window": "week"}),
    ("unknown channel", {"channel": "pigeon"}),
    ("bad agent id", {"agent_id": "not-a-uuid"}),
    ("not a time", {"window": "range", "start": "yesterday", "end": "today"}),
    (
        "end beyond UTC's range",
        {"window": "range", "start": "TODAYT09:00:00Z", "end": "9999-12-31T23:59:59-14:00"},
    ),
    ("NUL in a tag", {"tag": "vip\x00"}),
    ("NUL in a queue", {"queue": "\x00"}),
]


async def test_a_bad_query_is_a_422(settings: Settings) -> None:
    # Ranges within retention whatever day the test runs: "TODAY" is replaced by the date.
    today = utcnow().date().isoformat()
    async with serve(metrics_app(kpi_settings(settings))) as client:
        for name, query in BAD_QUERIES:
            params = {k: v.replace("TODAY", today) for k, v in query.items()}
            for path in ("/v1/kpis", "/v1/kpis/stream"):
                response = await client.get(path, params=params, headers=bearer(ADMIN_KEY))
                assert response.status_code == 422, (name, path, response.text)
                assert response.headers["content-type"].startswith("application/json"), (name, path)


async def test_kpis_need_the_admin_credential(settings: Settings) -> None:
    async with serve(metrics_app(kpi_settings(settings))) as client:
        assert (await client.get("/v1/kpis")).status_code == 401
        assert (await client.get("/v1/kpis", headers=bearer("not-the-key"))).status_code == 401
        assert (await client.get("/v1/kpis/stream")).status_code == 401


# --- late and out-of-order histories -----------------------------------------------------------------------------


def comparable(r: dict[str, Any]) -> dict[str, Any]:
    """A report without what depends on when it is read: its time, and how long the waiters have waited."""
    out = {k: v for k, v in r.items() if k not in {"generated_at", "window", "longest_wait_seconds"}}
    out["queues"] = [{k: v for k, v in q.items() if k != "longest_wait_seconds"} for q in r["queues"]]
    return out


async def test_the_order_and_repeats_of_a_history_do_not_change_its_report(
    settings: Settings, db: Database
) -> None:
    """In order in one call; one event per call in reverse order (assigned before opened, resolved before
    assigned, replies before their conversation); everything twice: the same report."""
    h = history()
    log = Log(settings)
    reports = []
    async with serve(metrics_app(kpi_settings(settings))) as client:
        for calls in (
            [log.append(h.events)],
            [log.append([e]) for e in reversed(h.events)],
            [log.append(h.events), log.append(reversed(h.events)), log.append(h.events[::2])],
        ):
            await truncate_all(settings.database_url)
            await record(db, *calls)
            reports.append(comparable(await kpis(client, **range_of(h))))
    assert reports[0]["volume"]["conversations_opened"] == 4
    assert reports[1] == reports[0]
    assert reports[2] == reports[0]


async def test_late_facts_move_the_figures(settings: Settings, db: Database) -> None:
    """An assignment before its opening; a resolution before any assignment (abandoned, until the late
    assignment makes it handled); a reopen after the resolution retracts its first contact resolution."""
    h = history()
    log = Log(settings)
    cid, agent, customer = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with serve(metrics_app(kpi_settings(settings))) as client:
        await record(db, log.append([_resolved(cid, agent, h.at(100))]))
        await record(db, log.append([_opened(cid, customer, h.base, Channel.WEBCHAT, [])]))
        first = await kpis(client, **range_of(h))
        await record(db, log.append([_assigned(cid, agent, h.base, h.at(30), "sales")]))
        second = await kpis(client, **range_of(h))
        await record(db, log.append([reopened(cid, h.at(150))]))
        third = await kpis(client, **range_of(h))
    assert (first["volume"]["conversations_abandoned"], first["rates"]["abandonment_rate"]) == (1, 1.0)
    assert first["times"]["handle"]["count"] == 0
    assert (second["volume"]["conversations_abandoned"], second["rates"]["abandonment_rate"]) == (0, 0.0)
    assert (second["times"]["handle"]["mean"], second["times"]["wait"]["mean"]) == (70.0, 30.0)
    assert (second["rates"]["first_contact_resolution"], second["rates"]["reopen_rate"]) == (1.0, 0.0)
    assert (third["rates"]["first_contact_resolution"], third["rates"]["reopen_rate"]) == (0.0, 1.0)
    assert third["waiting_now"] == 1


# --- the stream ---------------------------------------------------------------------------------------------------


@asynccontextmanager
async def serve_on_port(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free local port (httpx's ASGI transport buffers whole responses, so
    it cannot read a stream that never ends); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
    )
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()
            raise AssertionError("the server stopped during startup")
        return server.started

    try:
        await eventually(started, what="the service to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def frames(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Server-sent events: (event, parsed data) per frame; comments (pings) skipped."""
    event, data = "", ""
    async for line in lines:
        if line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data += line.removeprefix("data:").strip()
        elif line == "" and data:
            yield event, json.loads(data)
            event, data = "", ""


async def test_the_stream_pushes_fresh_reports(settings: Settings, db: Database) -> None:
    log = Log(settings)
    now = utcnow() - timedelta(seconds=5)
    await record(db, log.append([_opened(uuid.uuid4(), uuid.uuid4(), now, Channel.SMS, [])]))
    app = metrics_app(kpi_settings(settings, metrics_stream_interval_s=0.2))
    async with (
        serve_on_port(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream("GET", "/v1/kpis/stream", headers=bearer(ADMIN_KEY)) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reports = frames(response.aiter_lines())
        event, first = await asyncio.wait_for(anext(reports), 10)
        assert (event, first["volume"]["conversations_opened"], first["window"]["name"]) == (
            "kpis",
            1,
            "live",
        )
        await record(db, log.append([_opened(uuid.uuid4(), uuid.uuid4(), now, Channel.SMS, [])]))

        async def next_opened() -> int:
            event, body = await asyncio.wait_for(anext(reports), 10)
            assert event == "kpis"
            opened: int = body["volume"]["conversations_opened"]
            return opened if opened != 1 else 0

        assert await eventually(next_opened, timeout=10, what="a report with the new conversation") == 2


async def test_a_rebuild_recomputes_the_rollups_from_the_facts(settings: Settings, db: Database) -> None:
    """Rollups lost, or wrong (a definition changed, a stray cell): POST /v1/kpis/rebuild makes them again
    from the facts, and the report is the one the consumer's deltas had made."""
    h = history()
    await record(db, Log(settings).append(h.events))
    async with serve(metrics_app(kpi_settings(settings))) as client:
        before = await kpis(client, **range_of(h))
        async with db.unit_of_work() as session:
            await session.execute(sa.text("DELETE FROM metrics.kpi_cells WHERE metric = 'wait'"))
            await session.execute(
                sa.text(
                    "INSERT INTO metrics.kpi_cells VALUES (:minute, 'opened', 'sms', '', '', '', 0, 7, 0)"
                ),
                {"minute": h.base},
            )
        assert comparable(await kpis(client, **range_of(h))) != comparable(before)
        assert (await client.post("/v1/kpis/rebuild")).status_code == 401
        response = await client.post("/v1/kpis/rebuild", headers=bearer(ADMIN_KEY))
        assert response.status_code == 200, response.text
        assert response.json() == {
            "conversations": 4,
            "messages": 7,
            "assignments": 3,
            "deliveries": 0,
        }
        assert comparable(await kpis(client, **range_of(h))) == comparable(before)
