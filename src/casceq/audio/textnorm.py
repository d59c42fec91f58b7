r"""Text normalisation: what a voice should say for a task's text, and how transcripts are compared.

The task's text stays untouched (``Example.text``); :func:`spoken_text` derives the string a TTS engine reads.
Two kinds of source noise matter for the paper's tasks:

- AG News (a web scrape): HTML entities with and without their ``&`` (``#36;`` = ``$``, ``#39;``, `` quot;``,
  ``&lt;``), Windows-1252 code points written as entities (``#151;`` is an em dash), backslashes that stood
  for line breaks (``dwindling\\band``), escaped dollars (``\\$``), and Reuters ticker tags (``<AAPL.O>``).
- SST-2 (Penn Treebank tokens, lower-cased): ``-lrb-``/``-rrb-``, ````` and ``''`` quotes, split clitics
  (``does n't``, ``it 's``) and spaces before punctuation.

Engines read these literally ("hash thirty six", "left round bracket"), which adds ASR errors that no real
speaker would cause. :func:`word_error_rate` and :func:`normalize_for_wer` score transcripts of the audio as ASR leaderboards do:
Whisper's English text normaliser, then jiwer's word alignment (docs/report.md, "Word error rate").
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Callable, Hashable, Sequence
from functools import cache

from casceq.errors import require
from casceq.paths import BUNDLED_DATA

PTB_TASKS = frozenset({"sst2"})
"""Tasks whose text is Penn-Treebank tokenised (detokenised before synthesis)."""

# Entity names that AG News keeps after its '&' was stripped (" quot;", " amp;"). Only these: bare words
# ending in ';' ("forecast;") are ordinary text.
_BARE_ENTITIES = ("quot", "amp", "lt", "gt", "hellip", "nbsp", "apos", "mdash", "ndash")
# AG News replaced each '&' by a space ("J&amp;J" -> "J amp;J", "doesn&#39;t" -> "doesn #39;t"), so an entity
# without its '&' takes back the one space in front of it.
_BARE_ENTITY_RE = re.compile(r"(?: |(?<![&\w]))(" + "|".join(_BARE_ENTITIES) + r");")
_NUMERIC_ENTITY_RE = re.compile(r"(?:&| ?)#(x[0-9a-fA-F]+|[0-9]+);")
_TAG_RE = re.compile(r"<[^<>]{0,300}>")
_SPACE_RE = re.compile(r"\s+")
_LEADING_PUNCT_RE = re.compile(r"^[\s.,;:!?\-\u2013\u2014\u2026]+")

_PTB_TOKENS: tuple[tuple[str, str], ...] = (
    ("-lrb-", "("),
    ("-rrb-", ")"),
    ("-lsb-", "["),
    ("-rsb-", "]"),
    ("-lcb-", "{"),
    ("-rcb-", "}"),
    ("``", '"'),
    ("''", '"'),
)
# PTB escapes of '/' and '*', undone before backslashes are read as AG News line breaks.
_PTB_ESCAPES = (("\\/", "/"), ("\\*", "*"))
# Single-quoted spans: "` solaris '" -> '"solaris"' (the closing quote is followed by a space or the end).
_SINGLE_QUOTED_RE = re.compile(r"`\s*(.*?)\s*'(?=\s|$)")
# Clitics that PTB splits off the previous word ("does n't", "it 's", "we 're").
_CLITIC_RE = re.compile(r"(\w) (n't|'s|'re|'ve|'ll|'d|'m|')(?=\W|$)", re.IGNORECASE)
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([,.;:!?%)\]}])")
_SPACE_AFTER_OPEN_RE = re.compile(r"([(\[{$])\s+")
# Older engines (flite, festival) read text as ASCII: curly quotes become straight ones.
_CURLY_QUOTES = (("\u2018", "'"), ("\u2019", "'"), ("\u201c", '"'), ("\u201d", '"'))
_QUOTED_RE = re.compile(r'"\s*([^"]*?)\s*"')


def _numeric_entity(match: re.Match[str]) -> str:
    body = match.group(1)
    code = int(body[1:], 16) if body[0] in "xX" else int(body)
    if 128 <= code <= 159:
        # HTML5 reads these as Windows-1252 (#151; is an em dash, #146; a right quote), not C1 controls.
        return bytes([code]).decode("cp1252", errors="replace")
    try:
        return chr(code)
    except (ValueError, OverflowError):
        return " "


def decode_entities(text: str) -> str:
    """Decode HTML entities, including AG News' ``#36;`` form and its bare `` quot;``.

    Args:
        text: Raw text.

    Returns:
        Text with entities replaced by their characters (Windows-1252 meaning for code points 128–159).
    """
    text = _NUMERIC_ENTITY_RE.sub(_numeric_entity, text)
    text = _BARE_ENTITY_RE.sub(lambda m: "&" + m.group(1) + ";", text)
    # Twice: AG News has double-escaped '&amp;lt;'.
    return html.unescape(html.unescape(text))


def strip_markup(text: str) -> str:
    """Drop HTML tags and Reuters ticker tags (``<AAPL.O>``), which no reader speaks aloud.

    Stray angle brackets go too: in AG News they are breadcrumb separators ("India News > Kanpur") or tag
    debris, and engines would read them as "greater than".
    """
    return _TAG_RE.sub(" ", text).replace("<", " ").replace(">", " ")


def fix_backslashes(text: str) -> str:
    r"""Undo AG News backslash escapes: ``\$`` is a dollar sign, any other backslash was a line break."""
    text = text.replace("\\$", "$")
    return text.replace("\\", " ")


def detokenize_ptb(text: str) -> str:
    r"""Replace Penn-Treebank token spellings by the characters they stand for.

    Args:
        text: PTB-tokenised text (``"it 's a -lrb- very -rrb- ` good ' film"``).

    Returns:
        Text with brackets, quotes and escapes restored (``"it 's a ( very ) \"good\" film"``); spacing is left
        to :func:`tidy_spacing`.
    """
    for token, plain in _PTB_ESCAPES + _PTB_TOKENS:
        text = text.replace(token, plain)
    return _SINGLE_QUOTED_RE.sub(lambda m: '"' + m.group(1) + '"', text)


def tidy_spacing(text: str) -> str:
    """Re-attach split clitics and punctuation (``"is n't it , then ?"`` -> ``"isn't it, then?"``).

    Both tasks need it: SST-2 is tokenised, and AG News writes ``Street #39;s`` with a space before the entity.
    """
    for curly, straight in _CURLY_QUOTES:
        text = text.replace(curly, straight)
    text = _SPACE_RE.sub(" ", text)
    text = _CLITIC_RE.sub(r"\1\2", text)
    text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
    text = _SPACE_AFTER_OPEN_RE.sub(r"\1", text)
    # Pull quotes onto the words they enclose: '" like this "' -> '"like this"'.
    return _QUOTED_RE.sub(lambda m: '"' + m.group(1) + '"', text)


def spoken_text(text: str, task: str | None = None) -> str:
    """Return the string a voice reads for one task text.

    Args:
        text: The task's original text.
        task: Task name; PTB detokenisation applies to ``PTB_TASKS`` and, when ``task`` is None, always.

    Returns:
        Normalised text with single spaces; empty if nothing speakable remains.
    """
    ptb = task is None or task in PTB_TASKS
    text = unicodedata.normalize("NFC", text)
    if ptb:
        for token, plain in _PTB_ESCAPES:
            text = text.replace(token, plain)
    text = fix_backslashes(text)
    text = decode_entities(text)
    text = strip_markup(text)
    if ptb:
        text = detokenize_ptb(text)
    # A leading "..." (SST-2 fragments) is not spoken, and it crashes Festival's kal_diphone voice.
    text = _LEADING_PUNCT_RE.sub("", tidy_spacing(text)).strip()
    return text if any(ch.isalnum() for ch in text) else ""


WHISPER_SPELLING = "whisper/english.json"
"""British -> American spelling map of Whisper's English normaliser (MIT, OpenAI; under ``casceq/data``)."""

