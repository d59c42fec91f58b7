"""Open-answer parsing and scoring (TriviaQA): answer extraction, official normalisation, alias match.

Scoring rule (stated once, used everywhere): a prediction is correct when its *extracted* answer (the first line,
cut at the first sentence end, with answer-introducing phrases removed) equals one of the gold aliases after the
official TriviaQA normalisation (lower case, ``_`` to space, punctuation to space, articles a/an/the removed,
whitespace collapsed). This is the official exact-match metric; ``mode="contains"`` is a lenient variant for
analyses (a normalised alias occurring as a whole-word span of the normalised answer).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Literal

from casceq.tasks.text import clean_output, strip_answer_prefixes
from casceq.types import INVALID

# The official TriviaQA evaluation (triviaqa/utils/dataset_utils.py) treats these as punctuation too.
_PUNCT = frozenset(string.punctuation + "‘’´`")
_PUNCT_TABLE = {ord(c): " " for c in _PUNCT}
_ARTICLES = re.compile(r"\b(a|an|the)\b")

# Abbreviations whose full stop does not end a sentence ("St. Louis", "Dr. No", "J. R. R. Tolkien").
_ABBREV = frozenset(
    [
        "st",
        "dr",
        "mr",
        "mrs",
        "ms",
        "mt",
        "jr",
        "sr",
        "vs",
        "etc",
        "no",
        "nos",
        "co",
        "inc",
        "ltd",
        "gen",
        "col",
        "capt",
        "lt",
        "sgt",
        "rev",
        "fr",
        "prof",
        "ft",
        "u.s",
        "u.k",
        "e.g",
        "i.e",
    ]
)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_QUESTION_LINE = re.compile(r"^\s*(?:question|q)\s*:", re.IGNORECASE)
_REFUSAL = re.compile(
    r"^(?:i\s+(?:do\s+not|don't|dont|cannot|can't|can\s+not|am\s+not\s+sure|'m\s+not\s+sure|have\s+no)\b"
    r"|i'm\s+(?:not\s+sure|sorry|unable)|sorry\b|unknown$|n/?a$|none$|no\s+idea|not\s+sure\b"
    r"|as\s+an\s+ai\b|i\s+am\s+(?:sorry|unable))",
    re.IGNORECASE,
)
_EDGE_JUNK = " \t\"'“”‘’*`_.,;:!?()[]{}<>-–—"


def normalize_answer(text: str) -> str:
    """Apply the official TriviaQA answer normalisation.

    Lower case, underscores to spaces, punctuation (``string.punctuation`` plus typographic quotes) to spaces,
    articles a/an/the removed, whitespace collapsed.
    """
    text = text.replace("_", " ").lower().translate(_PUNCT_TABLE)
    return " ".join(_ARTICLES.sub(" ", text).split())


def alias_match(answer: str, aliases: Iterable[str], *, mode: Literal["exact", "contains"] = "exact") -> bool:
    """Whether an extracted answer matches any gold alias.

    Args:
        answer: The extracted answer (``Task.parse`` output), or INVALID.
        aliases: Gold answer aliases (TriviaQA ``Answer.Aliases`` plus ``Answer.Value``).
        mode: ``"exact"`` (official exact match after normalisation) or ``"contains"`` (a normalised alias is a
            whole-word span of the normalised answer).

    Returns:
        True on a match; False for INVALID or an answer that normalises to nothing.
    """
    if answer == INVALID:
        return False
    norm = normalize_answer(answer)
    if not norm:
        return False
    targets = {normalize_answer(a) for a in aliases}
    targets.discard("")
    if mode == "exact":
        return norm in targets
    if mode != "contains":
        raise ValueError(f"unknown alias_match mode {mode!r} (expected 'exact' or 'contains')")
    padded = f" {norm} "
    return any(f" {t} " in padded for t in targets)


def _first_sentence(line: str) -> str:
    """Cut a line at its first sentence end, skipping abbreviations and initials."""
    for m in _SENTENCE_END.finditer(line):
        if line[m.start()] == ".":
            before = line[: m.start()].rsplit(None, 1)
            word = before[-1].lower() if before else ""
            # A single letter ("J.") is an initial; "u.s" / "e.g" keep their inner dots.
            if len(word.strip("'\"(")) <= 1 or word.strip("'\"(") in _ABBREV:
                continue
        return line[: m.start()]
    return line


def extract_open_answer(output: str) -> str:
    """Extract the answer span of a free-text open-QA output, or INVALID.

    Takes the first non-empty line that is not an echoed ``Question:`` line, removes answer-introducing phrases
    (``Answer:``, ``The answer is``) and markdown, cuts at the first sentence end and trims quotes and
    punctuation. Empty outputs and refusals ("I don't know", "I'm sorry") are INVALID: they are not answers.
    """
    text = clean_output(output, lower=False)
    for raw_line in text.split("\n"):
        if not raw_line.strip() or _QUESTION_LINE.match(raw_line):
            continue
        line = strip_answer_prefixes(raw_line.strip())
        answer = _first_sentence(line).strip(_EDGE_JUNK)
        if not answer:
            continue
        if _REFUSAL.match(answer):
            return INVALID
        return answer
    return INVALID


def parse_open(output: str, task: object = None, example: object = None) -> str:
    """Parser for open-answer tasks (``Task.parser`` signature): the extracted answer or INVALID."""
    return extract_open_answer(output)
