"""Import interchange JSONL predictions (or another store) into a store.

Every line of every file is validated first; if any is bad, the command lists the problems (file:line) and
writes nothing. A valid import is written in one transaction. Re-importing the same records is a no-op; a
record that changed replaces the stored one. See docs/interchange.md for the format.

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
        "files", nargs="+", metavar="FILE", help="interchange .jsonl files, stores or run folders"
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


def _read_harness(args: argparse.Namespace) -> tuple[list[Prediction], dict[str, dict[str, Any]]]:
    """Read ``--from`` logs; returns the predictions and each system's registration config."""
    from casceq.errors import InputError
    from casceq.io.harness import read_harness
    from casceq.tasks import get_task

    if not args.system or not args.task:
        raise InputError("--from needs --system NAME and --task TASK")
    task = get_task(args.task)
    predictions: list[Prediction] = []
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
        configs[args.system] = {"harness": args.harness, "model": result.model, **result.settings}
        configs[args.system]["kind"] = args.kind
        if result.skipped:
            print(f"{path}: skipped {len(result.skipped)} line(s), e.g. {result.skipped[0]}")
    _check_user_data(args.task, predictions)
    return predictions, configs


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
    """Validate all inputs, then write them in one transaction; print what was written."""
    import hashlib
    import json

    from casceq.io.interchange import read_predictions
    from casceq.io.records import to_record
    from casceq.run.store import Store

    configs: dict[str, dict[str, Any]] = {}
    if getattr(args, "harness", None):
        predictions, configs = _read_harness(args)
    else:
        predictions = read_predictions(args.files)  # raises before the store is even opened
    # The cache key is the record itself: an identical re-import is skipped, a changed record replaces.
    keys = [
        hashlib.sha256(json.dumps(to_record(p), sort_keys=True).encode()).hexdigest() for p in predictions
    ]
    with Store(args.store) as store:
        known = {s.name for s in store.systems(args.run)}
        backbones: dict[str, str | None] = {}
        for p in predictions:
            backbones[p.system] = backbones.get(p.system) or p.backbone
        result = store.write_batch(args.run, predictions, keys)
        for name, backbone in backbones.items():
            if name not in known or name in configs:
                config = configs.get(name)
                kind = config.pop("kind", None) if config is not None else "imported"
                store.register_system(args.run, name, backbone, kind, config)
        total = store.count(run=args.run)
    print(
        f"{len(predictions)} predictions from {len(args.files)} file(s) into run {args.run!r} of {store.path}: "
        f"{result.inserted} new, {result.replaced} replaced, {result.skipped} unchanged ({total} in the run)"
    )
    return 0
