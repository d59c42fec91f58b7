"""Turn back-end outputs into ``Prediction`` rows for a task: written once for every kind of system.

Two answer modes (the issue's): ``generate`` (free text, parsed by the task's parser; the paper's mode) and
``score`` (log-likelihood of each label continuation, argmax; no parse failures). Open-answer tasks always
generate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from casceq.errors import InputError
from casceq.systems.base import AnswerMode
from casceq.tasks.base import Task
from casceq.types import INVALID, Example, Prediction

MAX_NEW_TOKENS = {"classify": 8, "open": 24}


def options_for(task: Task, example: Example) -> list[str]:
    """The continuation strings scored for one example: the task's label strings, in label order."""
    return list(task.labels)


def check_offsets(task: Task, offsets: Sequence[float] | np.ndarray, what: str = "calibration") -> np.ndarray:
    """Calibration offsets of a task as a float [C] array.

    Raises:
        InputError: Not one finite number per label of the task (the task named).
    """
    arr = np.asarray(offsets, dtype=np.float64)
    if arr.shape != (len(task.labels),) or not np.isfinite(arr).all():
        raise InputError(
            f"{task.name}: {what} offsets must be {len(task.labels)} finite numbers (one per label), "
            f"got shape {arr.shape}"
        )
    return arr


def answer_batch(
    *,
    task: Task,
    examples: Sequence[Example],
    mode: AnswerMode,
    score: Callable[[list[list[str]]], np.ndarray],
    generate: Callable[[int], list[str]],
    offsets: np.ndarray | None = None,
) -> list[tuple[str, str, dict[str, float] | None]]:
    """Answer a batch and parse it.

    Args:
        task: The task.
        examples: N examples.
        mode: ``"score"`` or ``"generate"`` (open-answer tasks always generate).
        score: Callable taking N option lists and returning [N, C] log-likelihoods.
        generate: Callable taking ``max_new_tokens`` and returning N strings.
        offsets: Optional [C] calibration offsets subtracted from the scores before argmax.

    Returns:
        N tuples ``(output, label, label_scores)``; label is one of ``task.labels``, the open answer, or INVALID.
    """
    if mode == "score" and not task.open_answer:
        scores = np.asarray(score([options_for(task, ex) for ex in examples]), dtype=np.float64)
        adjusted = scores - offsets[None, :] if offsets is not None else scores
        out: list[tuple[str, str, dict[str, float] | None]] = []
        for ex_scores, row in zip(scores, adjusted, strict=True):
            # A row with no finite score (an API that answered nothing) has no answer: argmax would make it
            # the first label.
            label = task.labels[int(np.argmax(row))] if has_answer(row) else INVALID
            out.append((label, label, {lab: float(s) for lab, s in zip(task.labels, ex_scores, strict=True)}))
        return out
    budget = MAX_NEW_TOKENS["open" if task.open_answer else "classify"]
    texts = [first_line(t) for t in generate(budget)]
    return [(t, task.parse(t, ex) if t else INVALID, None) for t, ex in zip(texts, examples, strict=True)]


def has_answer(row: np.ndarray) -> bool:
    """Whether a row of label scores picks a label: at least one finite score, and no NaN."""
    return bool(np.isfinite(row).any() and not np.isnan(row).any())


def first_line(text: str) -> str:
    """The answer post-processing shared by every system: the first line, stripped.

    The HF cascade LLM already stops at the first newline; applying the same cut here makes a speech LLM's
    answer (and any other back end's) go through exactly the same post-processing before parsing.
    """
    return text.strip().split("\n", 1)[0].strip()


def to_predictions(
    *,
    system: str,
    backbone: str,
    task: Task,
    condition: str,
    examples: Sequence[Example],
    answers: Sequence[tuple[str, str, dict[str, float] | None]],
    transcripts: Sequence[str | None],
    seconds: float,
) -> list[Prediction]:
    """Build Prediction rows, sharing the batch wall time equally among its examples."""
    per = seconds / max(len(examples), 1)
    rows = []
    for ex, (output, label, scores), tr in zip(examples, answers, transcripts, strict=True):
        rows.append(
            Prediction(
                system=system,
                task=task.name,
                condition=condition,
                example_id=ex.id,
                output=output,
                label=label,
                gold=ex.label,
                transcript=tr,
                label_scores=scores,
                seconds=per,
                backbone=backbone,
                correct=task.is_correct(label, ex),
                item=ex.meta.get("base_id"),  # the voices of one example are one item (run/items.py)
            )
        )
    return rows
