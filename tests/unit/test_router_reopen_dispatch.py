"""The router handles a conversation's events in causal order: opened, resolved, reopened. A poll where one
conversation is resolved and reopened twice is cut so that each reopen follows its resolution."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    Channel,
    ConversationOpened,
    ConversationReopened,
    ConversationResolved,
    ConversationTransferRequested,
    CustomerMerged,
    EventEnvelope,
    MessageOutbound,
    Payload,
    utcnow,
)
from switchboard_common.kafka.consumer import Delivery, segments
from switchboard_router.consumer import handlers
from switchboard_router.models import outbox_table
from switchboard_router.routing.service import RoutingConfig
from switchboard_router.settings import RouterSettings

T0 = utcnow()
CID = uuid.uuid4()


class _Record:
    key = str(CID).encode()


def _item(payload: Payload) -> tuple[Any, Delivery[Any]]:
    return _Record(), Delivery(EventEnvelope.wrap(payload, producer="test"), payload, "t", 0, 0)


def _resolved(minutes: int) -> ConversationResolved:
    return ConversationResolved(
        conversation_id=CID, agent_id=None, resolved_at=T0 + timedelta(minutes=minutes)
    )


def _reopened(minutes: int) -> ConversationReopened:
    return ConversationReopened(
        conversation_id=CID,
        customer_id=uuid.uuid4(),
        channel=Channel.SMS,
        required_skills=[],
        priority=0,
        reopened_at=T0 + timedelta(minutes=minutes),
        previous_agent_id=None,
    )


def test_the_router_handles_opened_then_resolved_then_reopened() -> None:
    outbox = Outbox(outbox_table, RouterSettings(environment="development"))
    mapping = handlers(outbox, RoutingConfig())
    assert list(mapping) == [
        ConversationOpened,
        ConversationResolved,
        ConversationReopened,
        ConversationTransferRequested,
        CustomerMerged,
    ]
    # Replies are read (after the rest) only when unanswered assignments are requeued.
    answering = handlers(outbox, RoutingConfig(no_answer_timeout=timedelta(minutes=5)))
    assert list(answering) == [
        ConversationOpened,
        ConversationResolved,
        ConversationReopened,
        ConversationTransferRequested,
        CustomerMerged,
        MessageOutbound,
    ]


def test_a_second_resolution_after_a_reopen_cuts_the_poll() -> None:
    phases: dict[type[Payload], int] = {
        ConversationOpened: 0,
        ConversationResolved: 1,
        ConversationReopened: 2,
    }
    opened = ConversationOpened(
        conversation_id=CID,
        customer_id=uuid.uuid4(),
        channel=Channel.SMS,
        required_skills=[],
        priority=0,
        opened_at=T0,
    )
    poll = [_item(opened), _item(_resolved(1)), _item(_reopened(2)), _item(_resolved(3)), _item(_reopened(4))]
    assert [[type(d.payload) for _, d in s] for s in segments(poll, phases)] == [
        [ConversationOpened, ConversationResolved, ConversationReopened],
        [ConversationResolved, ConversationReopened],
    ]
