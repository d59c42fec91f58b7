"""The implicit cascade (Table 6): the speech LLM's lens text at one layer, read by a text copy of its backbone.

For each item: the speech LLM answers from audio; the lens of ``--layer`` (default: last) at the audio positions
is decoded and given as the transcript to the backbone (``--backbone same``: the speech LLM's own language
model on text; or a text LLM spec); the explicit cascade gives the backbone an ASR transcript (``--asr``).
Reports kappa_impl = kappa(implicit, speech LLM), kappa_casc = kappa(cascade, speech LLM) and the accuracies.

Items: ``--items FILE.jsonl`` (one object per line: ``id``, ``audio``, ``label``, optional ``text`` and
``choices``) or a task's examples spoken by ``--voice`` into ``--audio-dir`` (``--n``, ``--seed``).
Writes ``OUT/mech/implicit.json`` (schema in ``casceq.mech.implicit``) and ``OUT/mech/implicit.md``.

``--calibration RUN_DIR`` answers with a finished ``casceq run`` folder's decision rule (score mode): the speech
LLM's label scores are shifted by the run's held-out offsets of its speech-LLM system on ``--model`` (or
``--speech-system``), and ``--cascade NAME`` makes the text copy that run system's LLM, loaded with its settings
(the same shots), answering with its offsets. The speech LLM is then loaded as the run loads it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_item_arguments(parser: argparse.ArgumentParser) -> None:
    """Options naming the model, tasks and evaluated items (shared with ``casceq erase``)."""
    parser.add_argument(
        "--model", required=True, help="speech LLM spec 'family:model' (e.g. ultravox-native:DIR)"
    )
    parser.add_argument("--task", action="append", required=True, help="task name (repeatable)")
    parser.add_argument("--items", help="JSONL items: id, audio, label[, text, choices] (one task only)")
    parser.add_argument("--voice", action="append", default=[], help="TTS voice speaking the task's examples")
    parser.add_argument("--audio-dir", help="folder of synthesised audio (with --voice)")
    parser.add_argument("--n", type=int, default=50, help="examples per task (with --voice; default 50)")
    parser.add_argument(
        "--seed",
        type=int,
        help="subsampling seed (default 0; with --calibration the run's seed, and another one is refused)",
    )
    parser.add_argument("--data-dir", help="datasets root (default: casceq.paths.datasets_dir())")
    parser.add_argument(
        "--mode", choices=("score", "generate"), default="score", help="answer mode (default score)"
    )
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="weights dtype")
    parser.add_argument(
        "--calibration",
        metavar="RUN_DIR",
        help="answer with a casceq run folder's calibration offsets (score mode; default: raw argmax)",
    )
    parser.add_argument(
        "--speech-system",
        help="with --calibration: the run's system whose offsets the speech LLM takes (default: model = --model)",
    )
    parser.add_argument("--out", required=True, help="output folder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``implicit`` options."""
    add_item_arguments(parser)
    parser.add_argument("--layer", type=int, help="lens layer (default: the last)")
    parser.add_argument(
        "--asr",
        default="reference",
        help="ASR spec of the explicit cascade (e.g. faster-whisper:base), or 'reference' (the gold text)",
    )
    parser.add_argument(
        "--backbone", default="same", help="'same' (the speech LLM's own LM on text) or a text LLM spec"
    )
    parser.add_argument(
        "--cascade",
        metavar="SYSTEM",
        help="with --calibration: the text copy is this run system's LLM (its settings and offsets)",
    )


def context_config(args: argparse.Namespace, **extra: Any) -> Any:
    """The stage context of the item options (``casceq.stages.context.ContextConfig``)."""
    from casceq.stages.context import ContextConfig, ItemsConfig

    items = ItemsConfig(
        file=args.items,
        voices=tuple(args.voice),
        audio_dir=args.audio_dir,
        n=args.n,
        seed=args.seed,
        data_dir=args.data_dir,
    )
    return ContextConfig(
        model=args.model,
        dtype=args.dtype,
        run_dir=args.calibration,
        speech_system=args.speech_system,
        items=items,
        **extra,
    )


def run(args: argparse.Namespace) -> int:
    """Run the implicit and explicit cascades against the speech LLM for each task."""
    from casceq.mech.implicit import IMPLICIT_FILE
    from casceq.stages.context import StageContext
    from casceq.stages.implicit import ImplicitConfig, run_implicit

    config = ImplicitConfig(
        tasks=tuple(args.task),
        out=args.out,
        layer=args.layer,
        mode=args.mode,
        backbone=args.backbone,
        cascade=args.cascade,
        argv=("casceq", "implicit", *sys.argv[2:]),
    )
    result = run_implicit(config, StageContext(context_config(args, asr=args.asr)))
    print(result.markdown(), end="")
    print(f"wrote {Path(args.out) / IMPLICIT_FILE}")
    return 0
