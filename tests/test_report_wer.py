from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casceq.report.wer import normalize_words, transcript_right, wer


def _reference_distance(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Levenshtein distance by its recursive definition (an independent reference)."""

    @cache
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("the cat sat", "the cat sat", 0.0),
        ("the cat sat", "the bat sat", 1 / 3),  # one substitution
        ("the cat sat", "the cat", 1 / 3),  # one deletion
        ("the cat sat", "the cat sat down now", 2 / 3),  # two insertions
        ("the cat sat", "", 1.0),
        ("a b c d", "d c b a", 1.0),  # no alignment does better than 4 edits
    ],
)
def test_wer_known_values(ref: str, hyp: str, expected: float) -> None:
    assert wer(ref, hyp) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("ref", "hyp"),
    [
        ("It cost $5.", "it cost five dollars"),
        ("Shares rose 5% on Monday", "shares rose five percent on monday"),
        ("They sold 1,000 units", "they sold one thousand units"),
        ("It was nineteen ninety", "it was 1990"),  # spelled-out years and digits agree
        ("He won't go", "he will not go"),  # contractions expanded
        ("The colour of the theatre", "the color of the theater"),  # British spellings -> American
        ("Mr. Smith", "mister smith"),
        ("Um, I think, uh, yes", "i think yes"),  # fillers dropped
        ("How do you spell cliché?", "How do you spell cliche?"),  # diacritics removed
        ("Win Nobel (AP). AP - Americans", "win nobel ap ap americans"),  # bracketed words are spoken here
        ("Don’t stop!", "don't stop"),  # typographic apostrophe
        ("Don't stop!", "don’t stop"),
        ("The year 2004 was odd", "the year two thousand four was odd"),
        ("It's 3.5 times larger", "it's three point five times larger"),
        ('Well-known "quotes"', "well known quotes"),
    ],
)
def test_normalisation_makes_equivalent_writings_equal(ref: str, hyp: str) -> None:
    assert wer(ref, hyp) == 0.0
    assert transcript_right(ref, hyp) is True


def test_normalisation_keeps_real_differences() -> None:
    assert transcript_right("It cost $5.", "it cost six dollars") is False
    assert transcript_right("The film was great", "the film was grey") is False


def test_undefined_cases() -> None:
    assert wer("...", "anything") is None
    assert transcript_right("...", "anything") is None
    assert transcript_right("a text", None) is None


# Words the normaliser leaves as they are, so the hand-computed distance applies to the raw lists.
VOCAB = ["a", "b", "c", "dog", "cat"]
words = st.lists(st.sampled_from(VOCAB), min_size=1, max_size=7)


@settings(max_examples=200, deadline=None)
@given(words, st.lists(st.sampled_from(VOCAB), max_size=7))
def test_wer_matches_reference_edit_distance(ref: list[str], hyp: list[str]) -> None:
    expected = _reference_distance(tuple(ref), tuple(hyp)) / len(ref)
    assert wer(" ".join(ref), " ".join(hyp)) == pytest.approx(expected)
    assert wer(" ".join(ref), " ".join(ref)) == 0.0


def test_normalize_words_examples() -> None:
    assert normalize_words("Hello, World!") == ["hello", "world"]
    assert normalize_words("'quoted' isn't") == ["quoted", "is", "not"]


def test_known_differences_of_whisper_normalisation() -> None:
    # "&" is dropped, not spoken: "AT&T" -> "at t", so a transcript "at and t" has one insertion.
    assert wer("AT&T sold 1,000 units", "at and t sold one thousand units") == pytest.approx(1 / 5)
    # "$5" vs "six dollars" -> "$5" vs "$6": one substitution in three words ("it cost $5").
    assert wer("It cost $5.", "it cost six dollars") == pytest.approx(1 / 3)
