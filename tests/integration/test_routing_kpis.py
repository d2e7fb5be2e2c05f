"""Offers, escalations and SLA breaches through the metrics consumer on the real broker and database: each
counted once however often it comes, offers by agent with the acceptance of those that ended, escalations
and breaches by queue, and the report's filters applied to the dimension each has."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from switchboard_common.events import (
    Channel,
    ConversationAssigned,
    ConversationEscalated,
    ConversationOfferDeclined,
    ConversationOffered,
    ConversationOfferTimedOut,
    ConversationSlaBreached,
    utcnow,
)
from switchboard_metrics.app import create_app as metrics_app
from tests.conftest import ADMIN_KEY, Settings
from tests.integration.test_metrics_counting import Event, keyed, opened, publish, report_once_counted
from tests.support import bearer, serve

ADMIN = bearer(ADMIN_KEY)


def _offered(cid: uuid.UUID, agent: uuid.UUID, at: datetime) -> Event:
    return keyed(
        cid,
        ConversationOffered(
            conversation_id=cid,
            agent_id=agent,
            queued_at=at,
            offered_at=at,
            expires_at=at + timedelta(seconds=30),
        ),
    )


def _ended(
    kind: type[ConversationOfferDeclined | ConversationOfferTimedOut],
    cid: uuid.UUID,
    agent: uuid.UUID,
    at: datetime,
) -> Event:
    return keyed(cid, kind(conversation_id=cid, agent_id=agent, queued_at=at, offered_at=at, ended_at=at))


def _accepted(cid: uuid.UUID, agent: uuid.UUID, at: datetime) -> Event:
    assigned = ConversationAssigned(
        conversation_id=cid,
        agent_id=agent,
        queued_at=at,
        offered_at=at,
        assigned_at=at + timedelta(seconds=5),
    )
    return keyed(cid, assigned)


def _escalated(cid: uuid.UUID, queue: str, step: int, at: datetime) -> Event:
    escalated = ConversationEscalated(
        conversation_id=cid, queue=queue, step=step, required_skills={}, queued_at=at, escalated_at=at
    )
    return keyed(cid, escalated)


def _breached(cid: uuid.UUID, queue: str, at: datetime) -> Event:
    breached = ConversationSlaBreached(
        conversation_id=cid, queue=queue, sla_target_s=30, queued_at=at, breached_at=at, priority=1
    )
    return keyed(cid, breached)


async def test_offers_escalations_and_breaches_are_counted_once_by_agent_and_by_queue(
    settings: Settings,
) -> None:
    t0 = utcnow() - timedelta(minutes=10)
    ada, bo = uuid.uuid4(), uuid.uuid4()
    c1, c2, c3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    offer_to_ada = _offered(c1, ada, t0)
    events = [
        keyed(c1, opened(c1, t0, Channel.WHATSAPP)),
        keyed(c2, opened(c2, t0, Channel.EMAIL)),
        keyed(c3, opened(c3, t0, Channel.EMAIL)),
        # c1: offered to Ada, who declines; to Bo, who lets it lapse; to Ada again, who accepts.
        offer_to_ada,
        _ended(ConversationOfferDeclined, c1, ada, t0 + timedelta(seconds=10)),
        _offered(c1, bo, t0 + timedelta(seconds=20)),
        _ended(ConversationOfferTimedOut, c1, bo, t0 + timedelta(seconds=50)),
        _offered(c1, ada, t0 + timedelta(seconds=60)),
        _accepted(c1, ada, t0 + timedelta(seconds=60)),
        offer_to_ada,  # redelivered
        # c2 escalates twice in "vip" and breaches; c3 breaches in "default".
        _escalated(c2, "vip", 1, t0 + timedelta(seconds=30)),
        _escalated(c2, "vip", 2, t0 + timedelta(seconds=90)),
        _breached(c2, "vip", t0 + timedelta(seconds=120)),
        _breached(c2, "vip", t0 + timedelta(seconds=120)),  # redelivered
        _breached(c3, "default", t0 + timedelta(seconds=40)),
    ]
    async with serve(metrics_app(settings)) as client:
        await publish(settings, events)
        counted = {
            "conversation.offered": 3,
            "conversation.offer_declined": 1,
            "conversation.offer_timed_out": 1,
            "conversation.escalated": 2,
            "conversation.sla_breached": 2,
        }
        await report_once_counted(client, counted)

        async def routing(**params: str) -> dict[str, Any]:
            body = (await client.get("/v1/kpis", params={"window": "hour", **params}, headers=ADMIN)).json()
            section: dict[str, Any] = body["routing"]
            return section

        r = await routing()
        assert r["offers"] == {
            "offered": 3,
            "accepted": 1,
            "declined": 1,
            "timed_out": 1,
            "acceptance_rate": 0.3333,
        }
        by_agent = {row["agent_id"]: row for row in r["offers_by_agent"]}
        assert (by_agent[str(ada)]["offered"], by_agent[str(ada)]["acceptance_rate"]) == (2, 0.5)
        assert (
            by_agent[str(bo)]["offered"],
            by_agent[str(bo)]["timed_out"],
            by_agent[str(bo)]["acceptance_rate"],
        ) == (
            1,
            1,
            0.0,
        )
        assert (r["escalations"], r["sla_breaches"]) == (2, 2)
        assert r["by_queue"] == [
            {"queue": "default", "escalations": 0, "sla_breaches": 1},
            {"queue": "vip", "escalations": 2, "sla_breaches": 1},
        ]

        # An agent narrows the offers and leaves the queues' figures whole; a queue the other way round.
        mine = await routing(agent_id=str(bo))
        assert (mine["offers"]["offered"], mine["sla_breaches"]) == (1, 2)
        vip = await routing(queue="vip")
        assert (vip["offers"]["offered"], vip["sla_breaches"], vip["escalations"]) == (3, 1, 2)
        # The channel is the conversation's: email holds c2 and c3, none of the offers.
        email = await routing(channel="email")
        assert (email["offers"]["offered"], email["sla_breaches"], email["escalations"]) == (0, 2, 2)
        # A window that ends before any of it: nothing.
        before = (t0 - timedelta(hours=2)).isoformat()
        empty = await routing(window="range", start=before, end=(t0 - timedelta(hours=1)).isoformat())
        assert (empty["offers"]["offered"], empty["sla_breaches"]) == (0, 0)
