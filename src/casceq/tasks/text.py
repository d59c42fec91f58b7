"""Shared clean-up of raw model outputs before label or answer extraction.

Every parser first removes what is never part of an answer: chat special tokens, ``<think>`` blocks, markdown
emphasis, headings, quotes and bullets, typographic quotes, and answer-introducing phrases ("The answer is",
"Answer:", "Sentiment:", "Label -"). All patterns are compiled once at import: parsers run per prediction.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
# <|im_end|>, <|eot_id|>, </s>, <eos>, <end_of_turn>, <answer> ... </answer>
# Chat headers carry a role word ("<|im_start|>assistant", "<start_of_turn>model") that is not an answer.
_CHAT_HEADER = re.compile(
    r"(?:<\|im_start\|>|<start_of_turn>|<\|start_header_id\|>)[ \t]*(?:assistant|model|user|system)?[ \t]*"
    r"(?:<\|end_header_id\|>)?",
    re.IGNORECASE,
)
_SPECIAL = re.compile(r"<\|[^|>]{0,40}\|>|</?[A-Za-z_][\w-]{0,30}>")
_QUOTES = str.maketrans(
    {"‘": "'", "’": "'", "‚": "'", "‛": "'", "´": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"'}
)
_LINE_MARKUP = re.compile(r"^[ \t]*(?:#{1,6}[ \t]+|>[ \t]*|[-*+•·▪►][ \t]+|\d{1,2}[.)][ \t]+)+", re.MULTILINE)
_EMPHASIS = re.compile(r"\*+|`+|~~|(?<!\w)_{1,2}|_{1,2}(?!\w)")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")

# Field names that introduce an answer only when followed by a delimiter ("Sentiment: positive", "Label - World").
_FIELDS = (
    r"final\s+answer|correct\s+answer|short\s+answer|answer|label|final\s+label|prediction|predicted\s+label|"
    r"output|response|result|sentiment|emotion|topic|category|class|classification|sarcasm|choice|"
    r"the\s+(?:final\s+|correct\s+)?answer"
)
_PREFIX_BODY = (
    r"(?:sure|okay|ok|certainly|of\s+course)\s*[!,.]\s*(?:here\s+is\s+(?:the|my)\s+answer\s*[:.]?\s*)?"
    r"|(?:" + _FIELDS + r")\s*(?::|=|->|→|\s[-–—]\s)\s*"
    r"|(?:i\s+think\s+|i\s+believe\s+|so\s+)?(?:the\s+)?(?:correct\s+|final\s+|right\s+|best\s+)?answer\s+(?:is|would\s+be)\s*:?\s*"
    r"|my\s+(?:final\s+)?answer\s+is\s*:?\s*"
)
_PREFIX = re.compile(r"^(?:" + _PREFIX_BODY + r"|a\s*:\s*)", re.IGNORECASE)
# Multiple-choice outputs: "A: bank" names option A, so "A:" is not an answer prefix there.
_PREFIX_MC = re.compile(r"^(?:" + _PREFIX_BODY + r")", re.IGNORECASE)


def clean_output(output: str, *, lower: bool = True) -> str:
    """Remove special tokens, reasoning blocks and markdown; normalise quotes and spaces.

    Args:
        output: A raw model output.
        lower: Also lower-case (label parsers); open answers keep their case for display.

    Returns:
        The cleaned text; lines are kept (newlines separate clauses), runs of spaces collapsed.
    """
    text = unicodedata.normalize("NFKC", output)
    if "<" in text:
        text = _SPECIAL.sub(" ", _CHAT_HEADER.sub(" ", _THINK.sub(" ", text)))
    text = text.translate(_QUOTES)
    text = _LINE_MARKUP.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = _BLANK_LINES.sub("\n", _SPACES.sub(" ", text)).strip()
    return text.lower() if lower else text


def strip_answer_prefixes(text: str, *, multiple_choice: bool = False) -> str:
    """Remove leading answer-introducing phrases, repeatedly ("Answer: The answer is B" -> "B").

    Args:
        text: Cleaned output (see ``clean_output``).
        multiple_choice: Keep a leading "A:" (option A), which open answers treat as a Q/A-style prefix.
    """
    prefix = _PREFIX_MC if multiple_choice else _PREFIX
    while True:
        m = prefix.match(text)
        if m is None or m.end() == 0:
            return text
        text = text[m.end() :].lstrip()


@lru_cache(maxsize=64)
def _echo_pattern(instruction: str) -> re.Pattern[str] | None:
    # Each sentence of the instruction separately: models often repeat only "Answer with exactly one word: ...".
    sentences = [x.strip() for x in re.split(r"(?<=[.?!])\s+", instruction) if len(x.strip()) > 12]
    if not sentences:
        return None
    alternatives = sorted((r"\s+".join(map(re.escape, x.split())) for x in sentences), key=len, reverse=True)
    return re.compile("|".join(alternatives), re.IGNORECASE)


def remove_echo(text: str, instruction: str) -> str:
    """Remove echoed sentences of the task instruction (any case) from a cleaned output."""
    pattern = _echo_pattern(instruction) if instruction else None
    return pattern.sub(" ", text) if pattern is not None else text
