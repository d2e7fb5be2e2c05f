"""How a poll is cut so that running handlers in phase order never reorders one key's events."""

from __future__ import annotations

import uuid
from typing import Any

from switchboard_common.events import (
    Channel,
    ConversationOpened,
    ConversationResolved,
    EventEnvelope,
    Payload,
    utcnow,
)
from switchboard_common.kafka.consumer import Delivery, segments


class _Record:
    def __init__(self, key: bytes) -> None:
        self.key = key


def _item(key: bytes, payload: Payload) -> tuple[Any, Delivery[Any]]:
    envelope = EventEnvelope.wrap(payload, producer="test")
    return _Record(key), Delivery(envelope, payload, "t", 0, 0)


def _opened(cid: uuid.UUID) -> ConversationOpened:
    return ConversationOpened(
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        required_skills=[],
        priority=0,
        opened_at=utcnow(),
    )


def _resolved(cid: uuid.UUID) -> ConversationResolved:
    return ConversationResolved(conversation_id=cid, agent_id=None, resolved_at=utcnow())


PHASES: dict[type[Payload], int] = {ConversationOpened: 0, ConversationResolved: 1}


def test_a_poll_in_causal_order_stays_one_segment() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    items = [_item(b"a", _opened(a)), _item(b"b", _opened(b)), _item(b"a", _resolved(a))]
    assert [len(s) for s in segments(items, PHASES)] == [3]


def test_a_later_phase_before_an_earlier_one_of_the_same_key_cuts_the_poll() -> None:
    a = uuid.uuid4()
    items = [_item(b"a", _opened(a)), _item(b"a", _resolved(a)), _item(b"a", _opened(a))]
    assert [len(s) for s in segments(items, PHASES)] == [2, 1]


def test_other_keys_do_not_cut() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    items = [_item(b"a", _resolved(a)), _item(b"b", _opened(b))]
    assert [len(s) for s in segments(items, PHASES)] == [2]
