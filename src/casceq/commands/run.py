"""Run an experiment config into a run folder.

Systems with their backbones, tasks, n, voices, conditions and answer mode go into a
run folder holding the config and its hash, the SQLite store, predictions.jsonl, compare.json and report.md.
Starting it again resumes: rows already stored with the same cache key are skipped.
"""

from __future__ import annotations

import argparse


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


def run(args: argparse.Namespace) -> int:
    """Run or resume; print where the results are."""
    from pathlib import Path

    from casceq.run.config import load_config
    from casceq.run.runner import run_experiment

    cfg = load_config(args.config)
    s = run_experiment(
        cfg,
        Path(args.out),
        limit=args.limit,
        only_systems=args.only_systems,
        only_tasks=args.only_tasks,
        executor=args.executor,
        show_progress=not args.no_progress,
        jobs=args.jobs,
    )
    total = sum(s.written.values())
    print(
        f"run folder: {s.run_dir} ({total} rows written, {sum(s.skipped.values())} already done, {s.seconds:.1f} s)"
    )
    for name, err in s.failed.items():
        print(f"FAILED {name}: {err}")
    return 1 if s.failed else 0
