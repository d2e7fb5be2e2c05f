from __future__ import annotations

import uuid

import pytest

from switchboard_common.events import (
    Channel,
    ConversationOpened,
    EventEnvelope,
    PoisonEvent,
    utcnow,
)


def _opened() -> ConversationOpened:
    return ConversationOpened(
        conversation_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        required_skills=["billing"],
        priority=1,
        opened_at=utcnow(),
    )


def test_envelope_round_trips_through_bytes() -> None:
    payload = _opened()
    envelope = EventEnvelope.wrap(payload, producer="test", correlation_id="c-1")
    decoded = EventEnvelope.from_bytes(envelope.to_bytes())
    assert decoded == envelope
    assert decoded.type == "conversation.opened" and decoded.schema_version == 1
    assert decoded.parse() == payload


def test_causation_links_events_and_carries_correlation() -> None:
    cause = EventEnvelope.wrap(_opened(), producer="a", correlation_id="corr-9", tenant_id="acme")
    effect = EventEnvelope.wrap(_opened(), producer="b", causation=cause)
    assert effect.causation_id == str(cause.event_id)
    assert effect.correlation_id == "corr-9"
    assert effect.tenant_id == "acme"


@pytest.mark.parametrize("raw", [None, b"", b"not json", b'{"type": "x"}'])
def test_undecodable_records_are_poison(raw: bytes | None) -> None:
    with pytest.raises(PoisonEvent):
        EventEnvelope.from_bytes(raw)


def test_unknown_type_is_poison() -> None:
    envelope = EventEnvelope(
        type="no.such.event", schema_version=1, producer="t", correlation_id="c", payload={}
    )
    with pytest.raises(PoisonEvent, match="unknown event type"):
        envelope.parse()


def test_invalid_payload_is_poison() -> None:
    envelope = EventEnvelope(
        type="conversation.opened", schema_version=1, producer="t", correlation_id="c", payload={"x": 1}
    )
    with pytest.raises(PoisonEvent, match="invalid conversation.opened"):
        envelope.parse()
