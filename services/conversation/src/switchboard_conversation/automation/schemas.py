from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from switchboard_common.validation import NonBlankText
from switchboard_conversation import examples as ex
from switchboard_conversation.automation import templates

Shortcut = Annotated[str, StringConstraints(pattern=r"^/[a-z0-9][a-z0-9_-]{0,63}$")]
Title = Annotated[NonBlankText, StringConstraints(min_length=1, max_length=200)]
TemplateText = Annotated[
    NonBlankText, StringConstraints(min_length=1, max_length=4096), AfterValidator(templates.check)
]


class CannedResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=ex.examples(ex.CANNED_IN))

    shortcut: Shortcut = Field(description="What an agent types to find it, e.g. `/refund`; unique.")
    title: Title
    body: TemplateText = Field(
        description="A jinja2 template rendered in a sandbox, e.g. `Hi {{ customer.first_name }}`. "
        "Variables: `customer.first_name`, `customer.display_name`, `customer.email`, `customer.phone`, "
        "`conversation.id`, `conversation.channel` (also `channel`), `agent.id`. An unknown variable, a "
        "template that does not compile or one that reaches outside the sandbox is refused (422); a known "
        "variable without a value renders empty."
    )


class CannedResponsePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra=ex.examples(ex.CANNED))

    id: uuid.UUID
    shortcut: str
    title: str
    body: str
    created_at: datetime
    updated_at: datetime


class RenderedCannedResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra=ex.examples(ex.RENDERED))

    canned_response_id: uuid.UUID
    conversation_id: uuid.UUID
    text: str = Field(description="The body filled for the conversation: send it with `/replies`.")
