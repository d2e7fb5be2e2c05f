from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from switchboard_common.validation import StorableText


class SkillUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Annotated[StorableText, StringConstraints(max_length=500)] = Field(
        default="", description="What the skill means, for people choosing it."
    )


class SkillPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    description: str
    agents: int = Field(description="How many agents (not deleted) hold the skill.")
    created_at: datetime
