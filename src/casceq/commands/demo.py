"""The offline default, end to end, on a fresh machine with no model hub.

Synthesise a small spoken subset of
SST-2 and AG News in two offline voices, clean and in babble at 0 dB; run Cascade-S (Whisper base -> the default
backbone), Cascade-W (Whisper tiny.en -> the same backbone), the text ceiling (gold text -> the same
backbone) and the shipped mini speech LLM (Whisper base encoder -> trained projector -> the same backbone); print accuracy, kappa with CIs, error overlap and McNemar, and the run folder's path.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``casceq demo``."""
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo; resumed if present)")
    p.add_argument("--n", type=int, default=None, help="items per task (default: the demo's size)")
    p.add_argument("--write-config", metavar="FILE", help="only write the demo's experiment TOML and exit")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Build the demo config, run it, print the statistics."""
    from pathlib import Path

    from casceq.stages.demo import DemoConfig, demo, write_config

    if args.write_config:
        write_config(Path(args.write_config), args.n)
        print(f"wrote {args.write_config}")
        return 0
    from rich.console import Console

    from casceq.report.console import print_tables

    out = Path(args.out)
    result = demo(DemoConfig(out, args.n, show_progress=not args.no_progress))
    if result.compare is not None:  # the accuracy and pair tables (the numbers of compare.json)
        print_tables(result.compare, Console(width=160))
    for name, err in result.failed.items():
        print(f"FAILED {name}: {err}")
    print(f"\nrun folder: {out.resolve()}  ({result.seconds:.0f} s; report: {out / 'report.md'})")
    return 1 if result.failed else 0
