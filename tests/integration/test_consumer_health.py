"""A consumer that stops making progress shows it: /health/ready fails and switchboard_consumer_stalled says
why. And a consumer whose position lies beyond the end of a lost and recreated log resets itself to the
beginning of the new log, loudly, instead of waiting there forever with a reported lag of 0."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.errors import Unavailable
from switchboard_common.events import ConversationOpened, EventEnvelope
from switchboard_common.http.app import create_service_app
from switchboard_common.http.health import consumer_check
from switchboard_common.kafka.admin import ensure_topics
from switchboard_common.kafka.consumer import Delivery
from switchboard_common.runtime import ServiceRuntime
from switchboard_devstack.broker import EmbeddedBroker
from switchboard_devstack.ports import free_port
from tests.conftest import Settings
from tests.support import eventually, opened_envelope, serve

RESET_MESSAGE = "consumer position beyond the end of the log"


async def _produce(settings: Settings, envelopes: Sequence[EventEnvelope]) -> None:
    """Write ``envelopes`` to partition 0 of the conversation events, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(
                settings.topic(topics.CONVERSATION_EVENTS), envelope.to_bytes(), partition=0
            )
    finally:
        await producer.stop()


def _app(settings: Settings, group: str, handled: list[uuid.UUID], fail: list[bool] | None = None) -> FastAPI:
    """A service whose one consumer records the event ids it handles (and fails while ``fail[0]``)."""

    async def on_opened(session: AsyncSession, deliveries: Sequence[Delivery[ConversationOpened]]) -> None:
        if fail and fail[0]:
            raise Unavailable("database unavailable")
        handled.extend(d.envelope.event_id for d in deliveries)

    async def setup(runtime: ServiceRuntime, app: FastAPI) -> None:
        runtime.add_consumer(group, {ConversationOpened: on_opened})

    return create_service_app("consumer-health-test", settings, [], setup=setup)


async def _consumer_check(client: httpx.AsyncClient, group: str) -> tuple[int, dict[str, Any]]:
    response = await client.get("/health/ready")
    check: dict[str, Any] = response.json()["checks"][f"consumer:{group}"]
    return response.status_code, check


async def _stalled_gauge(client: httpx.AsyncClient, group: str, reason: str) -> float | None:
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "switchboard_consumer_stalled" and sample.labels == {
                "group": group,
                "reason": reason,
            }:
                return sample.value
    return None


class _ReadinessAtReset(logging.Handler):
    """Takes the consumer's readiness check at the moment the runner announces the reset, before it seeks:
    the window between the two is far too short to hit with HTTP probes."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(logging.WARNING)
        self.app = app
        self.checks: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(RESET_MESSAGE):
            runtime: ServiceRuntime = self.app.state.runtime
            self.checks.append(consumer_check(runtime.consumers[0], None))


async def test_a_position_beyond_a_recreated_log_is_reported_then_reset_to_its_beginning(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A broker of its own: losing its log must not disturb the session's broker.
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    broker.start()
    try:
        await _the_log_is_lost_and_recreated(
            settings.model_copy(update={"kafka_bootstrap": broker.bootstrap, "consumer_stall_seconds": 1.0}),
            broker,
            caplog,
        )
    finally:
        broker.stop()


async def _the_log_is_lost_and_recreated(
    settings: Settings, broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    group = f"test-{uuid.uuid4().hex[:6]}"
    tp = TopicPartition(settings.topic(topics.CONVERSATION_EVENTS), 0)
    await ensure_topics(settings)
    before = [opened_envelope() for _ in range(10)]
    await _produce(settings, before)
    handled: list[uuid.UUID] = []
    async with serve(_app(settings, group, handled)) as client:

        async def all_handled_and_ready() -> bool:
            status, _ = await _consumer_check(client, group)
            return len(handled) == len(before) and status == 200

        await eventually(all_handled_and_ready, what="the first log handled")

    # The broker loses its log (it keeps it in memory) and comes back; the topics are created again.
    broker.stop()
    broker.start()
    await ensure_topics(settings)
    # The group's offset on the old log lands on the new one: what aiokafka does with a commit it retried
    # (UnknownTopicOrPartition) until the topic existed again.
    committer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=settings.group(group), enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign([tp])
        await committer.commit({tp: len(before)})
    finally:
        await committer.stop()
    after = [opened_envelope() for _ in range(3)]  # fewer records than the consumer's position
    await _produce(settings, after)

    handled.clear()
    app = _app(settings, group, handled)
    at_reset = _ReadinessAtReset(app)
    runner_log = logging.getLogger("switchboard_common.kafka.consumer")
    runner_log.addHandler(at_reset)
    caplog.set_level(logging.WARNING, logger="switchboard_common.kafka.consumer")
    try:
        async with serve(app) as client:

            async def new_records_handled_and_ready() -> bool:
                status, _ = await _consumer_check(client, group)
                return set(handled) >= {e.event_id for e in after} and status == 200

            await eventually(new_records_handled_and_ready, what="the new log read from its beginning")
            _, check = await _consumer_check(client, group)
    finally:
        runner_log.removeHandler(at_reset)

    # Before the reset, readiness said why the consumer was not ok.
    before_reset = at_reset.checks[0]
    assert before_reset["ok"] is False
    assert "position beyond log end" in before_reset["problems"]
    assert before_reset["beyond_log_end"] == {f"{tp.topic}/0": {"position": 10, "log_end": 3}}
    # After it, every record of the new log was handled (the old one's are gone) and readiness is green.
    assert check["ok"] is True and check["beyond_log_end"] == {} and check["lag"] == 0
    assert set(handled) == {e.event_id for e in after}
    warnings = [r for r in caplog.records if r.getMessage().startswith(RESET_MESSAGE)]
    assert warnings, "the reset was not logged"
    warning = warnings[0]
    assert warning.levelno >= logging.WARNING
    fields = warning.__dict__
    assert (fields["topic"], fields["partition"], fields["position"], fields["log_end"]) == (
        tp.topic,
        0,
        10,
        3,
    )


async def test_a_handler_failing_on_an_unavailable_database_is_reported_stalled(settings: Settings) -> None:
    settings = settings.model_copy(update={"consumer_stall_seconds": 1.0})
    group = f"test-{uuid.uuid4().hex[:6]}"
    waiting = [opened_envelope() for _ in range(3)]
    await _produce(settings, waiting)
    handled: list[uuid.UUID] = []
    database_down = [True]
    async with serve(_app(settings, group, handled, fail=database_down)) as client:

        async def reported_stalled() -> dict[str, Any] | None:
            status, check = await _consumer_check(client, group)
            stalled = status == 503 and "no progress while records wait" in check.get("problems", ())
            return check if stalled else None

        check = await eventually(reported_stalled, what="readiness to report the stall")
        assert check["running"] is True and check["lag"] == len(waiting)
        assert list(check["stalled_s"]) == [f"{settings.topic(topics.CONVERSATION_EVENTS)}/0"]
        assert await _stalled_gauge(client, group, "no_progress") == 1
        assert handled == []

        database_down[0] = False  # the database is back: the records go through, the stall clears

        async def recovered() -> bool:
            status, _ = await _consumer_check(client, group)
            return status == 200 and len(handled) == len(waiting)

        await eventually(recovered, what="the consumer to recover")
        assert await _stalled_gauge(client, group, "no_progress") == 0
