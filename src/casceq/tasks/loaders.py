"""Loaders of the official text-corpus formats (the files users download), one function per task.

Each ``load_<task>(folder, split)`` returns every example of one split in file order, with ids derived from the
source (row index in the file, or the corpus's own id), so an id names the same item on every machine. Bad rows
raise ``InputError`` naming the file and line. The speech corpora (MELD, MUStARD, RAVDESS) are in
``speech_loaders``. Licences differ: AG News and SST-2 are for research use, CommonsenseQA is MIT, TriviaQA
Apache-2.0.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.tasks._files import field, jsonl, need_file
from casceq.tasks.defs import AG_NEWS_LABELS
from casceq.tasks.speech_loaders import load_meld, load_mustard, load_ravdess
from casceq.types import Example


def load_ag_news(folder: Path, split: str = "test") -> list[Example]:
    r"""AG News ``{split}.csv`` (no header; class 1-4, title, description) with ``classes.txt``.

    Text is ``title + ". " + description`` with the corpus's escapes ("#36;", "\\") kept as released.
    """
    classes_path = need_file(folder, "classes.txt", "ag_news")
    classes = tuple(c.strip() for c in classes_path.read_text(encoding="utf-8").splitlines() if c.strip())
    if classes != AG_NEWS_LABELS:
        raise InputError(f"expected classes {AG_NEWS_LABELS}, found {classes}", path=str(classes_path))
    path = need_file(folder, f"{split}.csv", "ag_news")
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        for i, row in enumerate(reader):
            if len(row) != 3 or row[0].strip() not in {"1", "2", "3", "4"}:
                raise InputError(
                    "expected 3 fields: class 1-4, title, description", path=str(path), line=reader.line_num
                )
            title, desc = row[1].strip(), row[2].strip()
            out.append(
                Example(
                    id=f"ag_news-{split}-{i:06d}",
                    task="ag_news",
                    text=f"{title}. {desc}",
                    label=classes[int(row[0]) - 1],
                    meta={"title": title, "description": desc, "row": i},
                )
            )
    return out


def load_sst2(folder: Path, split: str = "dev") -> list[Example]:
    """GLUE SST-2 ``{split}.tsv`` (header ``sentence<TAB>label``; read with ``csv.QUOTE_NONE``)."""
    path = need_file(folder, f"{split}.tsv", "sst2")
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["sentence", "label"]:
            raise InputError(
                f"expected the header 'sentence<TAB>label' (labelled GLUE split), got {header}",
                path=str(path),
                line=1,
            )
        for i, row in enumerate(reader):
            if len(row) != 2 or row[1].strip() not in {"0", "1"} or not row[0].strip():
                raise InputError("expected 'sentence<TAB>0|1'", path=str(path), line=reader.line_num)
            out.append(
                Example(
                    id=f"sst2-{split}-{i:06d}",
                    task="sst2",
                    text=row[0].strip(),
                    label="positive" if row[1].strip() == "1" else "negative",
                    meta={"row": i},
                )
            )
    return out


def load_csqa(folder: Path, split: str = "dev") -> list[Example]:
    """CommonsenseQA ``{split}_rand_split.jsonl`` (official Talmor et al. format)."""
    path = need_file(folder, f"{split}_rand_split.jsonl", "csqa")
    out = []
    for line, obj in jsonl(path):
        question = field(obj, "question", dict, path, line)
        choices = field(question, "choices", list, path, line)
        try:
            by_label = {c["label"]: str(c["text"]) for c in choices}
        except (TypeError, KeyError) as exc:
            raise InputError(
                "choices must be objects with 'label' and 'text'", path=str(path), line=line
            ) from exc
        if sorted(by_label) != ["A", "B", "C", "D", "E"] or len(choices) != 5:
            raise InputError(f"expected choices A-E, got {sorted(by_label)}", path=str(path), line=line)
        answer = field(obj, "answerKey", str, path, line)
        if answer not in by_label:
            raise InputError(f"answerKey {answer!r} is not a choice label", path=str(path), line=line)
        out.append(
            Example(
                id=field(obj, "id", str, path, line),
                task="csqa",
                text=field(question, "stem", str, path, line).strip(),
                label=answer,
                choices=tuple(by_label[k] for k in "ABCDE"),
                meta={"question_concept": question.get("question_concept", "")},
            )
        )
    return out


def unwrap_trivia_question(context: str) -> tuple[str, str]:
    r"""Strip the ``Question: ...\nAnswer:`` wrapper and undo CSV double-quoting.

    About 200 TriviaQA questions are stored CSV-quoted (``"Who wrote ""Jabberwocky""?"``); the outer quotes
    and doubled inner quotes are removed so a voice does not read them. Returns (question, raw question).
    """
    q = context.strip()
    if q.startswith("Question:"):
        q = q[len("Question:") :]
    if q.endswith("Answer:"):
        q = q[: -len("Answer:")]
    raw = q.strip()
    q = raw
    if len(q) >= 2 and q[0] == '"' and q[-1] == '"' and q[1:-1].replace('""', "").count('"') == 0:
        q = q[1:-1].replace('""', '"').strip()
    return q, raw


def trivia_example(example_id: str, question: str, answer: str, aliases: list[str], raw: str) -> Example:
    """Build a TriviaQA example; aliases always include the answer value itself."""
    merged = tuple(dict.fromkeys([answer, *aliases]))
    return Example(
        id=example_id,
        task="triviaqa",
        text=question,
        label=answer,
        meta={"aliases": merged, "raw_question": raw},
    )


def load_triviaqa(folder: Path, split: str = "sm_sub") -> list[Example]:
    """TriviaQA JSON lines ``triviaqa_{split}.jsonl`` with ``context`` (or ``question``), ``answer``, ``aliases``."""
    path = need_file(folder, f"triviaqa_{split}.jsonl", "triviaqa")
    out = []
    for i, (line, obj) in enumerate(jsonl(path)):
        context = obj.get("context", obj.get("question"))
        if not isinstance(context, str) or not context.strip():
            raise InputError("missing field 'context' (or 'question')", path=str(path), line=line)
        aliases = field(obj, "aliases", list, path, line)
        if not all(isinstance(a, str) for a in aliases):
            raise InputError("aliases must be strings", path=str(path), line=line)
        question, raw = unwrap_trivia_question(context)
        answer = field(obj, "answer", str, path, line)
        out.append(trivia_example(f"triviaqa-{split}-{i:06d}", question, answer, aliases, raw))
    return out


# name -> (loader, default split, allowed splits or None for any file name).
LOCAL: dict[str, tuple[Any, str, tuple[str, ...] | None]] = {
    "ag_news": (load_ag_news, "test", None),
    "sst2": (load_sst2, "dev", None),
    "csqa": (load_csqa, "dev", None),
    "triviaqa": (load_triviaqa, "sm_sub", None),
    "meld": (load_meld, "test", ("test", "dev", "train")),
    "mustard": (load_mustard, "all", ("all",)),
    "ravdess": (load_ravdess, "all", ("all", "train", "test")),
}
