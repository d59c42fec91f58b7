"""Import interchange JSONL predictions (or another store) into a store.

Every line of every file is validated first; if any is bad, the command lists the problems (file:line) and
writes nothing. The new rows are then checked against the run's stored rows (one gold per example, one
backbone per system, as within one call) and written in the same transaction: a conflict writes nothing.
Re-importing the same records is a no-op; a record that changed replaces the stored one. See
docs/interchange.md for the format.

With ``--from lm-eval|lmms-eval|inspect`` the files are another harness's per-example logs instead
(lm-evaluation-harness / lmms-eval ``--log_samples`` files, inspect_ai ``.eval``/``.json`` logs), read as the
predictions of ``--system`` on ``--task``; see docs/import.md.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from casceq.types import Prediction

DEFAULT_RUN = "imported"
HARNESSES = ("lm-eval", "lmms-eval", "inspect")
"""The harnesses whose logs ``--from`` reads (``casceq.io.harness``)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``casceq import FILE... --store PATH [--run NAME]``."""
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="interchange .jsonl files, stores or run folders (with --from: the harness logs or their folders)",
    )
    parser.add_argument("--store", required=True, help="the store (.sqlite file or run folder) to write into")
    parser.add_argument(
        "--run", default=DEFAULT_RUN, help=f"run name inside the store (default: {DEFAULT_RUN})"
    )
    _add_harness_arguments(parser)


def _add_harness_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``--from HARNESS --system NAME --task TASK`` and the harness options."""
    group = parser.add_argument_group("harness logs (--from)")
    group.add_argument(
        "--from", dest="harness", choices=HARNESSES, help="the FILEs are this harness's per-example logs"
    )
    group.add_argument("--system", help="system name for the imported predictions (with --from)")
    group.add_argument("--task", help="the casceq task the logs evaluated (with --from)")
    group.add_argument(
        "--id-field", help="example ids from this document field (lm-eval doc, inspect metadata)"
    )
    group.add_argument("--condition", default="clean", help="audio condition name (default: clean)")
    group.add_argument("--backbone", help="LLM backbone of the system (matched-pair detection)")
    group.add_argument(
        "--kind",
        choices=("cascade", "speech_llm", "text"),
        help="what the system is (default: inferred by compare/report from its name)",
    )
    group.add_argument("--filter", dest="filter_name", help="lm-eval filter to import (default: the first)")
    group.add_argument("--epoch", type=int, default=1, help="inspect epoch to import (default: 1)")


def _read_harness(
    args: argparse.Namespace,
) -> tuple[list[Prediction], dict[str, dict[str, Any]], list[str]]:
    """Read ``--from`` logs; returns the predictions, each system's registration config and each row's log."""
    from casceq.errors import InputError
    from casceq.io.harness import read_harness
    from casceq.tasks import get_task

    if not args.system or not args.task:
        raise InputError("--from needs --system NAME and --task TASK")
    task = get_task(args.task)
    predictions: list[Prediction] = []
    sources: list[str] = []
    configs: dict[str, dict[str, Any]] = {}
    for path in args.files:
        result = read_harness(
            args.harness,
            path,
            task=task,
            system=args.system,
            condition=args.condition,
            backbone=args.backbone,
            id_field=args.id_field,
            filter_name=args.filter_name,
            epoch=args.epoch,
        )
        seen = {(p.condition, p.example_id) for p in predictions}
        repeated = [p.example_id for p in result.predictions if (p.condition, p.example_id) in seen]
        if repeated:
            raise InputError(f"example {repeated[0]!r} is in more than one of the logs", path=str(path))
        predictions.extend(result.predictions)
        sources.extend([str(path)] * len(result.predictions))
        configs[args.system] = {"harness": args.harness, "model": result.model, **result.settings}
        configs[args.system]["kind"] = args.kind
        if result.skipped:
            print(f"{path}: skipped {len(result.skipped)} line(s), e.g. {result.skipped[0]}")
        for warning in result.warnings:
            print(f"warning: {warning}")
    _check_user_data(args.task, predictions)
    return predictions, configs, sources


def _check_user_data(task_name: str, predictions: list[Prediction]) -> None:
    """For a user task with data: warn when no id matches, refuse golds that contradict the data."""
    from casceq.io.harness import check_against_examples
    from casceq.tasks import load_examples, user_task

    user = user_task(task_name)
    if user is None or user.data is None or user.data.hf is not None or not predictions:
        return  # built-ins and hub data are not loaded just to check (they may need the network)
    warning = check_against_examples(predictions, load_examples(task_name))
    if warning:
        print(f"warning: {warning}")


def run(args: argparse.Namespace) -> int:
    """Validate all inputs, check them against the run's stored rows, then write, all in one transaction."""
    import hashlib
    import json

    from casceq.io.interchange import check_import, read_for_import, rows_from
    from casceq.io.records import to_record
    from casceq.io.store import Store

    configs: dict[str, dict[str, Any]] = {}
    if getattr(args, "harness", None):
        predictions, configs, sources = _read_harness(args)
        rows = rows_from(predictions, sources)
    else:
        rows = read_for_import(args.files)  # raises before the store is even opened
        predictions = list(rows.predictions)
    # The cache key is the record itself: an identical re-import is skipped, a changed record replaces.
    keys = [
        hashlib.sha256(json.dumps(to_record(p), sort_keys=True).encode()).hexdigest() for p in predictions
    ]
    backbones: dict[str, str | None] = {}
    for p in predictions:
        backbones[p.system] = backbones.get(p.system) or p.backbone
    with Store(args.store) as store, store.transaction():
        # Check and write under one write lock: a failed check writes nothing, and no writer slips in between.
        known = {s.name: s for s in store.systems(args.run)}
        stored = store.predictions(run=args.run)
        where = f"{store.path} (run {args.run!r})"
        check_import(rows, stored, {n: s.backbone for n, s in known.items()}, where)
        result = store.write_batch(args.run, predictions, keys)
        for name, backbone in backbones.items():
            if name not in known or name in configs or (backbone and known[name].backbone != backbone):
                config = configs.get(name)
                if config is not None:
                    kind = config.pop("kind", None)
                else:
                    kind = known[name].kind if name in known else "imported"
                store.register_system(args.run, name, backbone, kind, config)
        total = store.count(run=args.run)
    print(
        f"{len(predictions)} predictions from {len(args.files)} file(s) into run {args.run!r} of {store.path}: "
        f"{result.inserted} new, {result.replaced} replaced, {result.skipped} unchanged ({total} in the run)"
    )
    return 0
