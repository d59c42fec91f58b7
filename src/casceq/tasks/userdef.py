"""User-defined tasks from a TOML file (``--tasks-file``; ``tasks_file`` in an experiment TOML).

One table per task; only ``labels`` and ``text_sufficient`` are required (docs/tasks.md has the full schema)::

    [tasks.intent3]
    labels = ["alarm", "weather", "music"]
    text_sufficient = true
    synonyms = { "wake-up call" = "alarm" }
    [tasks.intent3.data]
    path = "intent3.csv"            # CSV, JSONL or Parquet, relative to the tasks file
    text_column = "text"
    label_column = "label"

Other kinds: ``letters = ["A", "B", "C", "D"]`` (multiple choice; ``data.choices_column``), ``open_answer = true``
(``data.aliases_column``). Data can also come from ``data.hf`` + ``data.split`` (the hub, online) or from
``data.audiofolder`` (recorded speech in the Hugging Face audiofolder layout: ``audio.py``).

A definition the parser cannot serve is refused with the task and the reason: no labels, duplicate labels
(compared as the parser sees them: case, spaces and punctuation ignored), a synonym of two labels or of an
unknown label, and any label or synonym that the task's own parser does not read back as its label.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casceq.errors import InputError
from casceq.tasks.base import Task
from casceq.tasks.choices import LETTERS, ChoiceParser
from casceq.tasks.parsing import LabelParser, parse_open, surface_key
from casceq.types import INVALID

TASK_KEYS = frozenset(
    {
        "labels",
        "letters",
        "open_answer",
        "text_sufficient",
        "instruction",
        "input_name",
        "prompt",
        "synonyms",
        "anchored",
        "negated_to",
        "extra_prefix",
        "data",
    }
)
DATA_KEYS = frozenset(
    {
        "path",
        "format",
        "hf",
        "config",
        "split",
        "audiofolder",
        "text_column",
        "label_column",
        "id_column",
        "choices_column",
        "aliases_column",
        "label_names",
    }
)
PROMPT_FIELDS = ("instruction", "input_name", "text", "choices")
"""The placeholders a prompt template may use."""


@dataclass(frozen=True)
class DataSource:
    """Where a user task's examples come from (exactly one of ``path``, ``hf``, ``audiofolder``).

    Attributes:
        path: A CSV, JSONL or Parquet file (absolute; resolved against the tasks file).
        hf: A Hugging Face dataset id (needs ``datasets`` and a network).
        audiofolder: A folder of recorded speech with ``metadata.csv`` or ``metadata.jsonl``.
        config: Hub dataset configuration name.
        split: Hub split (default ``test``).
        text_column: Column of the text a voice speaks and a text system reads.
        label_column: Column of the gold label (the answer, for open tasks).
        id_column: Column of a stable example id (default: ``<task>-<row index>``).
        choices_column: Column of the answer options (a list; in CSV a ``|``-separated string).
        aliases_column: Column of accepted answers of open tasks (a list, or ``|``-separated).
        label_names: Names of integer labels in order (``[negative, positive]`` for 0/1 columns).
        fmt: ``csv``, ``jsonl`` or ``parquet`` (default: from the file suffix).
    """

    path: str | None = None
    hf: str | None = None
    audiofolder: str | None = None
    config: str | None = None
    split: str = "test"
    text_column: str = "text"
    label_column: str = "label"
    id_column: str | None = None
    choices_column: str | None = None
    aliases_column: str | None = None
    label_names: tuple[str, ...] = ()
    fmt: str | None = None


def _content_digest(data: DataSource) -> str | None:
    """SHA-256 of a data file, or of an audiofolder's metadata files (None when there is none to read)."""
    import hashlib

    if data.path is not None:
        files = [Path(data.path)]
    elif data.audiofolder is not None:
        files = sorted(Path(data.audiofolder).glob("metadata.*"))
    else:
        return None
    digest = hashlib.sha256()
    for f in files:
        try:
            digest.update(f.read_bytes())
        except OSError:  # a missing file is reported where the data is loaded
            return None
    return digest.hexdigest()


