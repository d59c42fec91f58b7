"""Loading the text tasks from the Hugging Face hub through the ``datasets`` package (optional).

Rows map onto the same ``Example`` fields as the official files (``loaders.py``). Two differences are inherent in
the hub copies: AG News's hub ``text`` already joins title and description with a space (the files give them
apart, and the local loader joins them with ". "), and TriviaQA ids are the corpus's ``question_id`` rather than
a row index of the 3000-question subset. MELD, MUStARD and RAVDESS have no standard hub release with audio.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from casceq.errors import InputError, require
from casceq.tasks.defs import AG_NEWS_LABELS
from casceq.tasks.loaders import trivia_example, unwrap_trivia_question
from casceq.types import Example

# task -> (hub repository, config, {local split name: hub split}).
HUB_SOURCES: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "ag_news": ("fancyzhx/ag_news", None, {"test": "test", "train": "train"}),
    "sst2": ("nyu-mll/glue", "sst2", {"dev": "validation", "validation": "validation", "train": "train"}),
    "csqa": ("tau/commonsense_qa", None, {"dev": "validation", "validation": "validation", "train": "train"}),
    "triviaqa": ("mandarjoshi/trivia_qa", "rc.nocontext", {"validation": "validation", "dev": "validation"}),
}
DEFAULT_SPLIT = {"ag_news": "test", "sst2": "dev", "csqa": "dev", "triviaqa": "validation"}


def _bad(name: str, index: int, message: str) -> InputError:
    repo = HUB_SOURCES[name][0] if name in HUB_SOURCES else name
    return InputError(f"hub dataset {repo}, row {index}: {message}")


def hub_row_to_example(name: str, row: Mapping[str, Any], index: int, split: str) -> Example:
    """Map one hub row (as ``datasets`` yields it) onto an ``Example``.

    Args:
        name: Canonical task name.
        row: The row, e.g. ``{"sentence": ..., "label": 1, "idx": 3}`` for GLUE SST-2.
        index: Row index in the hub split (ids of AG News, which has no id column).
        split: The local split name the ids use (``"dev"`` for the hub's ``validation``).

    Returns:
        The example, with the same id scheme and labels as the local loader.
    """
    try:
        if name == "ag_news":
            label = row["label"]
            if not isinstance(label, int) or not 0 <= label < 4:
                raise _bad(name, index, f"label {label!r} not in 0-3")
            text = str(row["text"]).strip()
            return Example(
                id=f"ag_news-{split}-{index:06d}", task=name, text=text, label=AG_NEWS_LABELS[label]
            )
        if name == "sst2":
            if row["label"] not in (0, 1):
                raise _bad(
                    name, index, f"label {row['label']!r} is not 0/1 (the GLUE test split has no labels)"
                )
            idx = int(row.get("idx", index))
            label = "positive" if row["label"] == 1 else "negative"
            return Example(
                id=f"sst2-{split}-{idx:06d}", task=name, text=str(row["sentence"]).strip(), label=label
            )
        if name == "csqa":
            choices = dict(zip(row["choices"]["label"], row["choices"]["text"], strict=True))
            if sorted(choices) != ["A", "B", "C", "D", "E"] or row["answerKey"] not in choices:
                raise _bad(name, index, "expected choices A-E and an answerKey among them")
            return Example(
                id=str(row["id"]),
                task=name,
                text=str(row["question"]).strip(),
                label=row["answerKey"],
                choices=tuple(str(choices[k]) for k in "ABCDE"),
                meta={"question_concept": row.get("question_concept", "")},
            )
        if name == "triviaqa":
            answer = row["answer"]
            question, raw = unwrap_trivia_question(str(row["question"]))
            value = str(answer["value"])
            return trivia_example(
                f"triviaqa-{row['question_id']}", question, value, list(answer["aliases"]), raw
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(name, index, f"unexpected row shape ({exc!r})") from exc
    raise InputError(f"{name}: no standard hub release with audio; point data_dir at the official files")


def load_hub(name: str, split: str | None = None) -> list[Example]:
    """Download (or read from the ``datasets`` cache) one split of a text task from the hub.

    Raises:
        InputError: For tasks without a hub source (MELD, MUStARD, RAVDESS) or an unknown split.
        MissingDependency: When ``datasets`` is not installed.
    """
    if name not in HUB_SOURCES:
        raise InputError(f"{name}: no standard hub release with audio; point data_dir at the official files")
    repo, config, splits = HUB_SOURCES[name]
    split = split or DEFAULT_SPLIT[name]
    if split not in splits:
        raise InputError(f"{name}: unknown hub split {split!r} (known: {', '.join(splits)})")
    datasets = require("datasets", "loading tasks from the Hugging Face hub", extra="hub")
    rows = datasets.load_dataset(repo, config, split=splits[split])
    return [hub_row_to_example(name, row, i, split) for i, row in enumerate(rows)]
