"""Routing rules, pure: which queue, skills, priority and SLA target a newly opened conversation gets.

* A rule matches when every condition it gives holds (AND); a condition listing several values holds
  when any of them does (OR). An empty condition holds for everything.
* Rules are tried in ascending ``position`` (ties by id); disabled rules are skipped; the first match
  wins. No match: the caller's default outcome.

Evaluation runs for every newly opened conversation, so everything that can be prepared is prepared when
the conditions are built: the keyword alternation and the RE2 program are compiled once (and cached by
their text, so rebuilding rules from the same rows recompiles nothing), and a check is one set lookup or
one linear scan of the text. The user's regular expression runs on RE2, which matches in time linear in
the text: no pattern, however written, can make routing hang the way a backtracking engine can.

Nothing here touches the database or the clock; the language of the text is detected by the caller
(``rules.language``), and only when some rule asks for it (``needs_language``).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# google-re2 ships no type information; ``_Searcher`` below is the part of it this module uses.
import re2  # type: ignore[import-untyped]

PATTERN_MAX_LENGTH = 1000
# RE2 refuses a program that needs more memory than this when it is compiled, not while matching; the
# library's default (8 MiB per expression) is kept, and an expression over it is refused at the API.
_RE2_OPTIONS = re2.Options()
# A refused pattern is reported to the API caller; RE2's own stderr logging would only duplicate it.
_RE2_OPTIONS.log_errors = False


class _Searcher(Protocol):
    def search(self, text: str) -> object | None: ...


class InvalidPattern(ValueError):
    """The pattern is not a regular expression RE2 accepts."""


@dataclass(frozen=True, slots=True)
class RuleInputs:
    """What is known of a newly opened conversation when it is routed."""

    channel: str
    text: str
    # ISO 639-1, lower case; None when not detected (too short, not confident, or not asked for).
    language: str | None
    customer: Mapping[str, str]
    tags: frozenset[str]


@dataclass(frozen=True, slots=True)
class Conditions:
    channels: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    # Any of them, case-insensitive, as whole words (a phrase's words separated by any whitespace).
    keywords: frozenset[str] = frozenset()
    # An RE2 expression searched anywhere in the text; case-sensitive unless it says ``(?i)``.
    pattern: str | None = None
    # Every attribute must have exactly this value.
    customer: Mapping[str, str] = field(default_factory=dict)
    tags_any: frozenset[str] = frozenset()
    _keywords: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _pattern: _Searcher | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: the compiled forms are derived once, here, and never change after.
        object.__setattr__(self, "_keywords", _compile_keywords(self.keywords) if self.keywords else None)
        object.__setattr__(self, "_pattern", compile_pattern(self.pattern) if self.pattern else None)

    def holds(self, inputs: RuleInputs) -> bool:
        # The cheap set and mapping checks first: most rules are told apart by them, before any text scan.
        if self.channels and inputs.channel not in self.channels:
            return False
        if self.tags_any and self.tags_any.isdisjoint(inputs.tags):
            return False
        if any(inputs.customer.get(name) != value for name, value in self.customer.items()):
            return False
        if self.languages and inputs.language not in self.languages:
            return False
        if self._keywords is not None and self._keywords.search(inputs.text) is None:
            return False
        return self._pattern is None or self._pattern.search(inputs.text) is not None


@dataclass(frozen=True, slots=True)
class Outcome:
    queue: str
    # Skill -> the minimum proficiency (1-5) an agent needs in it.
    required_skills: Mapping[str, int] = field(default_factory=dict)
    # Preferred, not required: escalation drops them first.
    optional_skills: frozenset[str] = frozenset()
    priority: int = 0
    sla_target_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: uuid.UUID
    name: str
    position: int
    enabled: bool
    conditions: Conditions
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Decision:
    # None when no rule matched and the default outcome applies.
    rule_id: uuid.UUID | None
    rule_name: str | None
    outcome: Outcome
    language: str | None


DEFAULT_QUEUE = "default"


def default_outcome() -> Outcome:
    """The outcome when no rule matches: the default queue, no required skill, priority 0, no SLA."""
    return Outcome(queue=DEFAULT_QUEUE)


def evaluation_order(rule: Rule) -> tuple[int, uuid.UUID]:
    return (rule.position, rule.id)


def evaluate(rules: Sequence[Rule], inputs: RuleInputs, default: Outcome) -> Decision:
    """The first enabled rule, in ascending position (ties by id), whose conditions all hold; else the
    default outcome. Rules loaded already ordered (``repository.load_enabled``) sort in linear time."""
    for rule in sorted(rules, key=evaluation_order):
        if rule.enabled and rule.conditions.holds(inputs):
            return Decision(rule.id, rule.name, rule.outcome, inputs.language)
    return Decision(None, None, default, inputs.language)


def needs_language(rules: Sequence[Rule]) -> bool:
    """Whether any enabled rule has a language condition: detection costs a fraction of a millisecond
    per text, which callers spend only when it can change the decision."""
    return any(rule.enabled and rule.conditions.languages for rule in rules)


def compile_pattern(pattern: str) -> _Searcher:
    """The RE2 program of ``pattern``; ``InvalidPattern`` saying why RE2 refuses it."""
    if len(pattern) > PATTERN_MAX_LENGTH:
        raise InvalidPattern(f"the pattern is longer than {PATTERN_MAX_LENGTH} characters")
    return _compile_re2(pattern)


@functools.lru_cache(maxsize=1024)
def _compile_re2(pattern: str) -> _Searcher:
    try:
        compiled: _Searcher = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidPattern(
            f"not a valid RE2 regular expression: {reason} "
            "(RE2 has no backreferences or lookaround; see https://github.com/google/re2/wiki/Syntax)"
        ) from None
    return compiled


def validate_pattern(pattern: str) -> str:
    """A pydantic ``AfterValidator``: the pattern unchanged when RE2 accepts it, else ``ValueError``."""
    compile_pattern(pattern)
    return pattern


@functools.lru_cache(maxsize=1024)
def _compile_keywords(keywords: frozenset[str]) -> re.Pattern[str]:
    # Python's engine here, not RE2: its ``\w`` is Unicode, so "café" is a whole word before a space,
    # where RE2's ASCII ``\b`` would not see a boundary. Every alternative is an escaped literal, so there
    # is nothing to backtrack into: the scan stays linear in the text.
    alternatives = sorted(
        (r"\s+".join(re.escape(word) for word in keyword.split()) for keyword in keywords if keyword.split()),
        key=lambda alternative: (-len(alternative), alternative),
    )
    if not alternatives:
        # Only blank keywords: nothing can match them (the API refuses them; this keeps the type total).
        return re.compile(r"(?!)")
    return re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)", re.IGNORECASE)
