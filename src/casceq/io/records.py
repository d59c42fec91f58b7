"""One interchange record <-> one ``Prediction``: field checks, label parsing, correctness.

A record is a JSON object ``{"system", "task", "example_id", "prediction", "gold"}`` with optional
``condition`` (default ``"clean"``), ``item``, ``transcript``, ``backbone``, ``label``, ``correct``, ``seconds``
and ``label_scores``. ``docs/interchange.md`` is the user-facing description; this module is its implementation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache
from typing import Any

import casceq.tasks as tasks
from casceq.audio.conditions import parse_condition
from casceq.errors import CasceqError
from casceq.tasks.base import Task
from casceq.types import CLEAN, INVALID, Example, Prediction

REQUIRED = ("system", "task", "example_id", "prediction", "gold")
"""Fields every record must have."""

OPTIONAL = ("condition", "item", "transcript", "backbone", "label", "correct", "seconds", "label_scores")
"""Fields a record may have; any other field is an error (it is most likely a misspelt one)."""

FIELD_ORDER = ("system", "task", "condition", "example_id", "item", "prediction", "gold", *OPTIONAL[2:])
"""The order in which ``to_record`` writes fields."""


class RecordError(ValueError):
    """A record is malformed; the caller adds the file and line."""


@cache
def canonical_condition(name: str) -> str:
    """Return the one spelling of a condition (``BABBLE@+15.0`` -> ``babble@15``); RecordError if invalid.

    The parser is the runner's (``casceq.audio.conditions.parse_condition``), so a file and a run folder
    that spell a condition differently still line up in ``compare``.
    """
    try:
        return parse_condition(name).name
    except CasceqError as exc:
        raise RecordError(str(exc)) from exc


@cache
def load_task(name: str) -> Task:
    """Look up a registered task by name; an unknown name raises RecordError listing the known tasks."""
    try:
        return tasks.get_task(name)
    except (LookupError, CasceqError) as exc:
        raise RecordError(f"unknown task {name!r} (known tasks: {', '.join(tasks.TASK_NAMES)})") from exc


def _string(obj: Mapping[str, Any], key: str, *, allow_int: bool = False) -> str:
    value = obj.get(key)
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(
            f"field {key!r} must be a non-empty string{' or an integer' * allow_int}, got {value!r}"
        )
    return value


def _optional_string(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordError(f"field {key!r} must be a string or null, got {value!r}")
    return value


def _gold(task: Task, value: Any) -> tuple[str, ...]:
    """Gold as a tuple: one canonical label, or (open-answer tasks) the answer aliases, canonical first."""
    if task.open_answer:
        aliases = [value] if isinstance(value, str) else value
        if (
            not isinstance(aliases, list)
            or not aliases
            or not all(isinstance(a, str) and a.strip() for a in aliases)
        ):
            raise RecordError(f"gold of open-answer task {task.name!r} must be a string or a list of strings")
        return tuple(aliases)
    if not isinstance(value, str) or value not in task.labels:
        hint = next(
            (f" (did you mean {lab!r}?)" for lab in task.labels if lab.casefold() == str(value).casefold()),
            "",
        )
        raise RecordError(f"gold {value!r} is not a label of task {task.name!r} {list(task.labels)}{hint}")
    return (value,)


def _label(task: Task, record: Mapping[str, Any], example: Example) -> str:
    if "label" in record:
        label = _string(record, "label")
        if not task.open_answer and label not in (*task.labels, INVALID):
            raise RecordError(f"label {label!r} is neither a label of task {task.name!r} nor {INVALID!r}")
        return label
    output = record["prediction"]
    if not task.open_answer and output.strip() in task.labels:
        return str(output.strip())
    try:
        return task.parse(output, example)
    except Exception as exc:  # a parser bug must not pass silently, nor crash without naming the line
        raise RecordError(f"task {task.name!r} could not parse prediction {output!r}: {exc}") from exc


def _number(record: Mapping[str, Any], key: str, name: str | None = None) -> float:
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordError(f"{name or repr(key)} must be a finite number, got {value!r}")
    return float(value)


def from_record(record: Any) -> tuple[Prediction, tuple[str, ...]]:
    """Check one decoded JSON record and turn it into a Prediction.

    Returns:
        The prediction and its gold as a tuple (for open-answer tasks every alias), so callers can check that
        all systems agree on the gold of an example.

    Raises:
        RecordError: A field is missing, unknown or of the wrong type, the task is unknown, or the gold is
            outside the task's label set.
    """
    if not isinstance(record, dict):
        raise RecordError(f"a record must be a JSON object, got {type(record).__name__}")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise RecordError(f"missing field(s) {', '.join(map(repr, missing))}")
    unknown = sorted(set(record) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise RecordError(
            f"unknown field(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(FIELD_ORDER)})"
        )
    system, task_name = _string(record, "system"), _string(record, "task")
    example_id = _string(record, "example_id", allow_int=True)
    if not isinstance(record["prediction"], str):
        raise RecordError(f"field 'prediction' must be a string, got {record['prediction']!r}")
    condition = canonical_condition(_string(record, "condition")) if "condition" in record else CLEAN
    task = load_task(task_name)
    gold = _gold(task, record["gold"])
    example = Example(id=example_id, task=task.name, text="", label=gold[0], meta={"aliases": gold})
    label = _label(task, record, example)
    correct = task.is_correct(label, example)
    if "correct" in record:
        given = record["correct"]
        if not isinstance(given, bool):
            raise RecordError(f"field 'correct' must be true or false, got {given!r}")
        if not task.open_answer and given != correct:
            raise RecordError(f"'correct' is {given} but label {label!r} vs gold {gold[0]!r} says {correct}")
        # Open answers: the producer may have matched aliases this file does not list; its judgement stands.
        correct = given
    scores = record.get("label_scores")
    if scores is not None:
        if not isinstance(scores, dict):
            raise RecordError("field 'label_scores' must be an object {label: number}")
        scores = {str(k): _number(scores, k, f"label_scores[{k!r}]") for k in scores}
    seconds = _number(record, "seconds") if record.get("seconds") is not None else 0.0
    if seconds < 0:
        raise RecordError(f"field 'seconds' must not be negative, got {seconds}")
    pred = Prediction(
        system=system,
        task=task.name,
        condition=condition,
        example_id=example_id,
        output=record["prediction"],
        label=label,
        gold=gold[0],
        transcript=_optional_string(record, "transcript"),
        label_scores=scores,
        seconds=seconds,
        backbone=_optional_string(record, "backbone"),
        correct=correct,
        item=_string(record, "item", allow_int=True) if record.get("item") is not None else None,
    )
    return pred, gold


def to_record(p: Prediction) -> dict[str, Any]:
    """Turn a prediction into its interchange record (a dict in ``FIELD_ORDER``).

    Required fields always; optional ones only when they carry information: ``label`` only when re-parsing
    ``prediction`` would not give it back, ``correct`` only for open-answer tasks (whose correctness the file's
    gold alone may not decide), ``seconds`` only when non-zero.
    """
    task = load_task(p.task)
    out: dict[str, Any] = {"system": p.system, "task": p.task, "condition": p.condition,
                           "example_id": p.example_id}  # fmt: skip
    if p.item is not None:
        out["item"] = p.item
    out.update(prediction=p.output, gold=p.gold)
    if p.transcript is not None:
        out["transcript"] = p.transcript
    if p.backbone is not None:
        out["backbone"] = p.backbone
    example = Example(id=p.example_id, task=p.task, text="", label=p.gold, meta={"aliases": (p.gold,)})
    if _label(task, {"prediction": p.output}, example) != p.label:
        out["label"] = p.label
    if task.open_answer and p.correct is not None:
        out["correct"] = p.correct
    if p.seconds:
        out["seconds"] = p.seconds
    if p.label_scores is not None:
        out["label_scores"] = dict(p.label_scores)
    return out
