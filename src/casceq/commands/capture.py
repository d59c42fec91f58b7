"""Capture hidden states at chosen layers over the audio positions of N utterances, streamed to disk in shards.

Models (``--model``): ``whisper:tiny.en`` / ``whisper:base`` (bundled, converted to PyTorch once),
``whisper:FOLDER`` (a transformers or CTranslate2 Whisper folder; its encoder is captured), or a speech LLM
``FAMILY:PATH`` (``qwen2-audio``, ``phi4-mm``, ``voxtral``, ``qwen2.5-omni``, ``ultravox-native``).
Utterances: ``--task`` (a task whose examples carry audio, e.g. ``ravdess``) or ``--audio-dir`` (a ``casceq
synth`` output folder, or any folder of audio files with optional same-name ``.txt`` transcripts).
Clips longer than the model's window are truncated (recorded per utterance). ``--resume`` continues an
interrupted capture of the same model and layers. A capture that failed (a bad file, a full disk) leaves
``capture.partial.json``, not ``capture.json``: running the same command again continues it, no flag needed.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--model --task|--audio-dir --n --seed --layers --out --prompt --dtype ...``."""
    parser.add_argument(
        "--model", required=True, help="whisper:tiny.en | whisper:base | whisper:DIR | FAMILY:PATH"
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--task", help="task whose examples carry audio (ravdess, meld, mustard)")
    src.add_argument("--audio-dir", help="casceq synth output folder, or a folder of audio files (+ .txt)")
    parser.add_argument("--n", type=int, default=0, help="utterances to capture (0 = all; seeded subsample)")
    parser.add_argument("--seed", type=int, default=0, help="subsampling seed")
    parser.add_argument(
        "--layers", type=int, nargs="+", help="layer indices (default: the paper's fractions)"
    )
    parser.add_argument("--out", required=True, help="output capture folder")
    parser.add_argument("--prompt", default="Transcribe the audio.", help="instruction for speech LLMs")
    parser.add_argument("--backbone", help="backbone id of a speech LLM not in the known list")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="storage dtype")
    parser.add_argument("--no-pitch", action="store_true", help="skip F0 tracking (energy only)")
    parser.add_argument("--shard-positions", type=int, default=50_000, help="rows per shard (memory bound)")
    parser.add_argument("--data-dir", help="folder of the task's files (default: shared datasets)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted capture in --out")
    mode.add_argument("--force", action="store_true", help="replace an existing capture in --out")


def run(args: argparse.Namespace) -> int:
    """Capture and print a one-line summary."""
    import torch

    from casceq.stages.capture import CaptureConfig, run_capture

    if args.threads:
        torch.set_num_threads(args.threads)
    config = CaptureConfig(
        model=args.model,
        out=args.out,
        task=args.task,
        audio_dir=args.audio_dir,
        n=args.n,
        seed=args.seed,
        layers=tuple(args.layers) if args.layers else None,
        prompt=args.prompt,
        backbone=args.backbone,
        dtype=args.dtype,
        pitch=not args.no_pitch,
        shard_positions=args.shard_positions,
        data_dir=args.data_dir,
        resume=args.resume,
        force=args.force,
    )

    def progress(i: int, total: int, uid: str) -> None:
        if i % 25 == 0 or i == total:
            print(f"  {i}/{total} {uid}", file=sys.stderr, flush=True)

    print(run_capture(config, log=print, progress=progress).summary())
    return 0
