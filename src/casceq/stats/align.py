"""Align prediction rows of many systems by (task, condition, example id) and check them.

Checks that turn bad input into an ``InputError`` naming the example ids at fault: duplicate rows, systems
answering different examples (unless ``intersect``), conflicting gold labels or items, labels outside the
task's label set, a stored ``correct`` flag that contradicts the label, and a system declaring two backbones.

Items: an example's item is the ``item`` any system's row gives it (all that give one must agree); an example
no row gives an item is an item of its own (its id, prefixed so it cannot collide with a named item).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from casceq.errors import InputError
from casceq.stats.results import AlignedGroup
from casceq.tasks import get_task
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
        return get_task(name)
    except (KeyError, LookupError, ValueError, InputError):
        return None


def _ids(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    more = f" (and {len(ids) - MAX_LISTED_IDS} more)" if len(ids) > MAX_LISTED_IDS else ""
    return ", ".join(ids[:MAX_LISTED_IDS]) + more


def _score(rows: list[Prediction], gold: tuple[str, ...], task: TaskLike) -> tuple[bool, ...]:
    """Correctness of one system's aligned rows, validating labels and stored ``correct`` flags."""
    if task.open_answer:
        # Alias lists live with the examples, not in prediction rows: trust a stored flag when there is one.
        return tuple(
            bool(p.correct) if p.correct is not None else task.is_correct(p.label, p.gold) for p in rows
        )
    allowed = {*task.labels, INVALID}
    for p in rows:  # cheap set checks first; the loop only runs to name the offending example
        if p.label not in allowed:
            raise InputError(
                f"system {p.system!r}, task {p.task!r}, example {p.example_id!r}: label {p.label!r} is not one "
                f"of {', '.join(task.labels)} or {INVALID}"
            )
    right = tuple(p.label == g for p, g in zip(rows, gold, strict=True))
    for p, r in zip(rows, right, strict=True):
        if p.correct is not None and p.correct != r:
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
    flat: dict[tuple[str, str, str], dict[str, Prediction]] = {}
    for p in predictions:
        key = (p.task, p.condition, p.system)
        rows = flat.get(key)
        if rows is None:
            rows = flat[key] = {}
        if p.example_id in rows:
            raise InputError(
                f"duplicate prediction: system {p.system!r}, task {p.task!r}, condition {p.condition!r}, "
                f"example {p.example_id!r}"
            )
        rows[p.example_id] = p
    table: dict[tuple[str, str], dict[str, dict[str, Prediction]]] = {}
    for (task_name, condition, system), rows in flat.items():
        table.setdefault((task_name, condition), {})[system] = rows
    groups: list[AlignedGroup] = []
    notes: list[str] = []
    for (task_name, condition), by_system in table.items():
        task = tasks[task_name]
        id_sets = {s: rows.keys() for s, rows in by_system.items()}
        union = set().union(*id_sets.values())
        shared = union.intersection(*id_sets.values())
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
        if not task.open_answer and not set(gold) <= set(task.labels):
            bad = [i for i, g in zip(ids, gold, strict=True) if g not in task.labels]
            raise InputError(f"{where}: gold labels of {_ids(bad)} are not labels of the task")
        items = _items(by_system, ids, where)
        labels, correct = [], []
        for s in systems:
            aligned = [by_system[s][i] for i in ids]
            if any(p.gold != g for p, g in zip(aligned, gold, strict=True)):
                conflict = [i for p, i, g in zip(aligned, ids, gold, strict=True) if p.gold != g]
                raise InputError(
                    f"{where}: {s!r} and {systems[0]!r} disagree on gold labels of {_ids(conflict)}"
                )
            labels.append(tuple(p.label for p in aligned))
            correct.append(_score(aligned, gold, task))
        groups.append(
            AlignedGroup(task_name, condition, ids, gold, systems, tuple(labels), tuple(correct), items)
        )
    return groups, notes


def _items(
    by_system: Mapping[str, Mapping[str, Prediction]], ids: tuple[str, ...], where: str
) -> tuple[str, ...]:
    """The item of every example: the one its rows name (they must agree), else the example itself."""
    per_system = {tuple(rows[i].item for i in ids) for rows in by_system.values()}
    if len(per_system) == 1:  # the usual case: every system names the same items (or none)
        (same,) = per_system
        return tuple(
            i if item is None else item for i, item in zip(("\0" + i for i in ids), same, strict=True)
        )
    named: dict[str, str] = {}
    for rows in by_system.values():
        for i in ids:
            item = rows[i].item
            if item is None:
                continue
            if named.setdefault(i, item) != item:
                raise InputError(f"{where}: example {i!r} is given items {named[i]!r} and {item!r}")
    # The NUL prefix keeps an unnamed example from merging with a named item that happens to equal its id.
    return tuple(named.get(i, "\0" + i) for i in ids)


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
    # One set of distinct (system, backbone, has transcript) triples: a single cheap pass over many rows.
    triples = {(p.system, p.backbone, p.transcript is not None) for p in predictions}
    backbones: dict[str, set[str]] = {s: set() for s in dict.fromkeys(p.system for p in predictions)}
    transcripts = dict.fromkeys(backbones, False)
    for system, backbone, has_transcript in triples:
        if backbone is not None:
            backbones[system].add(backbone)
        transcripts[system] = transcripts[system] or has_transcript
    out = {}
    for name, seen in backbones.items():
        if len(seen) > 1:
            raise InputError(f"system {name!r} declares several backbones: {', '.join(sorted(seen))}")
        out[name] = SystemInfo(name, next(iter(seen)) if seen else None, transcripts[name])
    return out
