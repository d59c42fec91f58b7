"""Per-example word error rate of a cascade's transcript, for attributing shared errors to ASR or to the LLM.

Normalisation, applied to the reference (what the voice was asked to say) and to the transcript alike:

1. NFKC, lower case, curly apostrophes straightened.
2. Symbols spoken as words: ``%`` -> "percent", ``&`` -> "and", ``$5`` -> "5 dollars", ``£5`` -> "5 pounds",
   ``€5`` -> "5 euros"; thousands separators dropped (``1,000`` -> ``1000``).
3. Numbers as words: ``25`` -> "twenty five", ``3.5`` -> "three point five". Years become cardinals
   ("1990" -> "one thousand nine hundred ninety") on both sides; what WER needs is that one number normalises
   to the same words whether it was written in digits or words. Spelled-out years ("nineteen ninety") remain
   a mismatch, and count as an ASR error (documented limitation).
4. Punctuation and hyphens become spaces; apostrophes inside words stay ("isn't"); quotes around words go.

The attribution rule (``TRANSCRIPT_RIGHT_WER``): a transcript is *right* when its WER after normalisation is
exactly 0. A shared error whose cascade transcript is right is an LLM error (the LLM read the right words and
still erred); otherwise it is ASR-induced.
"""

from __future__ import annotations

import re
import unicodedata

from casceq.audio.textnorm import edit_distance

TRANSCRIPT_RIGHT_WER = 0.0
"""A transcript whose normalised WER is at most this is "right" (exact words after normalisation)."""

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros"}

_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}\b)")
_CURRENCY_RE = re.compile(r"([$£€])\s?(\d+(?:\.\d+)?)")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_PUNCT_RE = re.compile(r"[^\w\s']|_")


def number_words(n: int) -> str:
    """Spell a non-negative integer in English words ("twenty five", "one thousand two hundred").

    Numbers of a trillion or more are spelled digit by digit (they never occur in spoken test sets).
    """
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n >= 10**12:
        return " ".join(_ONES[int(d)] for d in str(n))
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return f"{number_words(head)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError("unreachable")  # pragma: no cover


def _spell(match: re.Match[str]) -> str:
    whole, _, frac = match.group(0).partition(".")
    words = number_words(int(whole))
    if frac:
        words += " point " + " ".join(_ONES[int(d)] for d in frac)
    return f" {words} "


def normalize_words(text: str) -> list[str]:
    """Return the words of ``text`` after the normalisation described in the module docstring."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'").replace("‘", "'")
    text = _THOUSANDS_RE.sub("", text)
    text = _CURRENCY_RE.sub(lambda m: f"{m.group(2)} {_CURRENCY[m.group(1)]}", text)
    text = text.replace("%", " percent ").replace("&", " and ")
    text = _NUMBER_RE.sub(_spell, text)
    text = _PUNCT_RE.sub(" ", text)
    return [w.strip("'") for w in text.split() if w.strip("'")]


def wer(reference: str, transcript: str) -> float | None:
    """Word error rate of one transcript: word edits over reference words, after normalisation.

    Args:
        reference: The text the voice spoke.
        transcript: The ASR output.

    Returns:
        ``edits / len(reference words)`` (may exceed 1 with insertions), or None when the normalised
        reference has no words (WER is undefined).
    """
    ref, hyp = normalize_words(reference), normalize_words(transcript)
    if not ref:
        return None
    return edit_distance(ref, hyp) / len(ref)


def transcript_right(reference: str, transcript: str | None) -> bool | None:
    """Whether a transcript is right (WER <= ``TRANSCRIPT_RIGHT_WER``); None when it cannot be decided."""
    if transcript is None:
        return None
    w = wer(reference, transcript)
    return None if w is None else w <= TRANSCRIPT_RIGHT_WER
