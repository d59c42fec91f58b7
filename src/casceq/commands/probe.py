"""Linear probes on a capture folder: energy R², pitch R², CTC 1 − CER and bag-of-characters R² per layer.

Writes ``probes.json`` (all scores with their row counts, split and feature settings), ``table.md`` (the
paper's Table 4 layout) and ``figure.png`` / ``figure.svg`` (Figure 4) into ``--out``. The split is 80/20 by
utterance (or by ``--split-by`` a record field such as ``actor`` or ``voice``), seeded.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``CAPTURE_DIR --probes --layers --out --seed --split-by --ctc-epochs --threads --title``."""
    parser.add_argument("capture", metavar="CAPTURE_DIR", help="folder written by casceq capture")
    parser.add_argument(
        "--probes",
        nargs="+",
        default=["energy", "pitch", "ctc", "boc"],
        help="energy pitch ctc boc (default all)",
    )
    parser.add_argument("--layers", type=int, nargs="+", help="layers to probe (default: all captured)")
    parser.add_argument("--out", required=True, help="output folder (probes.json, table.md, figure.png/.svg)")
    parser.add_argument("--seed", type=int, default=0, help="split and initialisation seed")
    parser.add_argument(
        "--split-by", default="utterance", help="hold out whole groups: utterance (default) or a record field"
    )
    parser.add_argument("--ctc-epochs", type=int, default=20, help="CTC probe training epochs")
    parser.add_argument(
        "--threads", type=int, default=1, help="BLAS/torch threads (default 1: cores are shared)"
    )
    parser.add_argument("--title", help="figure title (default: the model spec)")


def run(args: argparse.Namespace) -> int:
    """Run the probes and write the results."""
    from casceq.mech.probes_report import probe_table
    from casceq.stages.probe import ProbeConfig, run_probe

    config = ProbeConfig(
        capture=args.capture,
        out=args.out,
        probes=tuple(args.probes),
        layers=tuple(args.layers) if args.layers else None,
        seed=args.seed,
        split_by=args.split_by,
        ctc_epochs=args.ctc_epochs,
        threads=args.threads,
        title=args.title,
    )
    results = run_probe(config, progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    print(probe_table(results))
    return 0
