"""Import interchange JSONL predictions (or another store) into a store.

Every line of every file is validated first; if any is bad, the command lists the problems (file:line) and
writes nothing. The new rows are then checked against the run's stored rows (one gold per example, one
backbone per system, as within one call) and written in the same transaction: a conflict writes nothing.
Re-importing the same records is a no-op; a record that changed replaces the stored one. See
docs/interchange.md for the format.
"""

from __future__ import annotations

import argparse

DEFAULT_RUN = "imported"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``casceq import FILE... --store PATH [--run NAME]``."""
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="interchange .jsonl files, stores or run folders"
    )
    parser.add_argument("--store", required=True, help="the store (.sqlite file or run folder) to write into")
    parser.add_argument(
        "--run", default=DEFAULT_RUN, help=f"run name inside the store (default: {DEFAULT_RUN})"
    )


def run(args: argparse.Namespace) -> int:
    """Validate all inputs, check them against the run's stored rows, then write, all in one transaction."""
    import hashlib
    import json

    from casceq.io.interchange import check_import, read_for_import
    from casceq.io.records import to_record
    from casceq.run.store import Store

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
            if name not in known or (backbone and known[name].backbone != backbone):
                kind = known[name].kind if name in known else "imported"
                store.register_system(args.run, name, backbone, kind, None)
        total = store.count(run=args.run)
    print(
        f"{len(predictions)} predictions from {len(args.files)} file(s) into run {args.run!r} of {store.path}: "
        f"{result.inserted} new, {result.replaced} replaced, {result.skipped} unchanged ({total} in the run)"
    )
    return 0
