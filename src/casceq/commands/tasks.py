"""List the tasks, their labels, and whether the transcript alone carries the answer (text-sufficient)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``."""
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"tasks": [{"name", "labels", "text_sufficient", "open_answer"}]} instead of a table',
    )


def run(args: argparse.Namespace) -> int:
    """Print the task table (or JSON) to stdout; returns 0."""
    from casceq.tasks import get_task, known_names

    tasks = [get_task(name) for name in known_names()]
    if args.json:
        rows = [
            {
                "name": t.name,
                "labels": list(t.labels),
                "text_sufficient": t.text_sufficient,
                "open_answer": t.open_answer,
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