# Two changes before the Whisper normaliser. Typographic apostrophes are straightened: it expands contractions
# only with a straight one ("don’t" would become "don t" while a transcript's "don't" becomes "do not").
# Brackets become spaces: it deletes bracketed text as non-speech annotations ("(laughs)"), but the texts our
# voices read have bracketed words that are spoken ("Nobel (AP)"), and a transcript of them is not an error.
_PRE_WHISPER = str.maketrans(
    {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "(": " ", ")": " ", "[": " ", "]": " ", "<": " ", ">": " "}
)


@cache
def english_normalizer() -> Callable[[str], str]:
    """Whisper's English text normaliser (``transformers``' copy) with its British->American spelling map.

    It is what ASR leaderboards score with: lower case, contractions expanded ("won't" -> "will not"),
    spelled numbers to digits ("twenty five" -> "25", "five dollars" -> "$5"), British spellings to American,
    titles spelled out ("Mr" -> "mister"), fillers ("um", "uh") and punctuation removed.

    Raises:
        MissingDependency: ``transformers`` (and its ``regex``) is not installed (extra ``wer``).
    """
    module = require(
        "transformers.models.whisper.english_normalizer",
        "WER normalisation",
        package="transformers",
        extra="wer",
    )
    mapping = json.loads((BUNDLED_DATA / WHISPER_SPELLING).read_text(encoding="utf-8"))
    normalizer: Callable[[str], str] = module.EnglishTextNormalizer(mapping)
    return normalizer


def normalize_for_wer(text: str) -> list[str]:
    """Words of a reference or transcript for WER: Whisper's English normaliser (:func:`english_normalizer`).

    Typographic apostrophes are straightened and brackets read as spaces first (their words are spoken in our
    test sets); tokens without a letter or digit (the normaliser leaves the last "." of "...") are dropped.
    """
    words = english_normalizer()(text.translate(_PRE_WHISPER)).split()
    return [w for w in words if any(ch.isalnum() for ch in w)]


def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """Levenshtein distance between two sequences (words or characters; each edit costs 1), by rapidfuzz."""
    levenshtein = require(
        "rapidfuzz.distance.Levenshtein", "edit distances", package="rapidfuzz", extra="wer"
    )
    return int(levenshtein.distance(ref, hyp))


def word_edits(reference: str, transcript: str) -> tuple[int, int]:
    """(word edits, reference words) of one pair after normalisation, counted by jiwer."""
    ref = " ".join(normalize_for_wer(reference))
    hyp = " ".join(normalize_for_wer(transcript))
    if not ref:
        return len(hyp.split()), 0  # jiwer refuses empty references: every transcript word is an insertion
    jiwer = require("jiwer", "word error rates", extra="wer")
    out = jiwer.process_words(ref, hyp)
    return int(out.substitutions + out.deletions + out.insertions), len(ref.split())


def word_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate: total word edits over total reference words (jiwer after Whisper's normaliser).

    Args:
        refs: Reference texts.
        hyps: Transcripts, aligned with ``refs``.

    Returns:
        Sum of word edits divided by the number of reference words (after :func:`normalize_for_wer`).

    Raises:
        ValueError: If the lists differ in length or the references hold no words.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} transcripts")
    edits = words = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        e, n = word_edits(ref, hyp)
        edits += e
        words += n
    if words == 0:
        raise ValueError("the references contain no words")
    return edits / words
