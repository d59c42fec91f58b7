"""Export a store's predictions as interchange JSONL (written atomically: a temporary file, then a rename).

With several runs in the store, name one with --run (the same system/task/condition/example may exist in each).
See docs/interchange.md for the format.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``casceq export --store PATH [--run NAME] --out FILE.jsonl``."""
    parser.add_argument("--store", required=True, help="the store (.sqlite file or run folder)")
    parser.add_argument("--run", help="the run to export (required when the store holds several)")
    parser.add_argument("--out", required=True, help="the .jsonl file to write")
    parser.add_argument("--system", action="append", help="export only this system (repeatable)")
    parser.add_argument("--task", action="append", help="export only this task (repeatable)")
    parser.add_argument("--condition", action="append", help="export only this condition (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Read the chosen run's predictions and write them as JSONL; print how many."""
    from casceq.errors import InputError
    from casceq.io.interchange import write_predictions
    from casceq.io.records import RecordError, canonical_condition
    from casceq.io.store import Store

    try:  # stored conditions are in their one spelling: --condition BABBLE@+15.0 means babble@15
        conditions = [canonical_condition(c) for c in args.condition] if args.condition else None
    except RecordError as exc:
        raise InputError(f"--condition: {exc}") from exc

    with Store(args.store, read_only=True) as store:
        runs = [r.run for r in store.runs() if r.n_predictions]
        if args.run is None and len(runs) > 1:
            raise InputError(
                f"the store holds runs {', '.join(runs)}: choose one with --run", path=str(store.path)
            )
        if args.run is not None and args.run not in {r.run for r in store.runs()}:
            raise InputError(f"no run {args.run!r} (runs: {', '.join(runs) or 'none'})", path=str(store.path))
        predictions = store.predictions(
            run=args.run, systems=args.system, tasks=args.task, conditions=conditions
        )
    if not predictions:
        raise InputError("no predictions match: nothing to export", path=str(store.path))
    n = write_predictions(args.out, predictions)
    print(f"{n} predictions written to {args.out}")
    return 0
