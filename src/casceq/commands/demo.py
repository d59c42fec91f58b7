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

    from casceq.run.config import load_config
    from casceq.run.demo import demo_config_toml, print_results
    from casceq.run.runner import run_experiment

    text = demo_config_toml(n=args.n)
    if args.write_config:
        Path(args.write_config).write_text(text)
        print(f"wrote {args.write_config}")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "experiment.toml"
    cfg_path.write_text(text)
    cfg = load_config(cfg_path)
    summary = run_experiment(cfg, out, show_progress=not args.no_progress)
    print_results(out)
    for name, err in summary.failed.items():
        print(f"FAILED {name}: {err}")
    print(f"\nrun folder: {out.resolve()}  ({summary.seconds:.0f} s; report: {out / 'report.md'})")
    return 1 if summary.failed else 0
