"""Align prediction rows of many systems by (task, condition, example id) and check them.

Checks that turn bad input into an ``InputError`` naming the example ids at fault: duplicate rows, systems
answering different examples (unless ``intersect``), conflicting gold labels, labels outside the task's label
set, a stored ``correct`` flag that contradicts the label, and a system declaring two backbones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from casceq.errors import InputError
from casceq.stats.results import AlignedGroup
from casceq.types import INVALID, Prediction

MAX_LISTED_IDS = 5
"""How many offending example ids an error message lists."""


class TaskLike(Protocol):
    """What the statistics need of a task (``casceq.tasks.base.Task`` satisfies it)."""

    @property
    def name(self) -> str:
        """Registry name."""
        ...

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels in code order (empty for open answers)."""
        ...

    @property
    def open_answer(self) -> bool:
        """True for open QA: accuracy only."""
        ...

    @property
    def n_classes(self) -> int:
        """Number of labels C."""
        ...

    def is_correct(self, label: str, example: str) -> bool:  # type: ignore[empty-body]
        """Whether ``label`` answers an example whose gold label is ``example``."""


@dataclass(frozen=True)
class InferredTask:
    """Stand-in for a task that is not registered: labels are the sorted gold and predicted labels seen."""

    name: str
    labels: tuple[str, ...]
    open_answer: bool = False

    @property
    def n_classes(self) -> int:
        """Number of labels C."""
        return len(self.labels)

    def is_correct(self, label: str, example: str) -> bool:
        """Exact match with the gold label; ``INVALID`` is never correct."""
        return label != INVALID and label == example


def resolve_tasks(predictions: Sequence[Prediction]) -> tuple[dict[str, TaskLike], list[str]]:
    """Look every task of ``predictions`` up in the registry, inferring unregistered ones.

    Returns:
        ``(tasks by name, notes)``; a note names each task whose labels had to be inferred.
    """
    names = list(dict.fromkeys(p.task for p in predictions))
    tasks: dict[str, TaskLike] = {}
    notes: list[str] = []
    for name in names:
        found = _registered(name)
        if found is None:
            seen = {p.gold for p in predictions if p.task == name} | {
                p.label for p in predictions if p.task == name
            }
            labels = tuple(sorted(seen - {INVALID}))
            tasks[name] = InferredTask(name, labels)
            notes.append(
                f"task {name!r} is not registered: using the {len(labels)} labels seen ({', '.join(labels)})"
            )
        else:
            tasks[name] = found
    return tasks, notes


def _registered(name: str) -> TaskLike | None:
    try:
        from casceq.tasks import get_task  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        return get_task(name)  # type: ignore[no-any-return]
    except (KeyError, LookupError, ValueError, InputError):
        return None


def _ids(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    more = f" (and {len(ids) - MAX_LISTED_IDS} more)" if len(ids) > MAX_LISTED_IDS else ""
    return ", ".join(ids[:MAX_LISTED_IDS]) + more


def _is_correct(p: Prediction, task: TaskLike) -> bool:
    if task.open_answer:
        # Alias lists live with the examples, not in prediction rows: trust a stored flag when there is one.
        return bool(p.correct) if p.correct is not None else task.is_correct(p.label, p.gold)
    allowed = set(task.labels)
    if p.label != INVALID and p.label not in allowed:
        raise InputError(
            f"system {p.system!r}, task {p.task!r}, example {p.example_id!r}: label {p.label!r} is not one of "
            f"{', '.join(task.labels)} or {INVALID}"
        )
    if p.gold not in allowed:
        raise InputError(
            f"task {p.task!r}, example {p.example_id!r}: gold label {p.gold!r} is not a task label"
        )
    right = p.label == p.gold
    if p.correct is not None and p.correct != right:
        raise InputError(
            f"system {p.system!r}, task {p.task!r}, example {p.example_id!r}: stored correct={p.correct} "
            f"contradicts label {p.label!r} vs gold {p.gold!r}"
        )
    return right


def align(
    predictions: Sequence[Prediction], tasks: Mapping[str, TaskLike], *, intersect: bool = False
) -> tuple[list[AlignedGroup], list[str]]:
    """Group predictions into one :class:`AlignedGroup` per (task, condition).

    Args:
        predictions: Rows of any number of systems, tasks and conditions.
        tasks: Every task named in ``predictions``.
        intersect: Keep only example ids every system of a group answered, instead of raising.

    Returns:
        ``(groups, notes)`` in order of first appearance; systems in order of first appearance; examples
        sorted by id. ``notes`` reports ids dropped by ``intersect``.

    Raises:
        InputError: See the module docstring.
    """
    table: dict[tuple[str, str], dict[str, dict[str, Prediction]]] = {}
    for p in predictions:
        rows = table.setdefault((p.task, p.condition), {}).setdefault(p.system, {})
        if p.example_id in rows:
            raise InputError(
                f"duplicate prediction: system {p.system!r}, task {p.task!r}, condition {p.condition!r}, "
                f"example {p.example_id!r}"
            )
        rows[p.example_id] = p
    groups: list[AlignedGroup] = []
    notes: list[str] = []
    for (task_name, condition), by_system in table.items():
        task = tasks[task_name]
        id_sets = {s: set(rows) for s, rows in by_system.items()}
        union = set().union(*id_sets.values())
        shared = set.intersection(*id_sets.values())
        where = f"task {task_name!r}, condition {condition!r}"
        if shared != union:
            lacking = {s: union - ids for s, ids in id_sets.items() if union - ids}
            if not intersect:
                detail = "; ".join(f"{s} lacks {len(m)}: {_ids(m)}" for s, m in lacking.items())
                raise InputError(f"{where}: systems answered different examples ({detail}); use --intersect")
            if not shared:
                raise InputError(f"{where}: no example is answered by every system")
            notes.append(f"{where}: --intersect kept {len(shared)} of {len(union)} examples")
        ids = tuple(sorted(shared))
        systems = tuple(by_system)
        first = by_system[systems[0]]
        gold = tuple(first[i].gold for i in ids)
        labels, correct = [], []
        for s in systems:
            rows = by_system[s]
            conflict = [i for i, g in zip(ids, gold, strict=True) if rows[i].gold != g]
            if conflict:
                raise InputError(
                    f"{where}: {s!r} and {systems[0]!r} disagree on gold labels of {_ids(conflict)}"
                )
            labels.append(tuple(rows[i].label for i in ids))
            correct.append(tuple(_is_correct(rows[i], task) for i in ids))
        groups.append(AlignedGroup(task_name, condition, ids, gold, systems, tuple(labels), tuple(correct)))
    return groups, notes


@dataclass(frozen=True)
class SystemInfo:
    """What the predictions say about a system: its backbone and whether it produced transcripts."""

    name: str
    backbone: str | None
    has_transcript: bool


def system_info(predictions: Sequence[Prediction]) -> dict[str, SystemInfo]:
    """Backbone and transcript presence of every system, in order of first appearance.

    Raises:
        InputError: A system's rows declare more than one backbone.
    """
    backbones: dict[str, set[str]] = {}
    transcripts: dict[str, bool] = {}
    for p in predictions:
        seen = backbones.setdefault(p.system, set())
        if p.backbone is not None:
            seen.add(p.backbone)
        transcripts[p.system] = transcripts.get(p.system, False) or p.transcript is not None
    out = {}
    for name, seen in backbones.items():
        if len(seen) > 1:
            raise InputError(f"system {name!r} declares several backbones: {', '.join(sorted(seen))}")
        out[name] = SystemInfo(name, next(iter(seen)) if seen else None, transcripts[name])
    return out
