from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from switchboard_common.events import IdentityKind
from switchboard_common.normalize import PhoneNumber, normalize_email
from switchboard_common.validation import EMAIL, NonBlankText
from switchboard_conversation import examples as ex


class _Link(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhoneLink(_Link):
    kind: Literal[IdentityKind.PHONE]
    value: PhoneNumber = Field(
        description="In international form (`+1 415 555 0100`, `0044...`), a number `phonenumbers` deems "
        "possible: kept in E.164, as ingest keeps the numbers customers write from.",
        examples=["+1 415 555 0100"],
    )


class EmailLink(_Link):
    kind: Literal[IdentityKind.EMAIL]
    value: Annotated[str, StringConstraints(pattern=EMAIL), AfterValidator(normalize_email)] = Field(
        description="Kept lower-cased, as ingest keeps the addresses customers write from."
    )


class ChannelIdLink(_Link):
    kind: Literal[IdentityKind.API, IdentityKind.MESSENGER, IdentityKind.INSTAGRAM, IdentityKind.WEBCHAT]
    value: Annotated[NonBlankText, StringConstraints(min_length=1, max_length=200)] = Field(
        description="The channel's own id of the customer, as its messages carry it."
    )


# An address of the customer the automatic linking could not tie (an unverified phone, a new email): the
# rules of each kind are ingest's, so the linked identity is the one the customer's next message carries.
IdentityLink = Annotated[PhoneLink | EmailLink | ChannelIdLink, Field(discriminator="kind")]


class IdentityLinked(BaseModel):
    model_config = ConfigDict(json_schema_extra=ex.examples(ex.IDENTITY_LINKED))

    customer_id: uuid.UUID
    kind: IdentityKind
    value: str = Field(description="Normalized.")


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=ex.examples(ex.MERGE_IN))

    source_customer_id: uuid.UUID = Field(
        description="The customer merged away: it becomes a tombstone pointing at the target."
    )


class CustomerMergePublic(BaseModel):
    """The audit of a merge."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra=ex.examples(ex.MERGE))

    id: uuid.UUID
    source_customer_id: uuid.UUID
    target_customer_id: uuid.UUID
    merged_by_agent_id: uuid.UUID | None = Field(description="None when the admin credential merged.")
    merged_at: datetime
    identities: list[dict[str, str]] = Field(description="The identities moved: `{kind, value}`.")
    conversation_ids: list[uuid.UUID] = Field(description="The source's conversations, now the target's.")
    closed_conversation_id: uuid.UUID | None = Field(
        description="The source's unresolved conversation, closed into `kept_conversation_id` (which took "
        "its messages) because the target had one too."
    )
    kept_conversation_id: uuid.UUID | None
