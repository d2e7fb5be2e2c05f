"""Satisfaction KPIs through the metrics consumer on the real broker and database: survey answers published
on conversation.events (one twice) become CSAT, NPS, CES and the list of low ratings in GET /v1/kpis."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from switchboard_common import topics
from switchboard_common.events import Channel, EventEnvelope, SurveyAnswered, utcnow
from switchboard_common.kafka.producer import EventPublisher
from switchboard_metrics.app import create_app as metrics_app
from tests.conftest import ADMIN_KEY, Settings
from tests.support import bearer, eventually, serve

ADMIN = bearer(ADMIN_KEY)


def survey_answer(
    kind: str, score: int, channel: Channel = Channel.WHATSAPP, low: bool = False, at: datetime | None = None
) -> SurveyAnswered:
    """A customer's answer to the survey of a conversation of their own, answered ``at`` (now)."""
    now = at or utcnow()
    return SurveyAnswered(
        survey_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        kind=kind,
        score=score,
        follow_up=low,
        channel=channel,
        agent_id=None,
        asked_at=now - timedelta(minutes=1),
        answered_at=now,
    )


async def test_survey_answers_become_csat_nps_ces_and_low_ratings(settings: Settings) -> None:
    answers = [
        survey_answer("csat", 5),
        survey_answer("csat", 4),
        survey_answer("csat", 1, Channel.SMS, low=True),
        survey_answer("nps", 10),
        survey_answer("nps", 3, low=True),
        survey_answer("ces", 6),
    ]
    publisher = EventPublisher(settings, client_id="test-satisfaction")
    await publisher.start()
    try:
        async with serve(metrics_app(settings)) as client:
            for answer in [*answers, answers[0]]:  # the first one delivered twice
                envelope = EventEnvelope.wrap(answer, producer="test")
                await publisher.publish(topics.CONVERSATION_EVENTS, str(answer.conversation_id), envelope)

            async def report() -> dict[str, Any] | None:
                body: dict[str, Any] = (await client.get("/v1/kpis", headers=ADMIN)).json()
                s = body["satisfaction"]
                counted = s["csat_responses"] + s["nps_responses"] + s["ces_responses"]
                return s if counted == len(answers) else None

            s = await eventually(report, timeout=30, what="every answer counted")
            assert (s["csat_responses"], s["nps_responses"], s["ces_responses"]) == (3, 2, 1)
            assert abs(s["csat_percent"] - 200 / 3) < 1e-9  # 5 and 4 of 5, 4, 1
            assert s["nps"] == 0.0  # one promoter, one detractor
            assert s["ces_mean"] == 6.0
            assert {(r["kind"], r["score"]) for r in s["low_ratings"]} == {("csat", 1), ("nps", 3)}

            by_sms = (await client.get("/v1/kpis", params={"channel": "sms"}, headers=ADMIN)).json()
            assert by_sms["satisfaction"]["csat_responses"] == 1
            assert by_sms["satisfaction"]["csat_percent"] == 0.0
    finally:
        await publisher.stop()
