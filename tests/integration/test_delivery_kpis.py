"""Delivery KPIs through the metrics consumer on the real broker and database: delivery reports published on
delivery.events, out of order and some twice, become per-channel sent, delivered, read and failed counts,
rates and the sent-to-delivered latency in GET /v1/kpis; a late ``delivered`` adds its latency and undoes
no ``read``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from switchboard_common import topics
from switchboard_common.db.database import Database
from switchboard_common.events import (
    Channel,
    DeliveryState,
    DeliveryStatusChanged,
    EventEnvelope,
    delivery_event_id,
    utcnow,
)
from switchboard_common.kafka.producer import EventPublisher
from switchboard_metrics.app import create_app as metrics_app
from tests.conftest import ADMIN_KEY, Settings
from tests.integration.test_metrics_counting import report_once_counted
from tests.support import bearer, serve

ADMIN = bearer(ADMIN_KEY)
WA, SMS = Channel.WHATSAPP, Channel.SMS
S, D, R, F = DeliveryState.SENT, DeliveryState.DELIVERED, DeliveryState.READ, DeliveryState.FAILED


def _report(
    channel: Channel,
    external_id: str | None,
    status: DeliveryState,
    at: datetime,
    message_id: uuid.UUID | None = None,
) -> DeliveryStatusChanged:
    return DeliveryStatusChanged(
        channel=channel, message_id=message_id, external_id=external_id, status=status, at=at
    )


async def _publish(publisher: EventPublisher, reports: Sequence[DeliveryStatusChanged]) -> None:
    for r in reports:
        envelope = EventEnvelope.wrap(r, producer="test", event_id=delivery_event_id(r))
        await publisher.publish(topics.DELIVERY_EVENTS, r.partition_key, envelope)


def _figures(d: dict[str, Any]) -> tuple[int, ...]:
    return (d["reported"], d["sent"], d["delivered"], d["read"], d["failed"])


async def test_delivery_reports_become_counts_rates_and_latency_per_channel(settings: Settings) -> None:
    # Within the live window (the last 15 minutes), and no report in the future of the read.
    t0 = (utcnow() - timedelta(minutes=3)).replace(second=0, microsecond=0)
    given_up = uuid.uuid4()
    first = [
        # wamid.A: the read comes first, then the send, then the delivered (twice).
        _report(WA, "wamid.A", R, t0 + timedelta(seconds=5)),
        _report(WA, "wamid.A", S, t0, message_id=uuid.uuid4()),
        _report(WA, "wamid.A", D, t0 + timedelta(seconds=2)),
        _report(WA, "wamid.A", D, t0 + timedelta(seconds=2)),
        # wamid.B: sent and read, its delivered not reported (yet).
        _report(WA, "wamid.B", S, t0, message_id=uuid.uuid4()),
        _report(WA, "wamid.B", R, t0 + timedelta(seconds=10)),
        # wamid.C: sent, then the provider reports it failed.
        _report(WA, "wamid.C", S, t0, message_id=uuid.uuid4()),
        _report(WA, "wamid.C", F, t0 + timedelta(seconds=3)),
        # SMS: a send given up on (our id alone), and one sent and delivered after 4 s.
        _report(SMS, None, F, t0, message_id=given_up),
        _report(SMS, "SM1", S, t0, message_id=uuid.uuid4()),
        _report(SMS, "SM1", D, t0 + timedelta(seconds=4)),
    ]
    publisher = EventPublisher(settings, client_id="test-delivery-kpis")
    await publisher.start()
    try:
        async with serve(metrics_app(settings)) as client:
            await _publish(publisher, [*first, *first[:3]])  # the first three delivered again
            body = await report_once_counted(
                client, {"delivery.status_changed": 10}
            )  # the repeated delivered is one report
            d = body["delivery"]
            assert _figures(d) == (5, 4, 3, 2, 2)
            assert (d["delivered_rate"], d["read_rate"], d["failed_rate"]) == (0.6, 0.4, 0.4)
            assert d["latency"]["count"] == 2
            assert d["latency"]["mean"] == pytest.approx(3.0)  # 2 s and 4 s
            by_channel = {c["channel"]: c for c in d["by_channel"]}
            assert _figures(by_channel["whatsapp"]) == (3, 3, 2, 2, 1)
            assert _figures(by_channel["sms"]) == (2, 1, 1, 0, 1)
            assert by_channel["sms"]["latency"]["max"] == pytest.approx(4.0, rel=0.011)

            # wamid.B's delivered arrives after its read: it adds the latency and leaves the read.
            await _publish(publisher, [_report(WA, "wamid.B", D, t0 + timedelta(seconds=8))])
            body = await report_once_counted(client, {"delivery.status_changed": 11})
            wa = {c["channel"]: c for c in body["delivery"]["by_channel"]}["whatsapp"]
            assert _figures(wa) == (3, 3, 2, 2, 1)
            assert wa["latency"]["count"] == 2
            assert wa["latency"]["mean"] == pytest.approx(5.0)  # 2 s and 8 s

            # The channel filter narrows the delivery figures as it does the others.
            sms = (await client.get("/v1/kpis", params={"channel": "sms"}, headers=ADMIN)).json()
            assert _figures(sms["delivery"]) == (2, 1, 1, 0, 1)
            assert [c["channel"] for c in sms["delivery"]["by_channel"]] == ["sms"]
            # A queue filter does not narrow them (deliveries have no queue), like messages.
            queued = (await client.get("/v1/kpis", params={"queue": "billing"}, headers=ADMIN)).json()
            assert _figures(queued["delivery"]) == (5, 4, 3, 2, 2)
            # A window before them has none.
            earlier = {
                "window": "range",
                "start": (t0 - timedelta(hours=2)).isoformat(),
                "end": (t0 - timedelta(hours=1)).isoformat(),
            }
            empty = (await client.get("/v1/kpis", params=earlier, headers=ADMIN)).json()
            assert _figures(empty["delivery"]) == (0, 0, 0, 0, 0)
            assert empty["delivery"]["delivered_rate"] is None
            bad = await client.get("/v1/kpis", params={"channel": "pigeon"}, headers=ADMIN)
            assert bad.status_code == 422

            # The rollups lost: a rebuild makes the delivery cells again from the delivery facts.
            before = (await client.get("/v1/kpis", headers=ADMIN)).json()["delivery"]
            db = Database.from_settings(settings)
            try:
                async with db.unit_of_work() as session:
                    await session.execute(
                        sa.text("DELETE FROM metrics.kpi_cells WHERE metric LIKE 'delivery%'")
                    )
            finally:
                await db.dispose()
            rebuilt = await client.post("/v1/kpis/rebuild", headers=ADMIN)
            assert rebuilt.status_code == 200, rebuilt.text
            assert rebuilt.json()["deliveries"] == 5
            assert (await client.get("/v1/kpis", headers=ADMIN)).json()["delivery"] == before
    finally:
        await publisher.stop()