@dataclass(frozen=True)
class UserTask:
    """A task read from a tasks file: the ``Task`` and where its data comes from."""

    task: Task
    data: DataSource | None
    source_file: str

    def signature(self) -> tuple[object, ...]:
        """Everything that defines the task except where the file is (two copies of a file compare equal).

        Data paths are compared by file name: a copy of the tasks file sits next to a copy of its data. Their
        content is compared by :meth:`same_data`.
        """
        t, d = self.task, self.data
        where = None
        if d is not None:
            local = d.path or d.audiofolder
            where = (Path(local).name if local else None, d.hf, d.config, d.split, d.text_column, d.label_column,
                     d.id_column, d.choices_column, d.aliases_column, d.label_names, d.fmt)  # fmt: skip
        return (t.labels, t.text_sufficient, t.open_answer, t.instruction, t.input_name, t.synonyms, t.template,
                type(t.parser).__name__, where)  # fmt: skip

    def same_data(self, other: UserTask) -> bool:
        """False when both data files (or audiofolder metadata) can be read and their contents differ.

        A copy whose data was edited is another task: registering both, the first would silently win.
        """
        if self.data is None or other.data is None:
            return True
        mine, theirs = _content_digest(self.data), _content_digest(other.data)
        return mine is None or theirs is None or mine == theirs


def _one_of(labels: tuple[str, ...]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]


def default_instruction(labels: tuple[str, ...], *, letters: bool, open_answer: bool) -> str:
    """The built-ins' instruction style for a label set (asks for exactly one label)."""
    if open_answer:
        return "Answer the following question. Answer with only the answer, in as few words as possible."
    if letters:
        return (
            "Answer the following multiple-choice question. "
            f"Answer with exactly one letter: {_one_of(labels)}."
        )
    return f"Classify the following text. Answer with exactly one of: {_one_of(labels)}."


