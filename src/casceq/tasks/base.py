"""The Task definition: labels, prompt, answer parser. Concrete tasks live in ``casceq.tasks.defs``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from casceq.tasks.parsing import alias_match
from casceq.types import INVALID, Example

Parser = Callable[[str, "Task", Example | None], str]


@dataclass(frozen=True)
class Task:
    """A classification or open-answer task.

    Attributes:
        name: Registry name (``"sst2"``, ``"ag_news"``, ``"csqa"``, ``"triviaqa"``, ``"meld"``, ``"mustard"``,
            ``"ravdess"``).
        labels: Canonical label strings in a fixed order (CSQA: ``("A", ..., "E")``); empty for open answers.
        text_sufficient: Whether the transcript alone carries the answer (the paper's split).
        open_answer: True for open QA (TriviaQA): accuracy by alias match, no kappa.
        instruction: The instruction that asks for exactly one label (the paper's prompt style).
        input_name: How the prompt names the input ("Text", "Utterance", "Question").
        synonyms: Extra surface forms mapped to canonical labels (lower-case keys).
        parser: Function ``(output, task, example) -> label or INVALID``.
        template: A prompt template with ``{instruction}``, ``{input_name}``, ``{text}`` and ``{choices}``
            (user tasks); None for the built-in layout.
    """

    name: str
    labels: tuple[str, ...]
    text_sufficient: bool
    open_answer: bool
    instruction: str
    input_name: str
    synonyms: tuple[tuple[str, str], ...]
    parser: Parser
    template: str | None = None

    @property
    def n_classes(self) -> int:
        """Number of labels C (the chance error overlap is 1/(C-1))."""
        return len(self.labels)

    def prompt(self, text: str, example: Example | None = None) -> str:
        """Build the user message for one input text (gold text, transcript or lens text).

        Multiple-choice tasks list the choices of ``example`` after the question.
        """
        choices = ""
        if example is not None and example.choices:
            choices = "\n".join(
                f"{letter}. {c}" for letter, c in zip(self.labels, example.choices, strict=False)
            )
        if self.template is not None:
            return self.template.format(
                instruction=self.instruction, input_name=self.input_name, text=text.strip(), choices=choices
            )
        body = f"{self.instruction}\n\n{self.input_name}: {text.strip()}"
        if choices:
            body += "\n" + choices
        return body + "\nAnswer:"

    def parse(self, output: str, example: Example | None = None) -> str:
        """Turn a free-text model answer into one of ``labels`` (or the answer for open tasks) or INVALID."""
        return self.parser(output, self, example)

    def is_correct(self, label: str, example: Example | str) -> bool:
        """Whether a parsed label is right. Open-answer tasks match normalised aliases."""
        if label == INVALID:
            return False
        if self.open_answer:
            aliases = (
                example.meta.get("aliases", (example.label,)) if isinstance(example, Example) else (example,)
            )
            return alias_match(label, aliases)
        gold = example.label if isinstance(example, Example) else example
        return label == gold
