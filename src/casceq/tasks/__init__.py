"""Tasks: the registry of the seven evaluation tasks and ``load_examples``.

>>> from casceq.tasks import get_task, load_examples
>>> task = get_task("sst-2")                     # aliases: agnews, sst-2, commonsense_qa, trivia_qa, ...
>>> examples = load_examples("sst2", n=200, seed=0)  # official files under casceq.paths.datasets_dir()
>>> task.parse("**Positive**")
'positive'

Subsampling is deterministic across platforms and Python versions: items are ranked by
``sha256(f"{seed}:{id}")`` and the first ``n`` are kept, in file order. The ranking does not depend on ``n``, so
the ``n=50`` sample of a seed is contained in its ``n=100`` sample.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from casceq import paths  # module attribute: tests point datasets_dir elsewhere
from casceq.errors import InputError
from casceq.tasks.base import Task
from casceq.tasks.defs import TASKS
from casceq.tasks.hub import load_hub
from casceq.tasks.loaders import LOCAL
from casceq.tasks.userdata import load_user_examples
from casceq.tasks.userdef import read_tasks_file
from casceq.types import Example

if TYPE_CHECKING:
    from casceq.tasks.userdef import UserTask

TASK_NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)
"""Canonical task names, text-sufficient tasks first."""

_BY_NAME = {t.name: t for t in TASKS}
_ALIASES = {
    "agnews": "ag_news",
    "fancyzhxagnews": "ag_news",
    "sst": "sst2",
    "sst2": "sst2",
    "gluesst2": "sst2",
    "sentiment": "sst2",
    "commonsenseqa": "csqa",
    "taucommonsenseqa": "csqa",
    "triviaqa": "triviaqa",
    "mandarjoshitriviaqa": "triviaqa",
    "meld": "meld",
    "mustard": "mustard",
    "ravdess": "ravdess",
}
# Folder of each task under the shared datasets directory.
FOLDERS = {name: name for name in TASK_NAMES}
# User-defined tasks registered from tasks files (``register_tasks_file``): name -> UserTask.
_USER: dict[str, UserTask] = {}


def known_names() -> tuple[str, ...]:
    """Built-in task names, then the user-defined tasks registered so far."""
    return TASK_NAMES + tuple(_USER)


def register_tasks_file(path: str | Path) -> tuple[str, ...]:
    """Register every task of a tasks file (docs/tasks.md) for ``get_task`` and ``load_examples``.

    Registering the same file again, or an identical definition from another file (a copy next to a run), is a
    no-op. Returns the task names.

    Raises:
        InputError: A bad definition, or a name that is built in or was registered from another file.
    """
    users = read_tasks_file(path)
    for user in users:
        name = user.task.name
        if name in TASK_NAMES or "".join(ch for ch in name.lower() if ch.isalnum()) in _ALIASES:
            raise InputError(f"task {name!r} is built in; give the user task another name", path=str(path))
        old = _USER.get(name)
        if (
            old is not None
            and old.source_file != user.source_file
            and (old.signature() != user.signature() or not old.same_data(user))
        ):
            raise InputError(
                f"task {name!r} is already defined differently in {old.source_file} (its labels, prompt, "
                "parsing, data settings or data file's content differ): give one of them another name",
                path=str(path),
            )
    for user in users:
        if user.task.name not in _USER:  # an identical definition from a copy of the file keeps the first
            _USER[user.task.name] = user
            _BY_NAME[user.task.name] = user.task
    return tuple(u.task.name for u in users)


def register_run_tasks(run_dir: str | Path) -> tuple[str, ...]:
    """Register the tasks file a run folder was run with (its ``config.json``), if any and if it still exists.

    A moved tasks file is skipped: the run's predictions stay readable, and commands say the task is unknown.
    """
    import json

    meta = Path(run_dir) / "config.json"
    try:
        tasks_file = json.loads(meta.read_text(encoding="utf-8"))["config"].get("tasks_file")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ()
    if not isinstance(tasks_file, str) or not Path(tasks_file).is_file():
        return ()
    return register_tasks_file(tasks_file)


def user_task(name: str) -> UserTask | None:
    """The registered user task of this name (None for built-ins and unknown names)."""
    return _USER.get(name)


def canonical_name(name: str) -> str:
    """Return the canonical task name for a name or alias (case, ``-``, ``_``, ``/`` and spaces ignored)."""
    if name in _BY_NAME:
        return name
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    canonical = _ALIASES.get(key)
    if canonical is None:
        hint = "" if _USER else " (user tasks need --tasks-file FILE)"
        raise InputError(f"unknown task {name!r}; known tasks: {', '.join(known_names())}{hint}")
    return canonical


def get_task(name: str) -> Task:
    """Return the ``Task`` for a name or alias ("agnews", "sst-2", "commonsense_qa" ...).

    Raises:
        InputError: Naming the known tasks when ``name`` is none of them.
    """
    return _BY_NAME[canonical_name(name)]


def sample_rank(example_id: str, seed: int) -> bytes:
    """Return the platform-independent sort key of one example for a seed: ``sha256(f"{seed}:{id}")``."""
    return hashlib.sha256(f"{seed}:{example_id}".encode()).digest()


def subsample(examples: Sequence[Example], n: int | None, seed: int = 0) -> list[Example]:
    """Keep the ``n`` examples of lowest ``sample_rank`` (all when ``n`` is None or too large), in input order."""
    if n is None or n >= len(examples):
        return list(examples)
    if n < 0:
        raise InputError(f"n must be >= 0, got {n}")
    keep = set(sorted(range(len(examples)), key=lambda i: sample_rank(examples[i].id, seed))[:n])
    return [ex for i, ex in enumerate(examples) if i in keep]


def _task_folder(name: str, data_dir: str | Path | None) -> Path:
    if data_dir is not None:
        folder = Path(data_dir)
        if (folder / FOLDERS[name]).is_dir():
            folder = folder / FOLDERS[name]  # the datasets root was given: descend into the task's folder
    else:
        root = paths.datasets_dir()
        if root is None:
            raise InputError(
                f"{name}: no datasets folder found; set $CASCEQ_DATASETS, put the official files in "
                "../shared/datasets, or pass data_dir"
            )
        folder = root / FOLDERS[name]
    if not folder.is_dir():
        raise InputError(f"{name}: data folder does not exist", path=str(folder))
    return folder


def load_examples(
    name: str,
    *,
    n: int | None = None,
    seed: int = 0,
    split: str | None = None,
    data_dir: str | Path | None = None,
    source: str | None = None,
) -> list[Example]:
    """Load a task's examples, optionally a deterministic subsample of ``n``.

    Args:
        name: Task name or alias.
        n: Number of examples to keep (None: all). Chosen by ``sample_rank`` and returned in file order.
        seed: Subsampling seed.
        split: Source split; defaults: ag_news ``test``, sst2 ``dev``, csqa ``dev``, triviaqa ``sm_sub``
            (the 3000-question file; the hub default is ``validation``), meld ``test``, mustard/ravdess ``all``.
        data_dir: Folder of the task's official files (or a datasets root holding a ``<task>`` folder); default
            ``casceq.paths.datasets_dir() / <task>``.
        source: ``None``/``"files"`` for the official files, ``"hub"`` for the Hugging Face hub (needs
            ``datasets``; text tasks only).

    Raises:
        InputError: Unknown task or split, missing folder or file, or a malformed row (file and line named).
        MissingDependency: ``source="hub"`` without the ``datasets`` package.
    """
    canonical = canonical_name(name)
    if canonical in _USER:
        return subsample(load_user_examples(_USER[canonical], split), n, seed)
    if source == "hub":
        return subsample(load_hub(canonical, split), n, seed)
    if source not in (None, "files", "local"):
        raise InputError(f"unknown source {source!r} (expected 'files' or 'hub')")
    loader, default_split, allowed = LOCAL[canonical]
    split = split or default_split
    if allowed is not None and split not in allowed:
        raise InputError(f"{canonical}: unknown split {split!r} (known: {', '.join(allowed)})")
    if "/" in split or "\\" in split or split.startswith("."):
        raise InputError(f"{canonical}: invalid split name {split!r}")
    folder = _task_folder(canonical, data_dir)
    return subsample(_unique(loader(folder, split), folder), n, seed)


def _unique(examples: list[Example], folder: Path) -> list[Example]:
    """Refuse duplicate ids: results, caches and the store are keyed by example id."""
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise InputError(f"duplicate example id {ex.id!r}", path=str(folder))
        seen.add(ex.id)
    return examples


__all__ = [
    "TASK_NAMES",
    "Task",
    "canonical_name",
    "get_task",
    "known_names",
    "load_examples",
    "register_run_tasks",
    "register_tasks_file",
    "sample_rank",
    "subsample",
    "user_task",
]