class _Bad:
    """Builds errors that name the tasks file and the task."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name

    def __call__(self, message: str) -> InputError:
        return InputError(f"task {self.name!r}: {message}", path=str(self.path))


def _strings(value: Any, what: str, bad: _Bad) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise bad(f"{what} must be a list of non-empty strings, got {value!r}")
    return tuple(v.strip() for v in value)


def _pairs(value: Any, what: str, bad: _Bad) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise bad(f"{what} must be a table of strings (surface form = label), got {value!r}")
    return tuple((k, v) for k, v in value.items())


def check_labels(labels: tuple[str, ...], synonyms: tuple[tuple[str, str], ...], bad: _Bad) -> None:
    """Refuse label sets the parser cannot serve: empty, duplicate, or a synonym that names two labels."""
    if not labels:
        raise bad("empty label set: give at least two labels (or open_answer = true)")
    if len(labels) < 2:
        raise bad(f"a classification task needs at least two labels, got {list(labels)}")
    seen: dict[str, str] = {}
    for lab in labels:
        key = surface_key(lab)
        if not key:
            raise bad(f"label {lab!r} has no letters or digits; the parser cannot find it in an answer")
        if key in seen:
            raise bad(f"duplicate label: {lab!r} and {seen[key]!r} are the same to the parser ({key!r})")
        seen[key] = lab
    for surface, lab in synonyms:
        if lab not in labels:
            raise bad(f"synonym {surface!r} maps to {lab!r}, which is not a label {list(labels)}")
        key = surface_key(surface)
        if not key:
            raise bad(f"synonym {surface!r} has no letters or digits")
        other = seen.get(key)
        if other is not None and other != lab:
            raise bad(f"synonym {surface!r} of {lab!r} is also {other!r} to the parser: ambiguous")
        seen[key] = lab


def check_round_trip(task: Task, bad: _Bad) -> None:
    """Every label and synonym must parse back to its own label, bare and after "Answer:"."""
    forms = [(lab, lab) for lab in task.labels] + list(task.synonyms)
    for surface, lab in forms:
        for answer in (surface, f"Answer: {surface}"):
            got = task.parse(answer)
            if got != lab:
                shown = "INVALID" if got == INVALID else repr(got)
                raise bad(
                    f"the parser cannot tell {lab!r} from the other labels: the answer {answer!r} parses "
                    f"to {shown} (rename the label or drop the synonym)"
                )


def _check_template(template: str, bad: _Bad) -> None:
    import string

    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:  # an unmatched brace: str.format would fail on every example
        message = (
            f"prompt template is not a valid format string ({exc}; write a literal brace as {{{{ or }}}})"
        )
        raise bad(message) from exc
    for _, name, _, _ in fields:
        if name is not None and name not in PROMPT_FIELDS:
            raise bad(f"prompt template uses {{{name}}}; known placeholders: {', '.join(PROMPT_FIELDS)}")
    if "{text}" not in template:
        raise bad("prompt template must contain {text}")


def _data(raw: Any, base: Path, bad: _Bad) -> DataSource | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise bad("[data] must be a table")
    unknown = sorted(set(raw) - DATA_KEYS)
    if unknown:
        raise bad(f"unknown data key(s) {unknown}; known: {sorted(DATA_KEYS)}")
    kinds = [k for k in ("path", "hf", "audiofolder") if raw.get(k)]
    if len(kinds) != 1:
        raise bad(f"[data] needs exactly one of path, hf, audiofolder (got {kinds or 'none'})")
    for key in ("path", "hf", "audiofolder", "format", "config", "split", "text_column", "label_column",
                "id_column", "choices_column", "aliases_column"):  # fmt: skip
        if key in raw and not isinstance(raw[key], str):
            raise bad(f"data.{key} must be a string, got {raw[key]!r}")
    # A tasks file is the user's own configuration, like a run TOML: its data may live anywhere (absolute or
    # ../ paths are allowed). The audiofolder's metadata, which is data, stays confined to its folder.
    local = {k: str((base / raw[k]).resolve()) for k in ("path", "audiofolder") if raw.get(k)}
    label_names = _strings(raw["label_names"], "label_names", bad) if "label_names" in raw else ()
    return DataSource(
        path=local.get("path"),
        hf=raw.get("hf"),
        audiofolder=local.get("audiofolder"),
        config=raw.get("config"),
        split=str(raw.get("split", "test")),
        text_column=str(raw.get("text_column", "text")),
        label_column=str(raw.get("label_column", "label")),
        id_column=raw.get("id_column"),
        choices_column=raw.get("choices_column"),
        aliases_column=raw.get("aliases_column"),
        label_names=label_names,
        fmt=raw.get("format"),
    )


def _labels(spec: Mapping[str, Any], bad: _Bad) -> tuple[tuple[str, ...], bool, bool]:
    """(labels, letters?, open answer?) of a task table, checked for the kind of task."""
    open_answer = bool(spec.get("open_answer", False))
    letters = "letters" in spec
    if open_answer and ("labels" in spec or letters):
        raise bad("an open-answer task has no labels or letters")
    if letters and "labels" in spec:
        raise bad("give labels or letters, not both (letters name the options of a multiple-choice task)")
    if open_answer:
        return (), False, True
    labels = _strings(spec.get("letters" if letters else "labels", []), "labels", bad)
    if letters and labels != LETTERS[: len(labels)]:
        raise bad(f"letters must be consecutive from A (the option parser reads A-E), got {list(labels)}")
    return labels, letters, False


def _parser(
    spec: Mapping[str, Any], labels: tuple[str, ...], letters: bool, open_answer: bool, bad: _Bad
) -> Any:
    """The answer parser of a task table: alias match, option letters, or a ``LabelParser``."""
    if open_answer:
        return parse_open
    if letters:
        return ChoiceParser(labels)
    try:
        return LabelParser(
            labels,
            _pairs(spec.get("synonyms"), "synonyms", bad),
            anchored=_pairs(spec.get("anchored"), "anchored", bad),
            negated_to=_pairs(spec.get("negated_to"), "negated_to", bad),
            extra_prefix=spec.get("extra_prefix"),
        )
    except (ValueError, re.error, TypeError) as exc:
        raise bad(str(exc)) from exc


def parse_task(name: str, spec: Mapping[str, Any], path: Path) -> UserTask:
    """Turn one ``[tasks.<name>]`` table into a checked ``UserTask`` (errors name the file and task)."""
    bad = _Bad(path, name)
    unknown = sorted(set(spec) - TASK_KEYS)
    if unknown:
        raise bad(f"unknown key(s) {unknown}; known: {sorted(TASK_KEYS)}")
    if not isinstance(spec.get("text_sufficient"), bool):
        raise bad("text_sufficient = true|false is required (does the transcript alone carry the answer?)")
    labels, letters, open_answer = _labels(spec, bad)
    synonyms = _pairs(spec.get("synonyms"), "synonyms", bad)
    if not open_answer:
        check_labels(labels, synonyms, bad)
    default = default_instruction(labels, letters=letters, open_answer=open_answer)
    template = spec.get("prompt")
    if template is not None:
        _check_template(str(template), bad)
    task = Task(
        name,
        labels,
        spec["text_sufficient"],
        open_answer,
        str(spec.get("instruction") or default),
        str(spec.get("input_name", "Question" if (letters or open_answer) else "Text")),
        synonyms,
        _parser(spec, labels, letters, open_answer, bad),
        None if template is None else str(template),
    )
    if not open_answer and not letters:
        check_round_trip(task, bad)
    return UserTask(task, _data(spec.get("data"), path.parent, bad), str(path))


def read_tasks_file(path: str | Path) -> tuple[UserTask, ...]:
    """Read and check every task of a tasks file.

    Raises:
        InputError: Missing file, bad TOML, or a bad definition (the file and task are named).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("tasks file not found", path=str(p))
    try:
        # utf-8-sig: Windows editors start a file with a BOM, which TOML itself does not allow.
        doc = tomllib.loads(p.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not a valid TOML file: {exc}", path=str(p)) from exc
    tasks = doc.get("tasks")
    if not isinstance(tasks, Mapping) or not tasks:
        raise InputError("no [tasks.<name>] tables", path=str(p))
    out = []
    for name, spec in tasks.items():
        if not isinstance(spec, Mapping):
            raise InputError(f"tasks.{name} must be a table", path=str(p))
        if not name or not all(ch.isalnum() or ch in "_-" for ch in name):
            raise InputError(f"task name {name!r}: use letters, digits, '_' and '-'", path=str(p))
        out.append(parse_task(name, spec, p))
    return tuple(out)


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _toml_table(pairs: Sequence[tuple[str, str]]) -> str:
    return "{ " + ", ".join(f"{_toml_str(k)} = {_toml_str(v)}" for k, v in pairs) + " }"


def task_to_toml(task: Task, name: str | None = None) -> str:
    """Write a task (built-in or user) as a ``[tasks.<name>]`` table of the tasks-file schema.

    Reading the table back gives a task with the same labels, instruction, prompt, synonyms and parser rules.
    """
    lines = [f"[tasks.{name or task.name}]"]
    if task.open_answer:
        lines.append("open_answer = true")
    elif isinstance(task.parser, ChoiceParser):
        lines.append(f"letters = [{', '.join(_toml_str(x) for x in task.labels)}]")
    else:
        lines.append(f"labels = [{', '.join(_toml_str(x) for x in task.labels)}]")
    lines.append(f"text_sufficient = {'true' if task.text_sufficient else 'false'}")
    lines.append(f"instruction = {_toml_str(task.instruction)}")
    lines.append(f"input_name = {_toml_str(task.input_name)}")
    if task.template is not None:
        lines.append(f"prompt = {_toml_str(task.template)}")
    if task.synonyms:
        lines.append(f"synonyms = {_toml_table(task.synonyms)}")
    parser = task.parser
    if isinstance(parser, LabelParser):
        if parser.anchored:
            lines.append(f"anchored = {_toml_table(parser.anchored)}")
        if parser.negated_to:
            lines.append(f"negated_to = {_toml_table(parser.negated_to)}")
        if parser.extra_prefix:
            lines.append(f"extra_prefix = {_toml_str(parser.extra_prefix)}")
    return "\n".join(lines) + "\n"
