"""List the tasks, their labels, and whether the transcript alone carries the answer (text-sufficient)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--json`` and ``--toml``."""
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"tasks": [{"name", "labels", "text_sufficient", "open_answer"}]} instead of a table',
    )
    parser.add_argument(
        "--toml",
        action="store_true",
        help="print every task as a tasks file (docs/tasks.md): a starting point for your own",
    )


def _data_source(name: str) -> dict[str, object]:
    """Where a user task's examples are read from (resolved paths), so a shared tasks file can be checked."""
    from casceq.tasks import user_task

    user = user_task(name)
    if user is None:
        return {}
    data = user.data
    where = {} if data is None else {k: v for k, v in (("path", data.path), ("hf", data.hf),
                                                        ("audiofolder", data.audiofolder)) if v}  # fmt: skip
    return {"tasks_file": user.source_file, "data": where or None}


def run(args: argparse.Namespace) -> int:
    """Print the task table (or JSON) to stdout; returns 0."""
    from casceq.tasks import get_task, known_names

    tasks = [get_task(name) for name in known_names()]
    if getattr(args, "toml", False):
        from casceq.tasks.userdef import task_to_toml

        print("# Every task in the tasks-file schema (docs/tasks.md). Built-in names are reserved: rename a")
        print("# table (and add a [tasks.<name>.data] table) to make it a task of your own.\n")
        print("\n".join(task_to_toml(t) for t in tasks), end="")
        return 0
    if args.json:
        rows = [
            {
                "name": t.name,
                "labels": list(t.labels),
                "text_sufficient": t.text_sufficient,
                "open_answer": t.open_answer,
                **_data_source(t.name),
            }
            for t in tasks
        ]
        print(json.dumps({"tasks": rows}, indent=2))
        return 0
    table = [("task", "C", "text-sufficient", "labels")]
    for t in tasks:
        labels = "(open answer, alias match)" if t.open_answer else ", ".join(t.labels)
        table.append(
            (t.name, str(t.n_classes) if t.labels else "-", "yes" if t.text_sufficient else "no", labels)
        )
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return 0
