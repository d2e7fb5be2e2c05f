"""Routing rules, pure: each condition kind, AND across conditions and OR within one, evaluation order,
disabled rules, the default outcome, RE2's linear-time matching, and when the language is needed."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard_router.rules.evaluate import (
    Conditions,
    Decision,
    InvalidPattern,
    Outcome,
    Rule,
    RuleInputs,
    compile_pattern,
    default_outcome,
    evaluate,
    needs_language,
    validate_pattern,
)

DEFAULT = default_outcome()


def rule(
    name: str,
    conditions: Conditions | None = None,
    position: int = 0,
    enabled: bool = True,
    queue: str | None = None,
) -> Rule:
    return Rule(
        id=uuid.uuid5(uuid.NAMESPACE_DNS, name),
        name=name,
        position=position,
        enabled=enabled,
        conditions=conditions or Conditions(),
        outcome=Outcome(queue=queue or name),
    )


def inputs(
    text: str = "hello there",
    channel: str = "api",
    language: str | None = None,
    customer: Mapping[str, str] | None = None,
    tags: set[str] | None = None,
) -> RuleInputs:
    return RuleInputs(channel, text, language, customer or {}, frozenset(tags or ()))


def matches(conditions: Conditions, given: RuleInputs) -> bool:
    return evaluate([rule("r", conditions)], given, DEFAULT).rule_name == "r"


def test_no_rule_gives_the_default_outcome_without_a_rule() -> None:
    decision = evaluate([], inputs(language="en"), DEFAULT)
    assert decision == Decision(None, None, DEFAULT, "en")
    assert (DEFAULT.queue, dict(DEFAULT.required_skills), DEFAULT.priority, DEFAULT.sla_target_seconds) == (
        "default",
        {},
        0,
        None,
    )


def test_a_rule_without_conditions_matches_everything_and_gives_its_outcome() -> None:
    outcome = Outcome("vip", {"billing": 3}, frozenset({"spanish"}), priority=7, sla_target_seconds=60)
    catch_all = Rule(uuid.uuid4(), "all", 0, True, Conditions(), outcome)
    decision = evaluate([catch_all], inputs(), DEFAULT)
    assert (decision.rule_id, decision.rule_name, decision.outcome) == (catch_all.id, "all", outcome)


def test_channel_condition_is_any_of_the_listed_channels() -> None:
    conditions = Conditions(channels=frozenset({"email", "sms"}))
    assert matches(conditions, inputs(channel="sms"))
    assert matches(conditions, inputs(channel="email"))
    assert not matches(conditions, inputs(channel="webchat"))


def test_language_condition_needs_a_detected_language_among_the_listed() -> None:
    conditions = Conditions(languages=frozenset({"es", "pt"}))
    assert matches(conditions, inputs(language="es"))
    assert not matches(conditions, inputs(language="en"))
    # Undetected (too short, ambiguous): a language condition cannot hold.
    assert not matches(conditions, inputs(language=None))


def test_keywords_match_whole_words_ignoring_case() -> None:
    conditions = Conditions(keywords=frozenset({"refund", "chargeback"}))
    assert matches(conditions, inputs("I want a REFUND now"))
    assert matches(conditions, inputs("Refund."))
    assert matches(conditions, inputs("this is a chargeback!"))
    assert not matches(conditions, inputs("refunds are slow"))
    assert not matches(conditions, inputs("nonrefundable ticket"))
    assert not matches(conditions, inputs("an autorefund, please"))
    assert not matches(conditions, inputs("re fund"))


def test_keywords_are_unicode_words_and_literal_text() -> None:
    # Non-ASCII letters are word characters: "café" ends at the space, "cafés" is another word.
    cafe = Conditions(keywords=frozenset({"café"}))
    assert matches(cafe, inputs("un CAFÉ au lait"))
    assert not matches(cafe, inputs("deux cafés"))
    # Regular-expression characters in a keyword are literal.
    assert matches(Conditions(keywords=frozenset({"c++"})), inputs("help with C++ please"))
    assert not matches(Conditions(keywords=frozenset({"a.c"})), inputs("abc"))


def test_a_keyword_phrase_matches_across_any_whitespace() -> None:
    conditions = Conditions(keywords=frozenset({"credit card"}))
    assert matches(conditions, inputs("my Credit \n  Card was charged"))
    assert not matches(conditions, inputs("my credit-card was charged"))
    assert not matches(conditions, inputs("credit cards"))


def test_pattern_is_searched_anywhere_case_sensitive_unless_asked() -> None:
    assert matches(Conditions(pattern=r"order\s*#?\d{4,}"), inputs("where is order #12345?"))
    assert not matches(Conditions(pattern=r"order\s*#?\d{4,}"), inputs("where is ORDER #12345?"))
    assert matches(Conditions(pattern=r"(?i)order\s*#?\d{4,}"), inputs("where is ORDER #12345?"))
    assert not matches(Conditions(pattern=r"^order"), inputs("my order"))


def test_customer_attributes_must_all_have_the_exact_value() -> None:
    conditions = Conditions(customer={"vip": "true", "plan": "enterprise"})
    assert matches(conditions, inputs(customer={"vip": "true", "plan": "enterprise", "region": "eu"}))
    assert not matches(conditions, inputs(customer={"vip": "true", "plan": "pro"}))
    assert not matches(conditions, inputs(customer={"vip": "true"}))
    assert not matches(conditions, inputs(customer={"vip": "True", "plan": "enterprise"}))


def test_tags_any_needs_one_shared_tag() -> None:
    conditions = Conditions(tags_any=frozenset({"outage", "security"}))
    assert matches(conditions, inputs(tags={"security", "billing"}))
    assert not matches(conditions, inputs(tags={"billing"}))
    assert not matches(conditions, inputs(tags=set()))


def test_every_given_condition_must_hold() -> None:
    conditions = Conditions(
        channels=frozenset({"email"}),
        languages=frozenset({"de"}),
        keywords=frozenset({"rechnung"}),
        pattern=r"\d+",
        customer={"plan": "pro"},
        tags_any=frozenset({"billing"}),
    )
    everything = {
        "text": "Rechnung 42 ist falsch",
        "channel": "email",
        "language": "de",
        "customer": {"plan": "pro"},
        "tags": {"billing"},
    }
    assert matches(conditions, inputs(**everything))  # type: ignore[arg-type]
    # Each condition alone can make it fail.
    for key, wrong in {
        "text": "Rechnung ist falsch",  # no digits for the pattern
        "channel": "sms",
        "language": "en",
        "customer": {"plan": "free"},
        "tags": {"sales"},
    }.items():
        assert not matches(conditions, inputs(**{**everything, key: wrong})), key  # type: ignore[arg-type]
    assert not matches(conditions, inputs(**{**everything, "text": "Invoice 42 is wrong"}))  # type: ignore[arg-type]


def test_rules_are_tried_by_position_then_id_and_the_first_match_wins() -> None:
    late = rule("late", position=20)
    early = rule("early", Conditions(channels=frozenset({"sms"})), position=10)
    middle = rule("middle", position=15)
    assert evaluate([late, middle, early], inputs(channel="sms"), DEFAULT).rule_name == "early"
    assert evaluate([late, middle, early], inputs(channel="email"), DEFAULT).rule_name == "middle"
    a, b = rule("a", position=5), rule("b", position=5)
    first = min(a, b, key=lambda r: r.id)
    assert evaluate([a, b], inputs(), DEFAULT).rule_id == first.id
    assert evaluate([b, a], inputs(), DEFAULT).rule_id == first.id


def test_disabled_rules_are_skipped() -> None:
    off = rule("off", position=0, enabled=False)
    on = rule("on", Conditions(keywords=frozenset({"hello"})), position=1)
    assert evaluate([off, on], inputs("hello"), DEFAULT).rule_name == "on"
    assert evaluate([off, on], inputs("bye"), DEFAULT).rule_id is None


@given(st.permutations(range(6)), st.sampled_from(["api", "sms", "email"]))
def test_the_decision_does_not_depend_on_the_order_rules_are_given_in(order: list[int], channel: str) -> None:
    rules = [
        rule(f"r{i}", Conditions(channels=frozenset({["api", "sms", "email"][i % 3]})), position=i // 2)
        for i in range(6)
    ]
    shuffled = [rules[i] for i in order]
    assert evaluate(shuffled, inputs(channel=channel), DEFAULT) == evaluate(
        rules, inputs(channel=channel), DEFAULT
    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        # Each would take a backtracking engine (Python's re) longer than the age of the universe.
        (r"(a+)+$", "a" * 5000 + "!", False),
        (r"(a|aa)+b", "a" * 5000, False),
        (r"(x+x+)+y", "x" * 5000, False),
        (r"(a+)+$", "a" * 5000, True),
    ],
)
def test_a_catastrophic_pattern_is_answered_correctly_by_re2(pattern: str, text: str, expected: bool) -> None:
    assert matches(Conditions(pattern=pattern), inputs(text)) is expected


def test_patterns_re2_refuses_are_reported_clearly() -> None:
    with pytest.raises(InvalidPattern, match="backreferences"):
        validate_pattern(r"(a+)\1")
    with pytest.raises(InvalidPattern, match="missing \\)"):
        compile_pattern("(unclosed")
    with pytest.raises(InvalidPattern, match="lookaround"):
        Conditions(pattern=r"(?<=a)b")
    with pytest.raises(InvalidPattern, match="longer than"):
        validate_pattern("a" * 1001)
    assert validate_pattern(r"(?i)\border\b") == r"(?i)\border\b"


def test_language_is_needed_only_by_an_enabled_rule_with_a_language_condition() -> None:
    spanish = Conditions(languages=frozenset({"es"}))
    assert not needs_language([])
    assert not needs_language([rule("kw", Conditions(keywords=frozenset({"hola"})))])
    assert not needs_language([rule("off", spanish, enabled=False)])
    assert needs_language([rule("kw", Conditions(channels=frozenset({"sms"}))), rule("es", spanish)])


def test_rules_built_again_from_the_same_text_reuse_the_compiled_forms() -> None:
    one = Conditions(keywords=frozenset({"refund"}), pattern=r"order \d+")
    again = Conditions(keywords=frozenset({"refund"}), pattern=r"order \d+")
    assert one == again
    assert one._keywords is again._keywords
    assert one._pattern is again._pattern
    assert matches(again, inputs("order 1234, refund please"))
