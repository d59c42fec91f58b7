"""LEACE concept erasure during generation (Table 7 / Figure 6), with held-out completeness checks.

Erasers are fitted per probed layer, sequentially (each layer with the earlier layers' erasers active), on the
fitting utterances: those of a capture folder (``--fit CAPTURE_DIR``: its audio, transcripts and probed
layers) or, by default, ``--n`` further items of each task (the next ones of the seeded ranking, spoken by the
same voices): never the evaluated items themselves (checked; an overlap is an error). The random control is drawn
``--n-random`` times. Then every task is answered
with no erasure and under each concept's erasers (text proxy, CTC characters, bag of characters, acoustic classes,
continuous acoustic, random control), all layers' erasers active at once through hooks on every forward pass (``--positions``).
Writes ``OUT/mech/erasure.json`` (schema in ``casceq.mech.erasure``) and ``OUT/mech/erasure.md``.
``--calibration RUN_DIR`` answers every condition with a ``casceq run`` folder's held-out offsets of the speech
LLM (score mode; see ``casceq implicit``).
``--diagnostic`` holds ``--diagnostic-fraction`` of the fitting items out of eraser fitting and answers the
paper's §5.4 question on them: does erasing the acoustic concept reduce text decodability (bag-of-characters
readout R²) more than a random subspace of the same rank? (per layer, item-bootstrap intervals; in
``erasure.json`` as ``diagnostic`` and in ``erasure.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from casceq.commands.implicit import add_item_arguments, context_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``erase`` options."""
    add_item_arguments(parser)
    parser.add_argument(
        "--fit",
        metavar="CAPTURE_DIR",
        help="fit on a capture folder's utterances (default: --n other items of each task, same voices)",
    )
    parser.add_argument(
        "--n-random", type=int, default=5, help="draws of the random-subspace control (default 5)"
    )
    parser.add_argument("--layers", type=int, nargs="+", help="probed layers (default: captured / paper's)")
    parser.add_argument(
        "--concepts",
        nargs="+",
        default=["text", "ctc", "boc", "acoustic", "acoustic2d", "random"],
        help="concepts to erase (default: text ctc boc acoustic acoustic2d random; acoustic2d is the continuous "
        "standardised [energy, pitch] per position, acoustic its 9 energy x pitch classes)",
    )
    parser.add_argument(
        "--positions",
        choices=("all", "audio"),
        default="all",
        help="erase every position of every pass (all, the paper's) or the prompt's audio positions only",
    )
    parser.add_argument("--affine", action="store_true", help="LEACE with bias centering (default: none)")
    parser.add_argument(
        "--diagnostic",
        action="store_true",
        help="hold some fitting items out of eraser fitting and test whether acoustic erasure reduces text "
        "decodability more than a random subspace of the same rank (the paper's section 5.4)",
    )
    parser.add_argument(
        "--diagnostic-fraction",
        type=float,
        default=0.3,
        help="share of the fitting items held out for --diagnostic (default 0.3)",
    )


def run(args: argparse.Namespace) -> int:
    """Fit the erasers, answer the tasks under each condition, write the results."""
    from casceq.mech.erasure_concepts import ERASURE_FILE
    from casceq.stages.context import StageContext
    from casceq.stages.erase import EraseConfig, run_erase

    config = EraseConfig(
        tasks=tuple(args.task),
        out=args.out,
        fit=args.fit,
        n_fit=args.n,
        layers=tuple(args.layers) if args.layers else None,
        concepts=tuple(args.concepts),
        positions=args.positions,
        affine=args.affine,
        mode=args.mode,
        n_random=args.n_random,
        diagnostic=args.diagnostic,
        diagnostic_fraction=args.diagnostic_fraction,
        argv=("casceq", "erase", *sys.argv[2:]),
    )
    result = run_erase(config, StageContext(context_config(args)))
    print(result.markdown(), end="")
    print(f"wrote {Path(args.out) / ERASURE_FILE}")
    return 0
