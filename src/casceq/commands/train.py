"""``casceq train speech-llm``: train the offline Ultravox-architecture speech LLM from scratch.

Stages (synthesised speech, cached encoder frames, teacher targets, projector training, export) are cached in
``--out``; ``--resume`` continues training from the last checkpoint. The exported model (``OUT/model``) loads with
``make_speech_llm("ultravox-native:OUT/model")``. The recipe is in docs/speech_llm_training.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``WHAT --config --out --resume --max-minutes``."""
    parser.add_argument("what", choices=["speech-llm"], help="what to train (only speech-llm so far)")
    parser.add_argument(
        "--config", help="TOML file of TrainConfig fields (default: the shipped model's recipe)"
    )
    parser.add_argument(
        "--out", required=True, help="training folder (speech, frames, checkpoints, log, model)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if present")
    parser.add_argument(
        "--max-minutes", type=float, help="stop training after this many minutes (overrides config)"
    )


def run(args: argparse.Namespace) -> int:
    """Train and export; print the model folder."""
    import dataclasses

    from casceq.train.config import load_config
    from casceq.train.pipeline import train_speech_llm

    cfg = load_config(args.config)
    if args.max_minutes is not None:
        cfg = dataclasses.replace(cfg, max_minutes=args.max_minutes)
    out = Path(args.out)
    if not args.resume and (out / "checkpoint").exists():
        print(
            f"error: {out}/checkpoint exists; pass --resume to continue it or choose another --out",
            file=sys.stderr,
        )
        return 2

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    model = train_speech_llm(cfg, out, resume=args.resume, progress=progress)
    print(model)
    return 0
