"""The language of a customer's text, for routing rules with a language condition, by lingua.

A detector is restricted to the configured languages: fewer candidates are both faster and more accurate
(a short English text is not mistaken for Scots or Afrikaans when neither can be answered). Its models are
preloaded when it is built, so no detection waits on a lazy load; building takes over a second and about
240 MB for the seven default languages, so a detector is built once per set and kept (``warm_up`` builds
it; routing calls it in a worker thread before its first detection). A detection then costs 0.1-0.3 ms
for a chat message.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

DEFAULT_LANGUAGES = "en,es,fr,de,pt,it,nl"
# Fewer letters than this say nothing reliable about a language ("ok", "hi", an order number).
MIN_LETTERS = 3
# Only the start is read: it decides the language as well as the whole would, and the cost of a long
# email stays that of a short message.
MAX_CHARS = 1000
# How far ahead of the runner-up the best language must be for lingua to answer at all; below it the
# text is ambiguous ("hello", "taxi") and the answer is None rather than a guess.
MIN_RELATIVE_DISTANCE = 0.2

# A few language sets at most (a setting, and whatever a test asks for): each detector holds its models.
_MAX_DETECTORS = 4
_detectors: dict[tuple[frozenset[str], bool], LanguageDetector] = {}
_build_lock = threading.Lock()


# Every ISO 639-1 code lingua can detect, lower case, sorted.
KNOWN = tuple(sorted(lang.iso_code_639_1.name.lower() for lang in Language.all()))
_KNOWN = frozenset(KNOWN)


def known(code: str) -> bool:
    """Whether ``code`` is an ISO 639-1 code lingua can detect (lower case)."""
    return code in _KNOWN


def parse_languages(languages: str | Iterable[str]) -> frozenset[str]:
    """``"en,es,fr"`` (or the codes themselves) as a set of lower-case ISO 639-1 codes; ``ValueError``
    naming any code lingua does not know, or when none is given."""
    items = languages.split(",") if isinstance(languages, str) else languages
    codes = frozenset(code.strip().lower() for code in items if code.strip())
    unknown = sorted(code for code in codes if not known(code))
    if unknown:
        raise ValueError(f"unknown ISO 639-1 language codes: {', '.join(unknown)}")
    if not codes:
        raise ValueError("no language to detect")
    return codes


def detector(
    languages: str | Iterable[str] = DEFAULT_LANGUAGES, *, low_accuracy: bool = False
) -> LanguageDetector:
    """The detector for this language set, built on first use and kept.

    ``low_accuracy`` keeps lingua's trigram models only: about 10 MB and 0.1 s to build instead of
    about 240 MB and 1.5 s for the seven default languages, but less reliable on texts shorter than
    about 120 characters, which chat messages usually are."""
    codes = _parse_setting(languages) if isinstance(languages, str) else parse_languages(languages)
    key = (codes, low_accuracy)
    found = _detectors.get(key)
    if found is None:
        # One build at a time, and a build only when nobody finished one meanwhile: two concurrent first
        # calls would otherwise each spend the second and the memory of a build.
        with _build_lock:
            found = _detectors.get(key)
            if found is None:
                found = _build(codes, low_accuracy)
                if len(_detectors) >= _MAX_DETECTORS:
                    _detectors.pop(next(iter(_detectors)))
                _detectors[key] = found
    return found


# The setting's text is parsed once, not for every message.
_parse_setting = functools.lru_cache(maxsize=16)(parse_languages)


def _build(codes: frozenset[str], low_accuracy: bool) -> LanguageDetector:
    builder = (
        LanguageDetectorBuilder.from_iso_codes_639_1(*(IsoCode639_1.from_str(c) for c in sorted(codes)))
        .with_preloaded_language_models()
        .with_minimum_relative_distance(MIN_RELATIVE_DISTANCE)
    )
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    return builder.build()


def warm_up(languages: str | Iterable[str] = DEFAULT_LANGUAGES, *, low_accuracy: bool = False) -> None:
    """Build the detector now (blocking: call it in a worker thread), so no detection pays for it."""
    detector(languages, low_accuracy=low_accuracy)


def _enough_letters(text: str) -> bool:
    letters = 0
    for char in text:
        if char.isalpha():
            letters += 1
            if letters >= MIN_LETTERS:
                return True
    return False


def detect(
    text: str, languages: str | Iterable[str] = DEFAULT_LANGUAGES, *, low_accuracy: bool = False
) -> str | None:
    """The ISO 639-1 code (lower case) of the text's language among ``languages``; None when the text is
    too short to tell or lingua is not confident."""
    sample = text[:MAX_CHARS]
    if not _enough_letters(sample):
        return None
    found = detector(languages, low_accuracy=low_accuracy).detect_language_of(sample)
    return None if found is None else found.iso_code_639_1.name.lower()
