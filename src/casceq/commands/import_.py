"""Import interchange JSONL predictions (or another store) into a store.

Every line of every file is validated first; if any is bad, the command lists the problems (file:line) and
writes nothing. A valid import is written in one transaction. Re-importing the same records is a no-op; a
record that changed replaces the stored one. See docs/interchange.md for the format.
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
    """Validate all inputs, then write them in one transaction; print what was written."""
    import hashlib
    import json

    from casceq.io.interchange import read_predictions
    from casceq.io.records import to_record
    from casceq.run.store import Store

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
            if name not in known:
                store.register_system(args.run, name, backbone, "imported", None)
        total = store.count(run=args.run)
    print(
        f"{len(predictions)} predictions from {len(args.files)} file(s) into run {args.run!r} of {store.path}: "
        f"{result.inserted} new, {result.replaced} replaced, {result.skipped} unchanged ({total} in the run)"
    )
    return 0
