"""Run an experiment config into a run folder.

Systems with their backbones, tasks, n, voices, conditions and answer mode go into a
run folder holding the config and its hash, the SQLite store, predictions.jsonl, compare.json and report.md.
Starting it again resumes: rows already stored with the same cache key are skipped.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``casceq run``."""
    p.add_argument("config", help="experiment TOML file")
    p.add_argument(
        "--out", required=True, help="run folder (created, or resumed when it holds the same config)"
    )
    p.add_argument("--limit", type=int, default=None, help="at most this many examples per task")
    p.add_argument("--only-systems", nargs="+", default=None, metavar="NAME")
    p.add_argument("--only-tasks", nargs="+", default=None, metavar="TASK")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--jobs", type=int, default=1, help="parallel synthesis jobs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--max-input-failures",
        type=_share,
        default=0.0,
        metavar="SHARE",
        help="exit 0 when at most this share (0-1) of any system/task/condition's inputs could not be used "
        "(default 0: any unreadable or empty audio makes the exit status 1)",
    )


def _share(text: str) -> float:
    """A share in [0, 1] (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run or resume; print where the results are."""
    from pathlib import Path

    from casceq.run.config import load_config
    from casceq.stages.run import RunConfig, run

    s = run(
        RunConfig(
            load_config(args.config),
            Path(args.out),
            limit=args.limit,
            only_systems=tuple(args.only_systems) if args.only_systems is not None else None,
            only_tasks=tuple(args.only_tasks) if args.only_tasks is not None else None,
            executor=args.executor,
            jobs=args.jobs,
            show_progress=not args.no_progress,
        )
    )
    total = sum(s.written.values())
    print(
        f"run folder: {s.run_dir} ({total} rows written, {sum(s.skipped.values())} already done, {s.seconds:.1f} s)"
    )
    for name, err in s.failed.items():
        print(f"FAILED {name}: {err}")
    return max(1 if s.failed else 0, report_input_failures(list(s.input_failures), args.max_input_failures))


def report_input_failures(groups: list[Any], allowed: float) -> int:
    """Print the input failures per system, task and condition; 1 when a group's share exceeds ``allowed``."""
    import sys

    if not groups:
        return 0
    print("input failures (examples left out of the statistics; retried by the next start):", file=sys.stderr)
    for g in groups:
        print(f"  {g.system} · {g.task} · {g.condition}: {g.failed} of {g.total} unusable", file=sys.stderr)
        for err in g.errors:
            print(f"    {err}", file=sys.stderr)
    worst = max(g.share for g in groups)
    if worst > allowed:
        print(
            f"input failures: up to {worst:.1%} of a group's inputs could not be used (allowed: "
            f"{allowed:.1%}, --max-input-failures): exit status 1",
            file=sys.stderr,
        )
        return 1
    return 0
