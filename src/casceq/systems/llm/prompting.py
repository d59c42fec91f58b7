"""How a user message (``Task.prompt``) becomes the text a causal LM continues, with optional k-shot examples.

Two formats:

- ``chat``: the tokenizer's chat template (SmolLM2-Instruct). Shots become earlier user/assistant turns; the
  answer starts right after the generation prompt, so an option is scored without a leading space.
- ``plain``: for base models without a chat template (Gemma 3 270M). The instruction paragraph is written once,
  then each shot's body with its answer after ``Answer:``, then the query; options follow ``" "``.

Few-shot examples must come from items that are not evaluated: ``few_shot_examples`` draws them from the *end*
of the task's seeded ranking (``casceq.tasks.sample_rank``), so with the run's seed they are disjoint from its
subsample (which takes the start), and it drops any ``exclude_ids`` too. Labels are balanced round-robin, which
keeps a tiny model from copying the majority label of its shots.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from casceq.tasks import load_examples, sample_rank
from casceq.tasks.base import Task
from casceq.tasks.defs import TASKS

Shot = tuple[str, str]
"""One k-shot example: (user message from ``Task.prompt``, answer text)."""

ChatMode = Literal["auto", "chat", "plain", "chatml"]

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML, for chat models whose tokenizer carries no template (Qwen-7B-Chat: its remote code formats turns)."""
CHATML_SYSTEM = "You are a helpful assistant."
"""The default system message of Qwen's ChatML models (Qwen-7B-Chat's ``make_context``; Qwen2-Audio's template)."""


@dataclass(frozen=True)
class PromptFormat:
    """How prompts are rendered for one model.

    Attributes:
        chat: Use the tokenizer's chat template.
        system: Optional system message (chat only; None keeps the template's default).
    """

    chat: bool
    system: str | None = None

    @property
    def option_sep(self) -> str:
        """Text between the rendered context and an option: none after a chat generation prompt, else a space."""
        return "" if self.chat else " "


def choose_format(tokenizer: Any, mode: ChatMode = "auto", system: str | None = None) -> PromptFormat:
    """Pick chat or plain rendering: ``auto`` uses the chat template when the tokenizer has one.

    ``chatml`` installs ``CHATML_TEMPLATE`` on the tokenizer (and Qwen's default system message unless one is
    given): the explicit template of a chat model whose tokenizer has none.
    """
    if mode not in ("auto", "chat", "plain", "chatml"):
        raise ValueError(f"chat_template must be 'auto', 'chat', 'plain' or 'chatml', got {mode!r}")
    if mode == "chatml":
        tokenizer.chat_template = CHATML_TEMPLATE
        return PromptFormat(chat=True, system=CHATML_SYSTEM if system is None else system)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if mode == "chat" and not has_template:
        raise ValueError("chat_template='chat' but the tokenizer has no chat template")
    return PromptFormat(chat=has_template if mode == "auto" else mode == "chat", system=system)


def _head_body(prompt: str) -> tuple[str, str]:
    head, sep, body = prompt.partition("\n\n")
    return (head, body) if sep else ("", prompt)


def render(tokenizer: Any, fmt: PromptFormat, prompt: str, shots: Sequence[Shot] = ()) -> str:
    """Return the context string (special tokens included for chat) after which the answer begins.

    Args:
        tokenizer: A transformers tokenizer (its chat template is used in chat mode).
        fmt: The prompt format.
        prompt: The user message (``Task.prompt(text, example)``).
        shots: k (user message, answer) examples shown first.
    """
    if fmt.chat:
        messages: list[dict[str, str]] = []
        if fmt.system is not None:
            messages.append({"role": "system", "content": fmt.system})
        for user, answer in shots:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": prompt})
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    head, body = _head_body(prompt)
    parts: list[str] = []
    shared = all(_head_body(user)[0] == head for user, _ in shots)
    if head and shared:
        # The instruction once, then "Text: ...\nAnswer: label" blocks: shorter, and the pattern a base model
        # continues best.
        parts.append(head)
        parts += [f"{_head_body(user)[1]} {answer}" for user, answer in shots]
        parts.append(body)
    else:
        parts += [f"{user} {answer}" for user, answer in shots]
        parts.append(prompt)
    return "\n\n".join(parts)


def encode(tokenizer: Any, fmt: PromptFormat, text: str) -> list[int]:
    """Return the token ids of a rendered context.

    A chat template writes its own special tokens; plain text gets the tokenizer's (Gemma's ``<bos>``).
    """
    return list(tokenizer(text, add_special_tokens=not fmt.chat)["input_ids"])


