"""Language detection for routing rules: clear sentences in each configured language, nothing for text
too short or too ambiguous to tell, only the configured languages answered, one detector per set."""

from __future__ import annotations

import pytest

from switchboard_router.rules import language

SENTENCES = {
    "en": "My package never arrived, where is it?",
    "es": "Hola, mi factura está mal y necesito ayuda",
    "fr": "Bonjour, ma facture est fausse, pouvez-vous m'aider ?",
    "de": "Ich möchte mein Passwort zurücksetzen, bitte",
    "pt": "Olá, minha fatura está errada, obrigado",
    "it": "Ciao, la mia fattura è sbagliata, grazie mille",
    "nl": "Hallo, mijn factuur klopt niet, kunt u helpen?",
}


@pytest.mark.parametrize(("code", "text"), SENTENCES.items())
def test_a_clear_sentence_is_detected_as_its_language(code: str, text: str) -> None:
    assert language.detect(text, language.DEFAULT_LANGUAGES) == code


@pytest.mark.parametrize("text", ["", "ok", "hi!", "12345", "#42 :-)", "   "])
def test_text_with_fewer_than_three_letters_is_not_detected(text: str) -> None:
    assert language.detect(text) is None


def test_an_ambiguous_word_is_not_guessed() -> None:
    # "taxi" is spelled the same in most of the configured languages.
    assert language.detect("taxi") is None


def test_only_the_configured_languages_are_answered() -> None:
    # Spanish is not configured: the Spanish sentence gets one of the configured languages or nothing.
    assert language.detect(SENTENCES["es"], "en,de") in {"en", "de", None}
    assert language.detect(SENTENCES["de"], "en, DE") == "de"


def test_one_detector_is_built_per_language_set() -> None:
    # Low accuracy: the same caching, without the memory of full models for two more sets.
    en_fr = language.detector("en,fr", low_accuracy=True)
    assert en_fr is language.detector(["fr", "EN "], low_accuracy=True)
    assert en_fr is not language.detector("en,de", low_accuracy=True)


def test_unknown_language_codes_are_refused() -> None:
    with pytest.raises(ValueError, match="xx"):
        language.parse_languages("en,xx")
    with pytest.raises(ValueError, match="no language"):
        language.parse_languages(" , ")
    assert language.known("pt")
    assert not language.known("PT")
    assert not language.known("zz")


def test_the_low_accuracy_detector_is_another_one_and_still_detects_clear_sentences() -> None:
    low = language.detector("en,es,de", low_accuracy=True)
    assert low is not language.detector("en,es,de")
    assert language.detect(SENTENCES["es"], "en,es,de", low_accuracy=True) == "es"
