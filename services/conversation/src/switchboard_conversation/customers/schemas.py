from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from switchboard_common.events import IdentityKind
from switchboard_common.normalize import normalize_email, normalize_phone
from switchboard_common.validation import EMAIL, NonBlankText

EMAIL_PATTERN = re.compile(EMAIL)


class IdentityLink(BaseModel):
    """An address of the customer the automatic linking could not tie (an unverified phone, a new email)."""

    model_config = ConfigDict(extra="forbid")

    kind: IdentityKind
    value: Annotated[NonBlankText, StringConstraints(min_length=1, max_length=400)] = Field(
        description="As ingest stores it: a phone in international form (`+1 415 555 0100`, kept in "
        "E.164), an email (lower-cased, trimmed), or the channel's own id for the other kinds.",
        examples=["+1 415 555 0100"],
    )

    @model_validator(mode="after")
    def _normalized(self) -> IdentityLink:
        # The same rules as ingest's, so a linked address is the identity the customer's next message
        # carries; a malformed phone must not join strangers (ValueError: a 422 naming the field).
        if self.kind is IdentityKind.PHONE:
            self.value = normalize_phone(self.value)
        elif self.kind is IdentityKind.EMAIL:
            email = normalize_email(self.value)
            if not EMAIL_PATTERN.match(email):
                raise ValueError("value is not an email address")
            self.value = email
        return self


class IdentityLinked(BaseModel):
    customer_id: uuid.UUID
    kind: IdentityKind
    value: str = Field(description="Normalized.")


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_customer_id: uuid.UUID = Field(
        description="The customer merged away: it becomes a tombstone pointing at the target."
    )


class CustomerMergePublic(BaseModel):
    """The audit of a merge."""

    model_config = ConfigDict(from_attributes=True)

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
