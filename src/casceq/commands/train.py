"""``casceq train speech-llm``: train the offline Ultravox-architecture speech LLM from scratch.

Stages (generated text, synthesised speech, cached encoder frames, teacher targets, projector training, export)
are cached in ``--out``; ``--resume`` continues training from the last checkpoint. Without ``--config`` the
shipped model's recipe (``casceq/data/speech_llm/train.toml``) is used. The exported model (``OUT/model``) loads
with ``make_speech_llm("ultravox-native:OUT/model")``. The recipe is in docs/speech_llm_training.md.

``casceq train acoustic-control --model CONTINUOUS --general DIR --out DIR``: the acoustic control, the
continuous model fine-tuned on the emotion labels of RAVDESS actors 1-16 (``casceq.train.emotion``).

``casceq train listener --out DIR [--model CTC]``: the listener built on the CTC model (default the shipped one):
the CTC model unchanged plus a voice classifier fitted on the emotion labels of RAVDESS actors 1-16
(``casceq.train.voice``; a few minutes on a CPU).

``casceq train evaluate --out DIR [--model SPEC] [--n N]``: the speech LLM (default the shipped one) against
its matched cascade (Whisper base -> the default backbone) and the text ceiling on N clean items per task of
SST-2 and AG News in two voices (a ``casceq run`` into DIR, resumable); prints accuracy with 95% Wilson
intervals and the speech LLM's accuracy gap to the cascade with a paired bootstrap interval.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``WHAT --config --out --resume --max-minutes``."""
    parser.add_argument(
        "what",
        choices=["speech-llm", "acoustic-control", "listener", "evaluate"],
        help="speech-llm: train one; acoustic-control: fine-tune a continuous one on RAVDESS training actors; "
        "listener: add a voice classifier fitted on those actors to a CTC one; "
        "evaluate: compare one with its matched cascade",
    )
    parser.add_argument(
        "--config",
        help="TOML file of TrainConfig fields (default: the shipped model's recipe); acoustic-control: of "
        "EmotionConfig fields (casceq.train.emotion)",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="training folder (speech, frames, checkpoints, log, model); for evaluate, the run folder",
    )
    parser.add_argument(
        "--model",
        default="ultravox-native:bundled",
        help="evaluate: the speech LLM spec (default: the shipped model); acoustic-control: the continuous "
        "checkpoint to fine-tune (a folder, or the shipped ultravox-native:continuous); listener: the CTC "
        "checkpoint (default the shipped one)",
    )
    parser.add_argument(
        "--general",
        help="acoustic-control: the continuous model's training folder (its frames keep the text interface)",
    )
    parser.add_argument("--steps", type=int, help="acoustic-control: optimiser steps (default 300)")
    parser.add_argument("--n", type=int, help="evaluate: items per task, each in 2 voices (default 60)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if present")
    parser.add_argument(
        "--max-minutes", type=float, help="stop training after this many minutes (overrides config)"
    )


def run(args: argparse.Namespace) -> int:
    """Train and export (print the model folder), or evaluate (print the tables)."""
    import dataclasses

    from casceq.stages.train import TrainStageConfig, train
    from casceq.systems.speech_llm.shipped import shipped_folder
    from casceq.train.config import load_config

    if args.what == "evaluate":
        return _evaluate(args)
    if args.what == "acoustic-control":
        return _control(args)
    if args.what == "listener":
        return _listener(args)
    cfg = load_config(args.config if args.config is not None else shipped_folder() / "train.toml")
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

    print(train(TrainStageConfig(cfg, out, resume=args.resume), progress=progress).model)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    """Run the evaluation experiment into ``--out`` and print its accuracy and gap tables."""
    from casceq.stages.train import EvaluateConfig, evaluate
    from casceq.train.evaluate import markdown

    result = evaluate(EvaluateConfig(args.model, Path(args.out), args.n, show_progress=sys.stderr.isatty()))
    for name, err in result.run.failed.items():
        print(f"FAILED {name}: {err}", file=sys.stderr)
    print(markdown(result.accuracy))
    print("| task | n | Speech-LLM - Cascade-S [95% paired bootstrap CI] |\n|---|---|---|")
    for g in result.gaps:
        print(f"| {g.task} | {g.n} | {100 * g.gap:+.1f} points [{100 * g.low:+.1f}, {100 * g.high:+.1f}] |")
    return 1 if result.run.failed else 0


def _control(args: argparse.Namespace) -> int:
    """Fine-tune the acoustic control and print its model folder."""
    import dataclasses

    from casceq.stages.train import ControlStageConfig, train_control
    from casceq.train.emotion import EmotionConfig, load_emotion_config

    model = args.model.removeprefix("ultravox-native:")  # a spec, a shipped name or a folder
    recipe = load_emotion_config(args.config) if args.config else EmotionConfig()
    if args.steps is not None:
        recipe = dataclasses.replace(recipe, steps=args.steps)
    general = Path(args.general) if args.general else None
    config = ControlStageConfig(Path(model), Path(args.out), recipe, general, resume=args.resume)
    print(train_control(config, progress=lambda m: print(m, file=sys.stderr, flush=True)).model)
    return 0


def _listener(args: argparse.Namespace) -> int:
    """Fit the listener's voice classifier and print its model folder."""
    from casceq.train.voice import VoiceConfig, train_listener

    model = args.model.removeprefix("ultravox-native:")  # a spec, a shipped name or a folder
    folder = train_listener(
        model, Path(args.out), VoiceConfig(), progress=lambda m: print(m, file=sys.stderr, flush=True)
    )
    print(folder)
    return 0
