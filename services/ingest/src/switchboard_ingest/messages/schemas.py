from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from switchboard_common.normalize import PhoneNumber
from switchboard_common.validation import EMAIL, NonBlankText, StorableDatetime, StorableText, json_integer

Skill = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
AttributeName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[NonBlankText, StringConstraints(min_length=1, max_length=200)] = Field(
        description="Your own reference for the customer; the sender identity on the API channel."
    )
    name: Annotated[StorableText, StringConstraints(max_length=200)] | None = None
    email: Annotated[str, StringConstraints(pattern=EMAIL)] | None = Field(
        default=None, description="Links this customer to the email channel."
    )
    phone: PhoneNumber | None = Field(
        default=None,
        description="In international form (`+14155550100`, `+44 20 7946 0958`, `0044...`), a number "
        "`phonenumbers` deems possible: kept in E.164, it links this customer to SMS and WhatsApp.",
        examples=["+1 415 555 0100"],
    )
    attributes: dict[AttributeName, Annotated[StorableText, StringConstraints(max_length=200)]] = Field(
        default_factory=dict,
        max_length=20,
        description='Facts about the customer for routing rules (`{"plan": "enterprise", "vip": '
        '"true"}`): names are lower case, values text.',
        # The keys are described by `patternProperties`; without this the document would also allow keys
        # matching no pattern, which are refused.
        json_schema_extra={"additionalProperties": False},
    )


class MessageCreate(BaseModel):
    """A customer's message sent through the generic API channel."""

    model_config = ConfigDict(extra="forbid")

    message_id: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")] = (
        Field(description="Your id for this message: sending it again is a no-op (idempotency key).")
    )
    customer: CustomerIn
    text: Annotated[StorableText, StringConstraints(min_length=1, max_length=4096)]
    sent_at: StorableDatetime | None = None
    skills: list[Skill] = Field(default_factory=list, max_length=10, description="Skills the agent needs.")
    priority: Annotated[int, Field(ge=0, le=10), BeforeValidator(json_integer)] = 0


class AcceptStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


class MessageAccepted(BaseModel):
    message_id: uuid.UUID = Field(description="Switchboard's id of the message.")
    status: AcceptStatus
    received_at: datetime
