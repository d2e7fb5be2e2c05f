"""Templates of canned responses and auto-replies, rendered in jinja2's sandbox: variables filled,
missing values empty, unknown variables and escapes from the sandbox refused when saved; and the
acknowledgement's text for a wait or for a closed team."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from switchboard_common.events import ConversationQueued
from switchboard_conversation.automation.autoreply import AckTemplates, ack_id, compose
from switchboard_conversation.automation.schemas import CannedResponseIn
from switchboard_conversation.automation.templates import TemplateRefused, check, render
from switchboard_conversation.settings import (
    DEFAULT_ACK_TEMPLATE,
    DEFAULT_CLOSED_TEMPLATE,
    ConversationSettings,
)

TEXTS = AckTemplates(DEFAULT_ACK_TEMPLATE, DEFAULT_CLOSED_TEMPLATE)


def test_variables_are_filled_and_output_is_not_escaped() -> None:
    text = render(
        "Hi {{ customer.first_name }} <{{ customer.email }}> on {{ channel }} & co",
        {"customer": {"first_name": "Zoë", "email": "zoe@example.com"}, "channel": "sms"},
    )
    assert text == "Hi Zoë <zoe@example.com> on sms & co"


def test_a_known_variable_without_value_renders_empty() -> None:
    text = render("Hi {{ customer.first_name }}!{{ customer.phone }}", {"customer": {"first_name": None}})
    assert text == "Hi !"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ customer.first_name.__class__ }}",
        "{{ range(10**9) | list }}",
    ],
)
def test_reaching_outside_the_sandbox_is_refused(source: str) -> None:
    with pytest.raises(TemplateRefused):
        check(source)


def test_a_template_that_does_not_compile_or_names_an_unknown_variable_is_refused() -> None:
    for source in ("{% if %}", "{{ customer.frist_name }}", "{{ secret }}"):
        with pytest.raises(TemplateRefused):
            check(source)
    assert (
        check("Hi {{ customer.first_name | default('there') }}")
        == "Hi {{ customer.first_name | default('there') }}"
    )


def test_a_canned_response_with_a_bad_template_fails_validation() -> None:
    with pytest.raises(ValidationError):
        CannedResponseIn(shortcut="/x", title="x", body="{{ ''.__class__ }}")
    with pytest.raises(ValidationError):
        CannedResponseIn(shortcut="refund", title="x", body="ok")  # a shortcut starts with a slash
    assert CannedResponseIn(shortcut="/refund", title="Refund", body="Hi {{ customer.first_name }}").body


def test_settings_refuse_a_broken_auto_reply_template() -> None:
    with pytest.raises(ValidationError):
        ConversationSettings(environment="test", conversation_auto_ack_template="{{ x.__class__ }}")


def _queued(**extra: object) -> ConversationQueued:
    return ConversationQueued(
        conversation_id=uuid.UUID(int=1),
        required_skills=[],
        priority=0,
        queued_at=datetime(2026, 12, 11, 17, 30, tzinfo=UTC),
        **extra,
    )


def test_the_acknowledgement_states_the_estimated_wait_in_minutes() -> None:
    assert compose(_queued(estimated_wait_s=250), "Ada Lovelace", "sms", TEXTS) == (
        "Thanks for your message, Ada! An agent will answer you in about 5 minutes."
    )
    assert compose(_queued(estimated_wait_s=0), None, "sms", TEXTS) == (
        "Thanks for your message! An agent will answer you in about 1 minute."
    )
    assert "as soon as one is free" in compose(_queued(estimated_wait_s=None), "Ada", "sms", TEXTS)


def test_a_closed_team_acknowledgement_says_when_it_answers_in_its_time_zone() -> None:
    event = _queued(
        estimated_wait_s=60, opens_at=datetime(2026, 12, 14, 8, 0, tzinfo=UTC), timezone="Europe/Paris"
    )
    assert compose(event, "Ada", "email", TEXTS) == (
        "Thanks for your message, Ada! We're closed right now; we answer from Monday 14 December, 09:00 CET."
    )


def test_the_acknowledgement_id_is_one_per_opening() -> None:
    assert ack_id(_queued()) == ack_id(_queued(estimated_wait_s=5))
    later = _queued().model_copy(update={"queued_at": datetime(2026, 12, 12, tzinfo=UTC)})
    assert ack_id(later) != ack_id(_queued())
