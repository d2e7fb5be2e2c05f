"""What counts as a survey answer, and which scores call for a follow-up."""

from __future__ import annotations

import pytest

from switchboard_conversation.surveys.policy import SCALES, SurveyKind, needs_follow_up, parse_answer


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("5", 5),
        (" 4 ", 4),
        ("4/5", 4),
        ("3 out of 5", 3),
        ("5 stars", 5),
        ("1 star", 1),
        ("(2)", 2),
        ("5!", 5),
    ],
)
def test_a_bare_score_is_an_answer(text: str, score: int) -> None:
    assert parse_answer(SurveyKind.CSAT, text) == score


@pytest.mark.parametrize(
    "text", ["", "great", "2 items are missing from my order", "5 or 4", "0", "6", "-1", "4.5", "five"]
)
def test_anything_else_is_a_message_not_an_answer(text: str) -> None:
    assert parse_answer(SurveyKind.CSAT, text) is None


def test_each_kind_has_its_own_scale() -> None:
    assert parse_answer(SurveyKind.NPS, "0") == 0
    assert parse_answer(SurveyKind.NPS, "10") == 10
    assert parse_answer(SurveyKind.NPS, "11") is None
    assert parse_answer(SurveyKind.CES, "7") == 7
    assert parse_answer(SurveyKind.CES, "8") is None
    for kind, scale in SCALES.items():
        assert str(scale.low) in scale.question and str(scale.high) in scale.question, kind


@pytest.mark.parametrize(
    ("kind", "low", "fine"),
    [(SurveyKind.CSAT, 2, 3), (SurveyKind.NPS, 6, 7), (SurveyKind.CES, 3, 4)],
)
def test_low_scores_are_followed_up(kind: SurveyKind, low: int, fine: int) -> None:
    assert needs_follow_up(kind, low)
    assert not needs_follow_up(kind, fine)
