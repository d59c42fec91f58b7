"""Tables, figures and one self-contained HTML report from a run folder (or interchange files and stores).

Writes Table 2 (accuracy), Figure 1 (kappa heatmap) with every pair's statistics, Figure 2 (conditional error
overlap vs chance), Table 3 (shared errors: ASR-induced or LLM, by transcript WER), the backbone confound,
Figure 3 (accuracy vs babble SNR, ranking reversals in words), cost next to quality, and the mechanistic
Tables 4-7 / Figures 4-6 when their results exist (``RUN_DIR/mech/`` or --mech). Every number refers to its n
and source rows. See docs/report.md.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``report`` options."""
    parser.add_argument(
        "inputs", nargs="+", metavar="RUN_DIR", help="a run folder, or interchange JSONL files / stores"
    )
    parser.add_argument(
        "--mech",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of mechanistic results (repeatable)",
    )
    parser.add_argument(
        "--audio",
        action="append",
        default=[],
        metavar="DIR",
        help="synthesis folder(s) with manifest.jsonl, for texts and audio when the inputs are files",
    )
    parser.add_argument(
        "--audio-root",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder besides each manifest's own that its audio paths may lead into (repeatable); "
        "audio anywhere else is refused",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default RUN_DIR/report or ./casceq-report)"
    )
    parser.add_argument(
        "--formats", default="md,tex,html,png,svg", help="comma-separated: md,tex,html,png,svg (default: all)"
    )
    parser.add_argument("--run", help="read only this run from stores")
    parser.add_argument("--bootstrap", type=int, metavar="B", help="bootstrap resamples (default: the run's)")
    parser.add_argument("--seed", type=int, help="bootstrap seed (default: the run's)")
    parser.add_argument(
        "--audio-clips",
        type=int,
        default=200,
        metavar="N",
        help="cap on audio clips embedded in the HTML (0: none)",
    )


def run(args: argparse.Namespace) -> int:
    """Build the report and print the files written and any ranking reversal."""
    from casceq.errors import InputError
    from casceq.stages.report import ReportConfig, report

    if args.audio_clips < 0:
        raise InputError(f"--audio-clips must be >= 0, got {args.audio_clips}")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    result = report(
        ReportConfig(
            tuple(args.inputs),
            out=args.out,
            mech_dirs=tuple(args.mech),
            audio_dirs=tuple(args.audio),
            audio_roots=tuple(args.audio_root),
            formats=tuple(formats),
            run=args.run,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
            max_clips=args.audio_clips,
        )
    )
    for sentence in result.reversals:
        print(sentence)
    for w in result.warnings:
        print(f"warning: {w}")
    print(f"wrote {len(result.files)} file(s) to {result.out}:")
    for f in result.files:
        print(f"  {f}")
    return 0
