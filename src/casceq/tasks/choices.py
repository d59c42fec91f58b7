"""Multiple-choice answer parsing (CommonsenseQA): a letter or a choice text -> the option letter, or INVALID.

Letters are read where they can only be option names: at the start of the answer ("B", "(B)", "B.", "b)",
"Answer: B"), in parentheses anywhere ("(c)"), after "option"/"choice"/"letter"/"answer is", and as a bare
capital B-E anywhere (a capital "A" followed by a lower-case word is the article: "A bookstore."). The first
committed letter wins; "B or C" and "B/C" are hedges (INVALID), "not A" is dropped (``parsing.commit``).
When the text after a leading letter is exactly another option's text ("A Bookstore" with B = bookstore), a
capital A read as an article defers to the text; any other disagreement is INVALID.
Without letters, the answer's first line must equal one choice after TriviaQA normalisation, or its first sentence
must name exactly one choice (as a whole-word span, not negated, the longer of nested choices); else INVALID.
"""

from __future__ import annotations

import re

from casceq.tasks.open_answer import normalize_answer
from casceq.tasks.parsing import Mention, commit, is_negated
from casceq.tasks.text import clean_output, remove_echo, strip_answer_prefixes
from casceq.types import INVALID, Example

LETTERS = ("A", "B", "C", "D", "E")

_NOT_WORD = r"(?![\w'’-])"
# "a" followed by a word is the article ("answer is a bank"), unless the word joins options ("a or b").
_NO_ARTICLE = r"(?!\s+(?!(?:or|and|nor|vs)\b)[a-z])"
_LETTER = re.compile(
    r"^\(?(?P<start>[A-Ea-e])\)?(?=[.:)\]]|\s*$|\s*\n)(?!\.[a-z]\.)"  # "B", "(B)", "b.", "B:" at the start
    r"|\((?P<paren>[A-Ea-e])\)"  # "(c)" anywhere
    r"|\b(?:option|choice|letter|answer\s+is|answer\s*:)\s*\(?(?P<kw>[A-Ea-e])"
    + _NOT_WORD
    + _NO_ARTICLE
    + r"|(?<![\w'’-])(?P<bare>[B-E]"
    + _NOT_WORD
    + r"|A"
    + _NOT_WORD
    + _NO_ARTICLE
    + ")",
    re.IGNORECASE,
)
_AFTER_LETTER = re.compile(r"^\(?[A-Ea-e]\)?(?P<sep>[.:)\]]?)\s*(?P<rest>[^\n]*)")
_OPTION_LINE = re.compile(r"^\s*\(?([A-Ea-e])[.):]\s*(.+?)\s*$")
_QUESTION_LINE = re.compile(r"^\s*question\s*:", re.IGNORECASE)
_SENTENCE = re.compile(r"[.!?\n]")


class ChoiceParser:
    """Callable parser (``Task.parser`` signature) for lettered multiple choice.

    Args:
        letters: The option letters, in choice order.
    """

    def __init__(self, letters: tuple[str, ...] = LETTERS) -> None:
        self.letters = letters

    def __call__(self, output: str, task: object = None, example: Example | None = None) -> str:
        """Parse one output into an option letter or INVALID."""
        text = clean_output(output, lower=False)
        text = remove_echo(text, getattr(task, "instruction", ""))
        choices = tuple(example.choices) if example is not None else ()
        lines = [ln for ln in text.split("\n") if ln.strip() and not _QUESTION_LINE.match(ln)]
        text = strip_answer_prefixes(
            "\n".join(self._drop_option_list(lines, choices)).strip(), multiple_choice=True
        )
        if not text:
            return INVALID
        mentions = self._letter_mentions(text)
        if mentions:
            label = commit(text, mentions)
            if label != INVALID and mentions[0].start == 0:
                label = self._check_leading(text, label, choices)
            return label
        return self._by_text(text, choices)

    def _drop_option_list(self, lines: list[str], choices: tuple[str, ...]) -> list[str]:
        """Remove an echoed option list: two or more lines "L. <text of option L>" are not an answer."""
        if not choices:
            return lines
        listed = set()
        for i, line in enumerate(lines):
            m = _OPTION_LINE.match(line)
            if m and m.group(1).upper() in self.letters:
                k = self.letters.index(m.group(1).upper())
                if k < len(choices) and normalize_answer(m.group(2)) == normalize_answer(choices[k]):
                    listed.add(i)
        return [ln for i, ln in enumerate(lines) if i not in listed] if len(listed) >= 2 else lines

    def _letter_mentions(self, text: str) -> list[Mention]:
        found: list[Mention] = []
        for m in _LETTER.finditer(text):
            group = m.lastgroup or "bare"
            if group == "bare" and not m.group(group).isupper():
                continue  # only capital bare letters are option names
            letter = m.group(group).upper()
            if letter in self.letters:
                lo = found[-1].end if found else 0
                found.append(Mention(m.start(group), m.end(group), letter, is_negated(text, m.start(), lo)))
        return found

    def _check_leading(self, text: str, letter: str, choices: tuple[str, ...]) -> str:
        """Reconcile a leading letter with the option text that follows it ("B. library")."""
        if not choices:
            return letter
        after = _AFTER_LETTER.match(text)
        rest = normalize_answer(after.group("rest")) if after else ""
        if not rest:
            return letter
        matching = [i for i, c in enumerate(choices) if normalize_answer(c) == rest]
        if not matching or self.letters[matching[0]] == letter:
            return letter
        if letter == "A" and after is not None and not after.group("sep") and text[0] == "A":
            return self.letters[matching[0]]  # "A Bookstore": the article, then option B's text
        return INVALID

    def _by_text(self, text: str, choices: tuple[str, ...]) -> str:
        """Match choice texts when the output names no letter."""
        if not choices:
            return INVALID
        normed = [normalize_answer(c) for c in choices]
        first_line = normalize_answer(text.split("\n", 1)[0])
        exact = [i for i, c in enumerate(normed) if c and c == first_line]
        if len(exact) == 1:
            return self.letters[exact[0]]
        sentence = _SENTENCE.split(text, 1)[0]
        padded = f" {normalize_answer(sentence)} "
        lowered = sentence.lower()
        named = set()
        for i, c in enumerate(normed):
            if not c or f" {c} " not in padded:
                continue
            if any(j != i and f" {c} " in f" {d} " and f" {d} " in padded for j, d in enumerate(normed)):
                continue  # nested choices ("cow" inside "dead cows"): the longer one is the mention
            pos = lowered.find(c.split()[0])
            if pos >= 0 and is_negated(lowered, pos):
                continue
            named.add(i)
        return self.letters[named.pop()] if len(named) == 1 else INVALID