def option_ids(tokenizer: Any, fmt: PromptFormat, ctx: str, ctx_ids: Sequence[int], option: str) -> list[int]:
    """Token ids of ``option`` continuing ``ctx`` (``ctx_ids`` = ``encode(ctx)``), as the model would read them.

    The whole text is tokenised and the context's tokens cut off, so the option is split as it is in running
    text; if the tokenizer merges across the boundary, the option's own tokens are used after the unchanged
    context.
    """
    whole = encode(tokenizer, fmt, ctx + fmt.option_sep + option)
    if whole[: len(ctx_ids)] == list(ctx_ids) and len(whole) > len(ctx_ids):
        return whole[len(ctx_ids) :]
    return list(tokenizer(fmt.option_sep + option, add_special_tokens=False)["input_ids"])


def task_of_prompt(prompt: str, tasks: Iterable[Task] | None = None) -> Task | None:
    """Return the task whose instruction starts ``prompt`` (every ``Task.prompt`` does), or None."""
    if tasks is None:
        tasks = TASKS
    for task in tasks:
        if task.instruction and prompt.startswith(task.instruction):
            return task
    return None


def few_shot_examples(
    task: Task, exclude_ids: Iterable[str] = (), k: int = 4, seed: int = 0, split: str | None = None
) -> tuple[Shot, ...]:
    """K label-balanced (prompt, answer) shots from items outside the evaluated set.

    Items are taken from the end of the seeded ranking that ``load_examples(n=..., seed=seed)`` takes its
    subsample from the start of, so the shots never overlap a run's items when both use the same seed; any
    ``exclude_ids`` are dropped as well.

    Args:
        task: The task (its ``prompt`` renders the shots' user messages).
        exclude_ids: Example ids that must not be used (the evaluated items).
        k: Number of shots.
        seed: The ranking seed (use the run's seed).
        split: Source split (default: the task's default split, which is the only one for most tasks offline).

    Returns:
        k shots, labels cycling in ``task.labels`` order (fewer when the pool is too small).
    """
    if k <= 0:
        return ()
    excluded = set(exclude_ids)
    pool = [ex for ex in load_examples(task.name, split=split) if ex.id not in excluded]
    pool.sort(key=lambda ex: sample_rank(ex.id, seed), reverse=True)
    by_label: dict[str, list[Any]] = {}
    for ex in pool:
        by_label.setdefault(ex.label, []).append(ex)
    order = [lab for lab in task.labels if lab in by_label] or list(by_label)
    picked: list[Any] = []
    i = 0
    while len(picked) < k and any(by_label[lab] for lab in order):
        lab = order[i % len(order)]
        if by_label[lab]:
            picked.append(by_label[lab].pop(0))
        i += 1
    # Interleave deterministically but not in a fixed label cycle the model could learn to continue.
    picked.sort(key=lambda ex: sample_rank(ex.id, seed + 1))
    return tuple((task.prompt(ex.text, ex), ex.label) for ex in picked)


class AutoShots:
    """Automatic k-shot examples per task, for back ends that only see prompts.

    The task is recognised from the prompt's instruction (``task_of_prompt``); its shots are drawn once with
    ``few_shot_examples`` and reused for every prompt of that task.

    Args:
        few_shot: k for every task, or a mapping task name -> k (tasks not in it: zero-shot).
        seed: Ranking seed of the shots (use the run's seed: shots then never overlap its items).
        exclude_ids: Example ids never used as shots (the evaluated items).
    """

    def __init__(
        self, few_shot: int | Mapping[str, int] = 0, seed: int = 0, exclude_ids: Iterable[str] = ()
    ) -> None:
        self.few_shot = dict(few_shot) if isinstance(few_shot, Mapping) else few_shot
        self.seed = seed
        self.exclude_ids = set(exclude_ids)
        self._cache: dict[str, tuple[Shot, ...]] = {}

    def k_for(self, task_name: str) -> int:
        """Return the number of shots for a task."""
        return self.few_shot.get(task_name, 0) if isinstance(self.few_shot, dict) else self.few_shot

    def __call__(self, prompt: str) -> tuple[Shot, ...]:
        """Return the shots for the task whose instruction starts ``prompt`` (``()`` when none or k = 0)."""
        if not self.few_shot:
            return ()
        task = task_of_prompt(prompt)
        if task is None or self.k_for(task.name) <= 0:
            return ()
        if task.name not in self._cache:
            self._cache[task.name] = few_shot_examples(
                task, self.exclude_ids, self.k_for(task.name), self.seed
            )
        return self._cache[task.name]
