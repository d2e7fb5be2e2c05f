from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)

from switchboard_common.events import Channel
from switchboard_common.validation import NonBlankText, StorableText, json_integer
from switchboard_router.rules import language
from switchboard_router.rules.evaluate import PATTERN_MAX_LENGTH, validate_pattern

# Identifiers: skills (as agents have them), queues, tags and customer attribute names.
IDENTIFIER = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
Skill = Annotated[str, StringConstraints(pattern=IDENTIFIER)]
QueueName = Annotated[str, StringConstraints(pattern=IDENTIFIER)]
Tag = Annotated[str, StringConstraints(pattern=IDENTIFIER)]
AttributeName = Annotated[str, StringConstraints(pattern=IDENTIFIER)]
AttributeValue = Annotated[NonBlankText, StringConstraints(min_length=1, max_length=200)]
Name = Annotated[NonBlankText, StringConstraints(min_length=1, max_length=200)]
Keyword = Annotated[NonBlankText, StringConstraints(min_length=1, max_length=100)]


def _detectable(code: str) -> str:
    if not language.known(code):
        raise ValueError(f"{code!r} is not an ISO 639-1 language code the detector knows")
    return code


LanguageCode = Annotated[
    str,
    AfterValidator(_detectable),
    Field(
        description="ISO 639-1, lower case (`en`, `es`, ...).",
        json_schema_extra={"enum": list(language.KNOWN)},
    ),
]
# A JSON object's keys are described by `patternProperties`; without this, the document would also allow
# keys matching no pattern, which are refused.
ONLY_PATTERN_KEYS: dict[str, Any] = {"additionalProperties": False}
Pattern = Annotated[
    StorableText,
    StringConstraints(min_length=1, max_length=PATTERN_MAX_LENGTH),
    AfterValidator(validate_pattern),
    Field(
        description="An RE2 regular expression (https://github.com/google/re2/wiki/Syntax), searched "
        "anywhere in the text; case-sensitive unless it starts with `(?i)`. RE2 matches in linear time "
        "and has no backreferences or lookaround; an expression it refuses answers 422.",
        # What RE2 accepts is no pattern's to describe: the custom format names it (as ingest's "phone").
        json_schema_extra={"format": "re2"},
    ),
]
# A JSON boolean only: lax parsing would read "yes" or 1 as true.
Flag = Annotated[bool, Strict()]
# The bounds come first, so they are the integer's own and appear in the document.
Proficiency = Annotated[int, Field(ge=1, le=5), BeforeValidator(json_integer)]
Priority = Annotated[
    int, Field(ge=0, le=10, description="Higher is served first."), BeforeValidator(json_integer)
]
Position = Annotated[
    int,
    Field(ge=0, le=1_000_000, description="Rules are tried in ascending position (ties by id)."),
    BeforeValidator(json_integer),
]
SlaTarget = Annotated[
    int,
    Field(ge=1, le=604_800, description="The SLA target, in seconds."),
    BeforeValidator(json_integer),
]


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


class RuleConditions(BaseModel):
    """Every condition given must hold (AND); a list holds when any of its values does (OR); an empty
    list or object holds for everything."""

    model_config = ConfigDict(extra="forbid")

    channels: Annotated[list[Channel], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=len(Channel)
    )
    languages: Annotated[list[LanguageCode], AfterValidator(_unique)] = Field(
        default_factory=list,
        max_length=50,
        description="The detected language of the text is one of these. Only the languages the router "
        "is configured to detect can ever match.",
    )
    keywords: Annotated[list[Keyword], AfterValidator(_unique)] = Field(
        default_factory=list,
        max_length=100,
        description="The text contains one of these as whole words, ignoring case (a phrase's words may "
        "be separated by any whitespace).",
    )
    pattern: Pattern | None = None
    customer: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict,
        max_length=20,
        json_schema_extra=ONLY_PATTERN_KEYS,
        description="The customer has every one of these attributes with exactly this value "
        '(`{"vip": "true", "plan": "enterprise"}`).',
    )
    tags_any: Annotated[list[Tag], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=50, description="The conversation has one of these tags."
    )


class RuleOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: QueueName
    required_skills: dict[Skill, Proficiency] = Field(
        default_factory=dict,
        max_length=20,
        json_schema_extra=ONLY_PATTERN_KEYS,
        description="Skill -> the minimum proficiency (1-5) an agent needs in it.",
    )
    optional_skills: Annotated[list[Skill], AfterValidator(_unique)] = Field(
        default_factory=list,
        max_length=20,
        description="Preferred, not required: escalation while waiting drops them first. A skill also "
        "in `required_skills` is required, and left out here.",
    )
    priority: Priority = 0
    sla_target_seconds: SlaTarget | None = None

    @model_validator(mode="after")
    def _required_wins(self) -> RuleOutcome:
        # A skill both required and optional is required: listing it as optional too would only be a
        # preference it already meets. (Dropped rather than refused, as no schema can express the refusal.)
        self.optional_skills = [s for s in self.optional_skills if s not in self.required_skills]
        return self


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    position: Position | None = Field(
        default=None, description="Omitted: after every existing rule (the largest position + 1)."
    )
    enabled: Flag = True
    conditions: RuleConditions = Field(default_factory=RuleConditions)
    outcome: RuleOutcome


class RuleUpdate(BaseModel):
    """Only the fields given change; `conditions` and `outcome` are replaced whole."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    position: Position | None = None
    enabled: Flag | None = None
    conditions: RuleConditions | None = None
    outcome: RuleOutcome | None = None


class RulePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    position: int
    enabled: bool
    conditions: RuleConditions
    outcome: RuleOutcome
    created_at: datetime
    updated_at: datetime


class DryRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel
    # As long as a message the API channel accepts.
    text: Annotated[StorableText, StringConstraints(max_length=4096)]
    customer: dict[AttributeName, Annotated[StorableText, StringConstraints(max_length=200)]] = Field(
        default_factory=dict, max_length=20, json_schema_extra=ONLY_PATTERN_KEYS
    )
    tags: list[Tag] = Field(default_factory=list, max_length=50)


class DryRunResult(BaseModel):
    rule_id: uuid.UUID | None = Field(
        description="The rule that matched; null: none did, the default applies."
    )
    rule_name: str | None
    outcome: RuleOutcome
    language: str | None = Field(
        description="The detected language (ISO 639-1), null when the text is too short or ambiguous. "
        "Routing detects it only when an enabled rule has a language condition."
    )
