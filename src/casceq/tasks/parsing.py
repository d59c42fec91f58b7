"""Answer parsing for classification tasks: free-text output -> one canonical label or INVALID.

The rules, in order (documented once here; tests/test_tasks_parsing.py holds the table of cases):

1. Clean-up (``casceq.tasks.text``): special tokens, ``<think>`` blocks, markdown, typographic quotes; lower case;
   ``n't`` -> `` not``; an echoed instruction and echoed input lines ("Text: ...") are dropped; leading
   answer phrases ("The answer is", "Answer:", "Sentiment:", "Label -") are stripped.
2. Mentions: whole-word occurrences of a label or an unambiguous synonym (longest form first, so "not sarcastic"
   is one mention and never also "sarcastic"; "sci/tech", "sci-tech" and "science" all name Sci/Tech). Some
   synonyms count only as the very first word of the answer (MUStARD "yes"/"no"), because "no" inside an
   explanation ("there is no doubt it is sarcastic") is not an answer.
3. Negation: a mention preceded, within three words of its clause, by not/no/never/neither/nor/without is
   *negated*. A negated mention is dropped ("not positive" alone is INVALID: the model did not commit to
   "negative", and a 3+-way task gives no complement anyway), except where the task names the complement of that
   label (MUStARD: "not at all sarcastic" -> not sarcastic).
4. Commitment: the first non-negated mention wins, unless it is a hedge: its clause begins with an uncertainty
   marker ("whether", "not sure", "either", "unclear"), or the next mention of a *different* label is joined to
   it only by punctuation and joiners ("positive or negative", "positive/negative", "B, C", "joy and
   sadness"). A hedge is INVALID, never guessed.
5. Explicit final answers win: when an answer marker ("Answer:", "The answer is", "Final answer") appears later in
   the output (chain of thought), the segment after the last marker is parsed first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from casceq.tasks.open_answer import alias_match, normalize_answer, parse_open
from casceq.tasks.text import clean_output, remove_echo, strip_answer_prefixes
from casceq.types import INVALID, Example

__all__ = [
    "INVALID",
    "LabelParser",
    "Mention",
    "alias_match",
    "commit",
    "is_negated",
    "normalize_answer",
    "parse_open",
    "surface_key",
]

_TOKEN = re.compile(r"[a-z0-9]+")
_CONTRACTION = re.compile(r"n't\b|\bcannot\b")
_BOUNDARY = re.compile(r"[.;!?,:\n()\[\]]|\bbut\b|\bhowever\b|\bwhile\b", re.IGNORECASE)
_NEGATORS = frozenset({"not", "no", "never", "neither", "nor", "without", "non", "hardly"})
_UNCERTAIN = re.compile(
    r"\b(?:whether|either|unsure|uncertain|unclear|not\s+sure|can\s+not\s+(?:determine|tell|say|decide)|"
    r"(?:hard|difficult|impossible)\s+to\s+(?:say|tell|determine))\b",
    re.IGNORECASE,
)
_JOINER = re.compile(
    r"[\W_]*(?:(?:and/or|or|and|nor|vs|versus|to|maybe|possibly|perhaps|probably|potentially|even|also|rather|"
    r"else|plus|option|choice|letter)\b[\W_]*)*",
    re.IGNORECASE,
)
_ANCHOR_JOIN = re.compile(r"\s*(?:/|,|\bor\b|\band\b)\s*")
_MARKER = re.compile(r"(?:final\s+answer|answer\s+is|answer\s*:|final\s+label\s*:|label\s*:)\s*")


def surface_key(text: str) -> str:
    """Return the lookup key of a label surface form: lower-case alphanumeric tokens joined by one space."""
    return " ".join(_TOKEN.findall(text.lower()))


def _surface_pattern(key: str) -> str:
    # Tokens may be joined by spaces, "/", "&" or "-": "sci/tech", "sci-tech", "sci & tech" are one mention.
    return r"[\s/&\-]+".join(re.escape(t) for t in key.split())


@dataclass(frozen=True)
class Mention:
    """One occurrence of a label in an output: character span, canonical label, whether it is negated."""

    start: int
    end: int
    label: str
    negated: bool


class LabelParser:
    """A compiled parser for one label set; callable with the ``Task.parser`` signature.

    Args:
        labels: Canonical labels.
        synonyms: ``(surface form, canonical label)`` pairs; matched case-insensitively as whole words.
        anchored: Pairs matched only as the first word of the (prefix-stripped) answer (``("yes", "sarcastic")``).
        negated_to: ``(label, complement)`` pairs: a negated mention of ``label`` counts as ``complement``.
        extra_prefix: A regex of task-specific leading phrases to strip (only when followed by an answer).
    """

    def __init__(
        self,
        labels: Iterable[str],
        synonyms: Iterable[tuple[str, str]] = (),
        *,
        anchored: Iterable[tuple[str, str]] = (),
        negated_to: Iterable[tuple[str, str]] = (),
        extra_prefix: str | None = None,
    ) -> None:
        self.labels = tuple(labels)
        # The definition as given (casceq.tasks.userdef.task_to_toml writes it back).
        self.anchored = tuple(anchored)
        self.negated_to = tuple(negated_to)
        self.extra_prefix = extra_prefix
        self._by_key: dict[str, str] = {surface_key(lab): lab for lab in self.labels}
        for surface, lab in synonyms:
            if lab not in self.labels:
                raise ValueError(f"synonym {surface!r} maps to unknown label {lab!r}")
            self._by_key[surface_key(surface)] = lab
        alternatives = sorted(self._by_key, key=len, reverse=True)
        self._mention = re.compile(
            r"(?<![a-z0-9])(?:" + "|".join(_surface_pattern(k) for k in alternatives) + r")(?![a-z0-9])"
        )
        self._anchored = {surface_key(s): lab for s, lab in self.anchored}
        self._anchor_re = (
            re.compile(r"(?:" + "|".join(_surface_pattern(k) for k in self._anchored) + r")(?![a-z0-9])")
            if self._anchored
            else None
        )
        self._negated_to = dict(self.negated_to)
        self._extra_prefix = re.compile(extra_prefix) if extra_prefix else None

    def __call__(self, output: str, task: object = None, example: Example | None = None) -> str:
        """Parse one output into a canonical label or INVALID (``Task.parser`` signature)."""
        text = self._prepare(output, task)
        if not text:
            return INVALID
        markers = list(_MARKER.finditer(text, 1))
        if markers:
            last = markers[-1]
            # A later explicit answer marker (chain of thought) is the model's committed answer.
            label = self._commit(self._strip(text[last.end() :]))
            if label != INVALID:
                return label
        return self._commit(text)

    def _prepare(self, output: str, task: object) -> str:
        text = clean_output(output, lower=True)
        if not text:
            return ""
        text = _CONTRACTION.sub(lambda m: " not" if m.group() == "n't" else "can not", text)
        text = remove_echo(text, getattr(task, "instruction", ""))
        input_name = getattr(task, "input_name", "")
        if input_name:
            # Echoed input lines ("Text: ...") can contain label words that are not the answer.
            echo_prefix = f"{input_name.lower()}:"
            if echo_prefix in text:
                text = "\n".join(ln for ln in text.split("\n") if not ln.lstrip().startswith(echo_prefix))
        return self._strip(text.strip())

    def _strip(self, text: str) -> str:
        while True:
            text = strip_answer_prefixes(text)
            m = self._extra_prefix.match(text) if self._extra_prefix else None
            if m is None or m.end() == 0:
                return text
            text = text[m.end() :]

    def _mentions(self, text: str) -> list[Mention]:
        found: list[Mention] = []
        pos = 0
        # An anchored word counts only where no ordinary form starts ("no sarcasm" is one mention, not "no").
        if self._anchor_re is not None and self._mention.match(text) is None:
            a = self._anchor_re.match(text)
            if a is not None:
                found.append(Mention(0, a.end(), self._anchored[surface_key(a.group())], False))
                pos = a.end()
                # "yes or no": a second anchored word right after a joiner is a hedge, not free text.
                j = _ANCHOR_JOIN.match(text, pos)
                b = self._anchor_re.match(text, j.end()) if j else None
                if b is not None:
                    found.append(Mention(b.start(), b.end(), self._anchored[surface_key(b.group())], False))
                    pos = b.end()
        for m in self._mention.finditer(text, pos):
            label = self._by_key[surface_key(m.group())]
            found.append(Mention(m.start(), m.end(), label, is_negated(text, m.start(), pos)))
            pos = m.end()
        return found

    def _commit(self, text: str) -> str:
        return commit(text, self._mentions(text), self._negated_to)


def is_negated(text: str, start: int, lo: int = 0) -> bool:
    """Whether a mention starting at ``start`` has a negator within the three words before it in its clause.

    ``lo`` is the end of the previous mention: a negator never reaches across another label ("not sarcastic
    or sarcastic" does not negate the second).
    """
    clause = _BOUNDARY.split(text[max(lo, start - 60) : start])[-1]
    return any(t in _NEGATORS for t in _TOKEN.findall(clause.lower())[-3:])


def commit(text: str, mentions: list[Mention], negated_to: dict[str, str] | None = None) -> str:
    """Apply the negation, hedge and first-mention rules (module docstring) to mentions found in ``text``.

    Args:
        text: The text the mentions were found in (positions index it).
        mentions: Mentions in text order.
        negated_to: ``label -> complement`` for labels whose negation names another label.

    Returns:
        The committed label, or INVALID.
    """
    negated_to = negated_to or {}
    for i, m in enumerate(mentions):
        label = m.label
        if m.negated:
            if label not in negated_to:
                continue
            label = negated_to[label]
        clause = _BOUNDARY.split(text[max(0, m.start - 80) : m.start])[-1]
        if _UNCERTAIN.search(clause):
            return INVALID
        prev_end = m.end
        for nxt in mentions[i + 1 :]:
            nxt_label = negated_to.get(nxt.label, INVALID) if nxt.negated else nxt.label
            if nxt_label == label:
                prev_end = nxt.end
                continue
            if not nxt.negated and _JOINER.fullmatch(text, prev_end, nxt.start):
                return INVALID
            break
        return label
    return INVALID
