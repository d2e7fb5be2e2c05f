"""Satisfaction surveys, as pure rules: the question each kind asks, what counts as an answer, and which
scores call for a follow-up. The formulas that turn answers into KPIs live in metrics."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class SurveyKind(StrEnum):
    CSAT = "csat"  # customer satisfaction, 1-5
    NPS = "nps"  # net promoter score, 0-10
    CES = "ces"  # customer effort score, 1-7 (7: very easy)


@dataclass(frozen=True, slots=True)
class SurveyConfig:
    kind: SurveyKind
    window: timedelta  # how long an answer is taken


@dataclass(frozen=True, slots=True)
class Scale:
    low: int
    high: int
    # A score at or below this one flags the conversation for a follow-up.
    follow_up_at_or_below: int
    question: str


SCALES: dict[SurveyKind, Scale] = {
    SurveyKind.CSAT: Scale(
        1,
        5,
        2,
        "How satisfied are you with the help you got? Reply with a number from 1 (very unsatisfied) "
        "to 5 (very satisfied).",
    ),
    SurveyKind.NPS: Scale(
        0,
        10,
        6,  # detractors
        "How likely are you to recommend us to a friend or colleague? Reply with a number from 0 "
        "(not at all likely) to 10 (extremely likely).",
    ),
    SurveyKind.CES: Scale(
        1,
        7,
        3,
        "How easy was it to get your question resolved? Reply with a number from 1 (very difficult) "
        "to 7 (very easy).",
    ),
}

# The whole message is the score: "4", "4/5", "4 out of 5", "4 stars", "10!", "(9)". Anything more ("2 items
# are missing") is a message, not an answer: it goes to the thread as usual.
_ANSWER = re.compile(
    r"^\s*[(\[]?\s*(\d{1,2})\s*[)\]]?\s*(?:(?:/|out of|of)\s*\d{1,2})?\s*(?:stars?|points?)?\s*[.!]*\s*$",
    re.IGNORECASE,
)


def parse_answer(kind: SurveyKind, text: str) -> int | None:
    """The score a customer's message gives, or None when it is not an answer on this kind's scale."""
    match = _ANSWER.match(text)
    if match is None:
        return None
    score = int(match.group(1))
    scale = SCALES[kind]
    return score if scale.low <= score <= scale.high else None


def needs_follow_up(kind: SurveyKind, score: int) -> bool:
    return score <= SCALES[kind].follow_up_at_or_below
